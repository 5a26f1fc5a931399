"""Train the reasoner: a LoRA adapter on the LLM and the soft-prompt projector, jointly, on MELD.

    affect-llm train reasoner --dataset meld --data-dir ../shared/data/meld --out adapters/reasoner-meld

Examples are built exactly as the pipeline builds its prompts (:meth:`Pipeline.gather` with the utterance last
and its earlier dialogue as context, text only): the evidence (the words as T1, the dialogue model's reading as
D1), the earlier turns as text, and the context model's embedding of the utterance as the soft prompt. Two tasks
share the adapter: the label prompt (target: the gold label, the word the label scorer reads) and, for a share of
the examples, the explanation prompt told the gold label (target: a silver explanation, :mod:`.silver`, citing
only cues in that example's evidence). A share of the examples drops D1 and the soft prompt, so the adapter also
works without a dialogue model.

Checkpoints (adapter, projector, optimizer, scheduler, RNG, step) go to ``OUT/checkpoint`` every
``checkpoint_every`` steps; rerunning the same command resumes from there. Seeds are fixed.
"""

from __future__ import annotations

import json
import platform
import random
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data import Dialogue, dataset_labels, load_dataset
from .context import fold_of
from ..evidence import Evidence
from ..runtime import progress_bar
from ..types import Modality


@dataclass
class ReasonerTrainOptions:
    dataset: str = "meld"
    data_dir: str = "../shared/data/meld"
    out: str = "adapters/reasoner-meld"
    llm: str = "smollm2-135m"
    context_model: str = "meld"
    samples: int = 2000  # train utterances drawn (seeded, uniformly) from the train split
    explain_share: float = 0.35  # share of them that also train the explanation
    drop_context: float = 0.15  # share trained without D1 and the soft prompt
    speech_share: float = 0.4  # share whose words come as speech cues (S1, S2 … with times), as from a clip
    media_examples: int = 0  # media-shaped examples added (training.synthetic: sampled face and voice cues)
    oof_context: list[str] = field(default_factory=list)  # out-of-fold context models (train context --folds K)
    data: list[str] = field(default_factory=list)  # instruction-tuning files (affect_llm.export) instead of the dataset
    epochs: int = 1
    batch: int = 8
    lr: float = 4e-4
    projector_lr: float = 1e-3
    weight_decay: float = 0.0
    warmup: float = 0.05
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    soft_tokens: int = 4
    bf16: bool = True  # autocast to bfloat16 where the CPU computes it natively (or on CUDA)
    load_4bit: bool = False  # QLoRA: the frozen base in 4-bit NF4 (bitsandbytes; CUDA only)
    max_minutes: float = 110.0
    max_steps: int | None = None
    checkpoint_every: int = 25
    seed: int = 0
    threads: int | None = None


@dataclass
class Example:
    ids: list[int]  # prompt + target; -1..-k mark the soft positions
    target_start: int  # first target position
    embedding: np.ndarray | None  # the context embedding the projector reads (None: no soft prompt)
    task: str  # "label" | "explain"
    uid: str = ""


def build_examples(opts: ReasonerTrainOptions, lm, labels: list[str], console=None, split: str = "train",
                   n: int | None = None) -> list[Example]:  # fmt: skip
    """Draw ``n`` (default ``opts.samples``) labelled utterances of ``split`` and turn them into examples for
    ``lm`` (a :class:`~affect_llm.llm.hf.TransformersLM`: its tokenizer and chat template)."""
    from ..config import PipelineConfig
    from ..llm.reasoner import AdapterInfo, Reasoner
    from ..llm.soft_prompt import split_slot
    from ..pipeline import Pipeline
    from ..prompting import dialogue_text
    from .silver import silver_explanation

    if opts.data:
        return file_examples(opts, lm, labels, console)
    rng = random.Random(opts.seed)
    dialogues = load_dataset(opts.dataset, split, opts.data_dir)
    where = [(di, i) for di, d in enumerate(dialogues) for i, u in enumerate(d.utterances) if u.label]
    picked = sorted(rng.sample(where, min(n or opts.samples, len(where))))
    cfg = PipelineConfig.model_validate({"reasoner": {"labels": labels, "adapter": None},
                                         "context": {"model": opts.context_model, "fusion": None}})  # fmt: skip
    pipe = Pipeline(cfg)
    oof = out_of_fold_pipelines(opts, cfg)
    info = AdapterInfo(Path(opts.out), opts.llm, opts.context_model, calibrate=False, seed_citation=False,
                       labels=labels)  # fmt: skip
    prompts = Reasoner(cfg.reasoner, lm=lm, adapter=info)  # builds the prompts the trained adapter will be given
    tokenizer = lm.tokenizer
    placeholder = torch.zeros(opts.soft_tokens, 1)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    eos = eos if isinstance(eos, int) and eos >= 0 else tokenizer.eos_token_id
    out: list[Example] = []
    for di, i in _progress(picked, console, f"building {split} examples"):
        d = dialogues[di]
        u = d.utterances[i]
        prefix = Dialogue(id=d.id, utterances=d.utterances[:i])
        gathering = pipe.gather(text=u.text, context=prefix, speaker=u.speaker)
        evidence, dialogue, emb = gathering.evidence, gathering.dialogue, gathering.findings.context_embedding
        if oof:  # D1 from the model that did not see this dialogue; the soft prompt stays the shipped model's
            held_out = oof[fold_of(d.id, len(oof))].gather(text=u.text, context=prefix, speaker=u.speaker)
            evidence, dialogue = held_out.evidence, held_out.dialogue
        if rng.random() < opts.speech_share:
            evidence = as_speech(evidence, u)
        if rng.random() < opts.drop_context:
            evidence = Evidence.build([c for c in evidence.cues if c.modality != Modality.context], evidence.missing,
                                      evidence.notes)  # fmt: skip
            emb = None
        soft = placeholder if emb is not None else None
        ev_text = evidence.render()
        tasks = [("label", prompts.label_messages(ev_text, dialogue_text(dialogue), soft is not None), "",
                  u.label)]  # fmt: skip
        if rng.random() < opts.explain_share:
            msgs, start = prompts.explain_messages(evidence, u.label, ev_text, soft is not None)
            tasks.append(("explain", msgs, start, " " + silver_explanation(evidence, u.label)))
        for task, msgs, start, target in tasks:
            text = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            ids = split_slot(tokenizer, text, soft).ids
            if start:
                ids += tokenizer(start, add_special_tokens=False)["input_ids"]
            tgt = tokenizer(target, add_special_tokens=False)["input_ids"] + [eos]
            out.append(Example(ids + tgt, len(ids), emb, task, u.id))
    if opts.media_examples:
        out += _media(opts, prompts, tokenizer, eos, [dialogues[di].utterances[i] for di, i in picked])
    return out


def file_examples(opts: ReasonerTrainOptions, lm, labels: list[str], console=None) -> list[Example]:
    """Examples from instruction-tuning files (``opts.data``: ShareGPT or Alpaca, as ``affect-llm batch --export``
    writes them, or any such file). A record this package exported (its evidence, cues and a label on the label
    set) gives the two prompts the pipeline sends: the label prompt with that label as its target, and the
    explanation prompt (``explain.j2``, the answer's opening in the model's turn) with the rest of the record's
    answer as its target. Any other record gives its last assistant turn as the target after its turns. No soft
    prompt (the records hold no context embedding), so no projector is trained."""
    from ..export import read_training_records
    from ..llm.reasoner import AdapterInfo, Reasoner
    from ..config import ReasonerOptions

    info = AdapterInfo(Path(opts.out), opts.llm, None, calibrate=False, seed_citation=False, labels=labels)
    prompts = Reasoner(ReasonerOptions(labels=labels, adapter=None), lm=lm, adapter=info)
    tokenizer = lm.tokenizer
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    eos = eos if isinstance(eos, int) and eos >= 0 else tokenizer.eos_token_id
    out: list[Example] = []
    records = [r for f in opts.data for r in read_training_records(f)]
    off_set = 0
    for r in _progress(records, console, "building examples from " + ", ".join(Path(f).name for f in opts.data)):
        answer = r.messages[-1]["content"].strip()
        tasks = [("explain", r.messages[:-1], "", answer)]
        if r.evidence and r.label is not None and r.label not in labels:
            off_set += 1
        elif r.evidence and r.label and r.extra.get("cues"):
            evidence = _record_evidence(r.extra["cues"])
            msgs, start = prompts.explain_messages(evidence, r.label, r.evidence)
            if evidence is not None and answer.startswith(start.strip()):  # the pipeline's own explanation prompt
                tasks = [("explain", msgs, start, " " + answer[len(start.strip()):].strip())]
            tasks.append(("label", prompts.label_messages(r.evidence, r.context), "", r.label))
        for task, msgs, start, target in tasks:
            ids = _plain_ids(tokenizer, tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False))
            if start:
                ids += tokenizer(start, add_special_tokens=False)["input_ids"]
            tgt = tokenizer(target, add_special_tokens=False)["input_ids"]
            out.append(Example(ids + tgt + [eos], len(ids), None, task, r.uid))
    if off_set and console is not None:
        console.print(f"[yellow]{off_set} records' labels are not on the {opts.dataset} label set "
                      f"({', '.join(labels)}): no label example from them (--dataset names the set)[/]")  # fmt: skip
    return out


def _record_evidence(cues: list[dict]) -> Evidence | None:
    """An exported record's cues as :class:`Evidence` (for the explanation prompt's example ids), or None."""
    from ..types import Cue

    try:
        return Evidence.build([Cue(id=c["id"], modality=c["modality"], start=c.get("start"), end=c.get("end"),
                                   text=c["text"]) for c in cues])  # fmt: skip
    except (KeyError, ValueError, TypeError):
        return None


def out_of_fold_pipelines(opts: ReasonerTrainOptions, cfg) -> list:
    """A pipeline per fold, in fold order, each with the context model trained without that fold's dialogues
    (``opts.oof_context``: the folders ``train context --folds K --fold I`` wrote, one per fold). Empty without
    them. The folders must be of ``opts.dataset`` and cover every fold of one K exactly once."""
    from ..pipeline import Pipeline

    if not opts.oof_context:
        return []
    found: dict[int, str] = {}
    ks = set()
    for folder in opts.oof_context:
        rec_path = Path(folder) / "training.json"
        if not rec_path.is_file():
            raise FileNotFoundError(f"{folder}: no training.json (train it with: affect-llm train context --folds K --fold I)")
        o = json.loads(rec_path.read_text())["options"]
        if not o.get("folds"):
            raise ValueError(f"{folder} was trained on the whole train split, not out of fold")
        if o["dataset"] != opts.dataset:
            raise ValueError(f"{folder} is a {o['dataset']} model; the reasoner trains on {opts.dataset}")
        if o["fold"] in found:
            raise ValueError(f"{folder} and {found[o['fold']]} both hold out fold {o['fold']}")
        ks.add(o["folds"])
        found[o["fold"]] = folder
    if len(ks) != 1 or sorted(found) != list(range(next(iter(ks)))):
        raise ValueError(f"the out-of-fold context models must cover folds 0 … K-1 of one K; got folds "
                         f"{sorted(found)} of K = {sorted(ks)}")  # fmt: skip
    return [Pipeline(cfg.updated(context={"model": str(Path(found[f]).resolve())})) for f in sorted(found)]


def _media(opts: ReasonerTrainOptions, prompts, tokenizer, eos: int, utterances) -> list[Example]:
    """The media-shaped examples (:func:`affect_llm.training.synthetic.media_examples`) joined with the drawn train
    utterances: a label task where the evidence determines the label, and an explanation task for each, written
    for the label the evidence shows (no dialogue, no soft prompt: a clip's face and voice alone or with words)."""
    from .synthetic import media_examples

    out = []
    pairs = [(u.text, u.label) for u in utterances if u.text.strip()]
    for k, x in enumerate(media_examples(opts.media_examples, pairs, seed=opts.seed)):
        ev_text = x.evidence.render()
        shown = x.label or x.explanation.rsplit(" is ", 1)[1].rstrip(".")
        tasks = [("label", prompts.label_messages(ev_text), "", x.label)] if x.label else []
        msgs, start = prompts.explain_messages(x.evidence, shown, ev_text)
        tasks.append(("explain", msgs, start, " " + x.explanation))
        for task, msgs, start, target in tasks:
            ids = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            ids = _plain_ids(tokenizer, ids)
            if start:
                ids += tokenizer(start, add_special_tokens=False)["input_ids"]
            tgt = tokenizer(target, add_special_tokens=False)["input_ids"] + [eos]
            out.append(Example(ids + tgt, len(ids), None, task, f"media-{k}-{x.kind}"))
    return out


def _plain_ids(tokenizer, text: str) -> list[int]:
    from ..llm.soft_prompt import split_slot

    return split_slot(tokenizer, text, None).ids


def as_speech(evidence: Evidence, u) -> Evidence:
    """The same example as a clip's evidence: the words as S-cues, one per sentence, over the utterance's own
    duration (MELD's start/end times; ~2.5 words/s without them), in place of the T-cue. MELD's words are
    transcripts, not ASR output, so the cues carry no recogniser confidence."""
    from ..cues.speech import speech_cues
    from ..types import Segment, Transcript

    said = next((c.text.strip('"') for c in evidence.cues if c.modality == Modality.text), "")
    sentences = [x for x in re.split(r"(?<=[.!?])\s+", said) if x.strip()] or [said]
    words = [len(x.split()) for x in sentences]
    duration = _duration(u.start, u.end) or max(1.0, sum(words) / 2.5)
    segments, t = [], 0.0
    for text, n in zip(sentences, words):
        end = t + duration * n / max(1, sum(words))
        segments.append(Segment(start=round(t, 2), end=round(end, 2), text=text))
        t = end
    cues = speech_cues(Transcript(text=said, segments=segments))
    others = [c for c in evidence.cues if c.modality != Modality.text]
    return Evidence.build([*cues, *others], evidence.missing, evidence.notes)


def _duration(start: str | None, end: str | None) -> float | None:
    """Seconds between two MELD times ('0:16:16,059'), or None."""

    def sec(x: str) -> float:
        h, m, rest = x.strip().split(":")
        return 3600 * int(h) + 60 * int(m) + float(rest.replace(",", "."))

    try:
        d = sec(end) - sec(start)  # type: ignore[arg-type]
    except (AttributeError, ValueError, TypeError):
        return None
    return d if 0.2 < d < 60 else None


def _progress(items, console, description):
    """A progress bar on a terminal; in a log (a background run), a line at every tenth of the way."""
    from rich.progress import track

    if not console:
        return items
    if console.is_terminal:
        return track(items, description=description, console=console, transient=True)
    return _logged(list(items), console, description)


def _logged(items: list, console, description: str):
    t0, n = time.monotonic(), len(items)
    marks = {max(1, round(n * k / 10)) for k in range(1, 11)}
    for done, item in enumerate(items, 1):
        yield item
        if done in marks:
            console.print(f"{description}: {done}/{n} ({(time.monotonic() - t0) / 60:.1f} min)")


def _batches(examples: list[Example], batch: int, rng: random.Random) -> list[list[int]]:
    """Indices in batches of similar length (little padding), the batches in random order."""
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i].ids), rng.random()))
    groups = [order[s : s + batch] for s in range(0, len(order), batch)]
    rng.shuffle(groups)
    return groups


def example_losses(model, projector, examples: list[Example]) -> torch.Tensor:
    """Per-example mean token cross-entropy of the targets (so a one-word label counts as much as an explanation).
    The LM head runs only at the target positions."""
    from ..llm.soft_prompt import Prompt, prompt_embeddings

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    embed = base.get_input_embeddings()
    device = embed.weight.device
    seqs = []
    for ex in examples:
        soft = None
        if ex.embedding is not None:
            soft = projector(torch.as_tensor(ex.embedding, dtype=torch.float32, device=device))
        seqs.append(prompt_embeddings(embed, Prompt(ex.ids, soft)))
    length = max(len(s) for s in seqs)
    x = seqs[0].new_zeros(len(seqs), length, seqs[0].shape[-1])
    mask = torch.zeros(len(seqs), length, dtype=torch.long, device=device)
    for b, s in enumerate(seqs):
        x[b, : len(s)] = s
        mask[b, : len(s)] = 1
    hidden = base.model(inputs_embeds=x, attention_mask=mask).last_hidden_state
    losses = []
    for b, ex in enumerate(examples):
        pos = torch.arange(ex.target_start - 1, len(ex.ids) - 1)  # the position before each target token
        logits = base.lm_head(hidden[b, pos]).float()
        losses.append(F.cross_entropy(logits, torch.tensor(ex.ids[ex.target_start :], device=device)))
    return torch.stack(losses)


def _state_path(out: str | Path) -> Path:
    return Path(out) / "checkpoint"


def _context_fingerprint(ref: str | None) -> str | None:
    """The fingerprint of the context model ``ref`` names, from its files (the model itself is not loaded)."""
    from ..context.model import context_model_path, fingerprint

    return fingerprint(context_model_path(ref)) if ref else None


def train(opts: ReasonerTrainOptions, console=None) -> dict:
    """Train, checkpoint, resume; save the adapter, projector, ``reasoner.json``, ``training.json`` in ``opts.out``."""
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from rich.console import Console
    from safetensors.torch import load_file

    from ..llm.hf import TransformersLM, cpu_has_bf16
    from ..llm.soft_prompt import ProjectorConfig, SoftPromptProjector, embedding_rms

    console = console or Console(stderr=True)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    random.seed(opts.seed)
    np.random.seed(opts.seed)
    torch.manual_seed(opts.seed)
    labels = dataset_labels(opts.dataset)
    lm = TransformersLM(opts.llm, dtype="float32")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    t_build = time.monotonic()
    examples = build_examples(opts, lm, labels, console)
    build_minutes = (time.monotonic() - t_build) / 60
    d_ctx = next((len(e.embedding) for e in examples if e.embedding is not None), None)
    lc = LoraConfig(r=opts.lora_r, lora_alpha=opts.lora_alpha, lora_dropout=opts.lora_dropout,
                    target_modules=opts.lora_targets, bias="none", task_type="CAUSAL_LM")  # fmt: skip
    model = get_peft_model(_base_for_training(opts, lm, device), lc)
    embed = model.get_base_model().get_input_embeddings()
    projector = None  # no example has a context embedding (instruction-tuning files): no soft prompt to train
    if d_ctx is not None:
        projector = SoftPromptProjector(
            ProjectorConfig(d_in=d_ctx, d_model=embed.embedding_dim, n_tokens=opts.soft_tokens), embedding_rms(embed)
        ).to(device)
    lora_params = [p for p in model.parameters() if p.requires_grad]
    projector_params = list(projector.parameters()) if projector is not None else []
    groups = [{"params": lora_params, "lr": opts.lr}]
    if projector_params:
        groups.append({"params": projector_params, "lr": opts.projector_lr})
    opt = torch.optim.AdamW(groups, weight_decay=opts.weight_decay)
    rng = random.Random(opts.seed)
    plan = [b for _ in range(opts.epochs) for b in _batches(examples, opts.batch, rng)]
    total = len(plan) if opts.max_steps is None else min(opts.max_steps, len(plan))
    warm = max(1, int(opts.warmup * total))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))
    use_bf16 = opts.bf16 and (torch.cuda.is_available() or cpu_has_bf16())
    n_trainable = sum(p.numel() for p in lora_params) + sum(p.numel() for p in projector_params)

    step, history, elapsed_before = 0, [], 0.0
    ckpt = _state_path(opts.out)
    if (ckpt / "state.pt").is_file():
        state = torch.load(ckpt / "state.pt", weights_only=False)
        set_peft_model_state_dict(model, load_file(str(ckpt / "adapter_model.safetensors"), device=str(device)))
        if projector is not None:
            projector.load_state_dict(load_file(str(ckpt / "projector.safetensors"), device=str(device)))
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, history, elapsed_before = state["step"], state["history"], state["minutes"] * 60
        torch.set_rng_state(state["torch_rng"])
        console.print(f"resuming from {ckpt} at step {step}")
    n_label = sum(e.task == "label" for e in examples)
    source = ", ".join(opts.data) if opts.data else f"{opts.samples} {opts.dataset} train utterances"
    console.print(f"[bold]train reasoner[/]: {len(examples)} examples ({n_label} label, {len(examples) - n_label} "
                  f"explanation) from {source}; {n_trainable:,} trainable "
                  f"parameters; {total} steps of {opts.batch}; bf16 autocast {'on' if use_bf16 else 'off'}")  # fmt: skip

    def save_checkpoint(minutes: float) -> None:
        from safetensors.torch import save_file

        ckpt.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(ckpt))
        if projector is not None:
            save_file({k: v.contiguous() for k, v in projector.state_dict().items()}, str(ckpt / "projector.safetensors"))
        tmp = ckpt / "state.pt.tmp"
        torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step, "history": history,
                    "minutes": minutes, "torch_rng": torch.get_rng_state()}, tmp)  # fmt: skip
        tmp.replace(ckpt / "state.pt")

    t0 = time.monotonic() - elapsed_before
    stopped = "done"
    model.train()
    if projector is not None:
        projector.train()
    run = {"label": [], "explain": []}
    with progress_bar("info", console=console) as bar:
        task = bar.add_task("steps", total=total, completed=step, info="")
        while step < total:
            batch = [examples[i] for i in plan[step]]
            with torch.autocast("cuda" if torch.cuda.is_available() else "cpu", dtype=torch.bfloat16, enabled=use_bf16):
                losses = example_losses(model, projector, batch)
            loss = losses.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([*lora_params, *projector_params], 1.0)
            opt.step()
            sched.step()
            step += 1
            for ex, v in zip(batch, losses.detach().tolist()):
                run[ex.task].append(v)
            if step % 10 == 0 or step == total:
                rec = {"step": step, "minutes": round((time.monotonic() - t0) / 60, 2),
                       **{f"{k}_loss": round(float(np.mean(v)), 4) for k, v in run.items() if v}}  # fmt: skip
                history.append(rec)
                run = {"label": [], "explain": []}
                bar.update(task, info=" ".join(f"{k} {v}" for k, v in rec.items() if k.endswith("loss")))
            bar.update(task, completed=step)
            if step % opts.checkpoint_every == 0 and step < total:
                save_checkpoint((time.monotonic() - t0) / 60)
            if time.monotonic() - t0 > opts.max_minutes * 60:
                stopped = "time budget"
                break
    minutes = (time.monotonic() - t0) / 60
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    from ..context.model import tidy_peft_folder

    tidy_peft_folder(out, opts.llm)
    if projector is not None:
        projector.save(out)
    from .. import models

    base_sha = next((a.sha256 for a in models.get(opts.llm).assets), None) if _registered(opts.llm) else None
    soft = projector is not None
    meta = {"base": opts.llm, "base_sha256": base_sha, "context_model": opts.context_model if soft else None,
            "context_fingerprint": _context_fingerprint(opts.context_model) if soft else None, "labels": labels,
            "calibrate": False, "seed_citation": False, "soft_tokens": opts.soft_tokens if soft else 0}  # fmt: skip
    (out / "reasoner.json").write_text(json.dumps(meta, indent=2) + "\n")
    pool = None if opts.data else sum(1 for d in load_dataset(opts.dataset, "train", opts.data_dir)
                                      for u in d.utterances if u.label)  # fmt: skip
    oof = [_oof_record(f) for f in opts.oof_context]
    media = sum(1 for e in examples if e.uid.startswith("media-"))
    record = {"options": asdict(opts), "pool": pool, "oof_context": oof, "media_examples": media, "examples": len(examples), "label_examples": n_label, "steps": step,
              "stopped": stopped, "minutes": round(minutes, 2), "build_minutes": round(build_minutes, 2),
              "trainable_parameters": n_trainable, "bf16": use_bf16, "history": history,
              "machine": {"python": platform.python_version(), "torch": torch.__version__,
                          "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()}}  # fmt: skip
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    import shutil

    shutil.rmtree(ckpt, ignore_errors=True)  # finished: the checkpoint has served its purpose
    write_card(out)
    return record


def _oof_record(folder: str) -> dict:
    from ..context.model import fingerprint

    rec = json.loads((Path(folder) / "training.json").read_text())
    return {"folder": Path(folder).as_posix(), "fold": rec["options"]["fold"], "folds": rec["options"]["folds"],
            "fingerprint": fingerprint(Path(folder)), "best_dev": rec.get("best_dev")}  # fmt: skip


def _upstream_name(ref: str) -> str:
    """The base model's upstream name (``SmolLM2-135M-Instruct`` for the registry's ``smollm2-135m``), or ``ref``."""
    from .. import models

    try:
        return models.get(ref).upstream.split("/")[-1] or ref
    except Exception:  # noqa: BLE001 - a path or an HF id: named as given
        return ref


def write_card(folder: str | Path) -> Path:
    """``README.md`` beside the adapter, from ``reasoner.json``, ``training.json`` and (when measured)
    ``eval.json`` (scripts/eval_reasoner.py)."""
    folder = Path(folder)
    meta = json.loads((folder / "reasoner.json").read_text())
    rec = json.loads((folder / "training.json").read_text())
    upstream = _upstream_name(meta["base"])
    if rec["options"].get("data"):
        return _file_card(folder, meta, rec, upstream)
    pool = f" {rec['pool']:,}" if rec.get("pool") else ""  # recorded by training runs since the record has it
    o = rec["options"]
    ev_path = folder / "eval.json"
    if ev_path.is_file():
        ev = json.loads(ev_path.read_text())
        rows = "\n".join(
            f"| {name} | {r['weighted_f1']:.2f} | {r['accuracy']:.2f} | {r['explanations_parse_and_cite']:.1f} | "
            f"{r['cited_ids_exist']:.1f} | {r['ids_cited_per_explanation']} |"
            for name, r in ev["reasoners"].items()
        )
        measured = f"""Measured on {ev["dataset"].upper()} {ev["split"]} by `scripts/eval_reasoner.py` (each utterance as the pipeline
sees it: text, earlier dialogue, D1 and the soft prompt; labels from the LLM's own label scores, no fusion; n =
{ev["n"]}; explanations generated for the gold label on a seeded sample of {ev["explained"]}):

| reasoner | label weighted-F1 | accuracy | explanations that parse and cite an existing cue (%) | cited ids that exist (%) | ids cited per explanation |
|---|---|---|---|---|---|
{rows}

"Base" is {upstream} zero-shot with contextual calibration (the base model's explanations are seeded
with the first cue id, so they cite by construction); "tuned" is this adapter, uncalibrated, unseeded."""
    else:
        measured = "Not measured yet: run `scripts/eval_reasoner.py --out FOLDER/eval.json`."
    n_media = rec.get("media_examples", 0)
    media_text = (f"Plus {n_media} media-shaped examples (`affect_llm/training/synthetic.py`, `--media-examples "
                  f"{o.get('media_examples', 0)}`): face cues and voice cues written by the pipeline's own textualizers "
                  "from sampled AU and prosody patterns (EMFACS prototypes, neutral faces, low intensities, blends, "
                  "faces that agree with or contradict a MELD utterance), labelled only where the evidence "
                  "determines the label, with explanations that say what each modality's strongest cue shows. No "
                  "real face, voice or scene data is in the set (MELD's video is not here)."
                  if n_media else "No voice, face or scene cues are in the data (MELD's video is not here): for "
                  "those the adapter has only the instruction to go on.")  # fmt: skip
    oof = rec.get("oof_context") or []
    if oof:
        devs = ", ".join(f"{(r.get('best_dev') or {}).get('weighted_f1')}" for r in oof)
        oof_text = (f"D1 out of fold: the train dialogues fall in {len(oof)} folds (a hash of the dialogue id), and "
                    f"each example's dialogue reading D1 comes from a context model trained without its fold "
                    f"(`affect-llm train context --folds {len(oof)} --fold I`; MELD dev weighted-F1 {devs}), so "
                    "D1 is as fallible on these examples as on new data and the adapter learns to weigh it, not "
                    "copy it. The soft prompt is the shipped context model's embedding (the space the projector "
                    "reads at inference); that model saw these dialogues, so the embedding is more reliable here "
                    "than on new data.")  # fmt: skip
    else:
        oof_text = ("Caveat: the context model was trained on the same train split, so its D1 and embedding are "
                    "more reliable on these examples than on new data.")
    extra = (f" \\\n    --media-examples {o['media_examples']}" if o.get("media_examples") else "") + "".join(
        f" \\\n    --oof-context {r['folder']}" for r in oof)
    recipe = ("\nThe whole recipe, the out-of-fold context models and the fusion refit included, is "
              "`bash scripts/retrain_reasoner.sh DIR`.\n" if oof else "")
    hist = rec["history"][-1] if rec["history"] else {}
    shown = folder.as_posix() if not folder.is_absolute() else f"adapters/{folder.name}"
    text = f"""# {folder.name}: LoRA adapter + soft-prompt projector for the reasoning LLM

The reasoner's LoRA adapter (peft) for **{meta["base"]}** ({upstream}, registry `{meta["base"]}`,
GGUF sha256 `{meta["base_sha256"]}`), trained jointly with a projector that maps the `{meta["context_model"]}`
context model's utterance embedding (Broad Mamba `[Z | H]`) to {meta["soft_tokens"]} soft-prompt vectors spliced
into the prompt (`Conversation context (embedded): …`). Loaded by default (`--adapter auto`) when the LLM is its
base; `--adapter none` gives the base model; `--adapter PATH` any adapter folder of this layout
(`adapter_config.json`, `adapter_model.safetensors`, `projector.json`, `projector.safetensors`, `reasoner.json`).

**Tasks.** Label: the label prompt the pipeline scores (target: the gold label word). Explanation: the
explanation prompt told the gold label (target: a silver explanation, `affect_llm/training/silver.py`, that cites only
cues in that example's own evidence — the words [T1], the dialogue model's reading [D1] — in the style of EMER's
gold reasons, "Therefore, the speaker's emotional state is …"). EMER's own reasons are not trained on: they
describe video and audio this data has no cues for, and would teach citing what is not there.

**Data.** {rec["options"]["dataset"].upper()} train: a seeded uniform sample of {o["samples"]} of its{pool}
labelled utterances (a subsample to fit the CPU budget), each with its earlier dialogue as context, as the pipeline builds
it; {rec["label_examples"]} label and {rec["examples"] - rec["label_examples"]} explanation examples;
{o["drop_context"]:.0%} of them without D1 and the soft prompt (so the adapter works without a dialogue model), and
{o.get("speech_share", 0):.0%} with the words as a clip's speech cues (`S1`, `S2` … one per sentence over the utterance's own
duration, as the pipeline gives them for media; no recogniser confidence, since MELD's words are transcripts)
instead of the text cue `T1`. {media_text}
{oof_text}

**Run.** LoRA r={o["lora_r"]}, alpha={o["lora_alpha"]}, dropout {o["lora_dropout"]} on {", ".join(o["lora_targets"])};
projector LayerNorm → MLP → {o["soft_tokens"]}×{json.loads((folder / "projector.json").read_text())["d_model"]}; {rec["trainable_parameters"]:,} trainable parameters. AdamW
(LoRA lr {o["lr"]}, projector lr {o["projector_lr"]}), {o["batch"]} examples per step (per-example mean token loss, so
a one-word label weighs as much as an explanation), linear warm-up {o["warmup"]:.0%} and decay, clipping 1.0,
bf16 autocast {"on" if rec["bf16"] else "off"}, seed {o["seed"]}. {rec["steps"]} steps in {rec["minutes"]:.1f} min
(stopped: {rec["stopped"]}) + {rec["build_minutes"]:.1f} min building examples, on {rec["machine"]["threads"]} CPU
threads ({rec["machine"]["cpu"]}, torch {rec["machine"]["torch"]}). Last logged losses: label
{hist.get("label_loss")}, explanation {hist.get("explain_loss")}.

{measured}

**Reproduce.**

```
affect-llm train reasoner --dataset {o["dataset"]} --data-dir DIR --out {shown} \\
    --samples {o["samples"]} --explain-share {o["explain_share"]} --batch {o["batch"]} --lr {o["lr"]} \\
    --projector-lr {o["projector_lr"]} --lora-r {o["lora_r"]} --soft-tokens {o["soft_tokens"]} \\
    --max-minutes {o["max_minutes"]:g} --seed {o["seed"]} --threads {o["threads"] or 0}{extra}
python scripts/eval_reasoner.py --data-dir DIR --out {shown}/eval.json
```
{recipe}
Interrupted runs resume from `OUT/checkpoint` when the same command is run again. `training.json` holds the
loss history. Limits: English TV dialogue (Friends); {"faces and voices only as sampled cue patterns, never real "
"recordings" if n_media else "text only (MELD's video is not here)"}; the silver explanations are template-shaped,
and so are the tuned model's.
"""
    path = folder / "README.md"
    path.write_text(text)
    return path


def _file_card(folder: Path, meta: dict, rec: dict, upstream: str) -> Path:
    """The card of an adapter trained on instruction-tuning files (``--data``)."""
    o = rec["options"]
    hist = rec["history"][-1] if rec["history"] else {}
    files = " ".join(f"--data {f}" for f in o["data"])
    text = f"""# {folder.name}: LoRA adapter for the reasoning LLM, from instruction-tuning files

The reasoner's LoRA adapter (peft) for **{meta["base"]}** ({upstream}), trained on {", ".join(f"`{f}`" for f in o["data"])}
(ShareGPT or Alpaca records, as `affect-llm batch … --export` writes them): {rec["examples"] - rec["label_examples"]}
answer examples (each record's last assistant turn) and {rec["label_examples"]} label examples (the label prompt the
pipeline scores, from records that carry their evidence and a label on the set {", ".join(meta["labels"])}). No soft
prompt: the records hold no context embedding. Use it with `--adapter {folder.as_posix()}`.

**Run.** LoRA r={o["lora_r"]}, alpha={o["lora_alpha"]} on {", ".join(o["lora_targets"])}; AdamW lr {o["lr"]},
{o["batch"]} examples per step, seed {o["seed"]}; {rec["steps"]} steps in {rec["minutes"]:.1f} min (stopped:
{rec["stopped"]}). Last logged losses: label {hist.get("label_loss")}, answer {hist.get("explain_loss")}.

**Reproduce.** `affect-llm train reasoner {files} --out {folder.as_posix()} --batch {o["batch"]} --lr {o["lr"]} \
--lora-r {o["lora_r"]} --max-minutes {o["max_minutes"]:g} --seed {o["seed"]}`
"""
    path = folder / "README.md"
    path.write_text(text)
    return path


def _base_for_training(opts: ReasonerTrainOptions, lm, device):
    """The frozen base on ``device``; with ``load_4bit``, reloaded in 4-bit NF4 through bitsandbytes (CUDA only)."""
    if not opts.load_4bit:
        # training batches are padded the same way every step: torch's fused attention, not the row-wise one
        lm.model.set_attn_implementation("sdpa")
        return lm.model.to(device)
    if device.type != "cuda":
        raise RuntimeError("4-bit loading (bitsandbytes) needs a CUDA GPU; train in float32/bf16 on this machine")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise RuntimeError("4-bit loading needs bitsandbytes: pip install bitsandbytes") from None
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(lm.location, quantization_config=q, device_map={"": 0})
    return prepare_model_for_kbit_training(model)


def _registered(name: str) -> bool:
    from .. import models

    try:
        models.get(name)
        return True
    except Exception:
        return False
