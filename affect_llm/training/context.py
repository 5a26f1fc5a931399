"""Train the conversation-context model (LoRA on the utterance encoder + Broad Mamba) on MELD or EmoryNLP.

    affect-llm train context --dataset meld --data-dir ../shared/data/meld --out adapters/context-meld

Trains on ``train``, evaluates on ``dev`` after every epoch, keeps the best dev weighted-F1 and stops early when it
has not improved for ``patience`` epochs or the time budget is spent. Seeds are fixed (Python, NumPy, torch) and
the run is single-process on CPU, so a rerun on the same machine and torch build gives the same weights.

A larger encoder (``encoder="mpnet-base"``, 110M parameters) is affordable on a CPU by freezing its lower layers
(``frozen_layers``): their outputs are computed once per utterance and cached, and each epoch runs only the layers
above them, which carry the LoRA. Every epoch ends with a checkpoint (``checkpoint.pt`` in ``out``: trainable
weights, optimizer, schedule, random states); ``resume=True`` continues a killed run from it and gives the weights
the uninterrupted run would have given.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..context.model import ContextModel, ContextModelConfig
from ..data import Dialogue, dataset_labels, load_dataset
from ..metrics import accuracy, expected_calibration_error, per_class_f1, weighted_f1
from ..runtime import progress_bar


@dataclass
class TrainOptions:
    dataset: str = "meld"
    data_dir: str = "../shared/data/meld"
    out: str = "adapters/context-meld"
    epochs: int = 8
    batch_dialogues: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.05  # share of the steps with a linear warm-up; then linear decay to 0
    patience: int = 2
    max_minutes: float = 45.0
    max_steps: int | None = None  # stop after this many optimizer steps (smoke tests)
    limit_dialogues: int | None = None  # use only the first N train and dev dialogues (smoke tests)
    seed: int = 0
    threads: int | None = None
    lora_r: int = 16
    dropout: float = 0.1  # Broad Mamba's dropout
    label_smoothing: float = 0.0
    past_utterances: int = 0  # earlier utterances in the encoder's input (ContextModelConfig.past_utterances)
    aux_sentiment: float = 0.0  # weight of an auxiliary loss on MELD's sentiment labels (a head used only here)
    broad_mamba: dict = field(default_factory=dict)
    encoder: str = "minilm-l6"  # registry name, local path or Hugging Face id of the utterance encoder
    frozen_layers: int = 0  # the lowest N encoder layers frozen and their outputs cached (no LoRA there)
    loss: str = "ce"  # "ce" | "balanced" (class-balanced by effective number, Cui et al. 2019) | "focal"
    focal_gamma: float = 2.0
    causal: bool = False  # Broad Mamba forwards only: each utterance read with the earlier ones, as the pipeline reads it
    resume: bool = False  # continue from out/checkpoint.pt when its options match
    folds: int = 0  # with ``fold``: train on the train dialogues outside fold ``fold`` of ``folds`` (:func:`fold_of`)
    fold: int = 0


def fold_of(dialogue_id: str, folds: int) -> int:
    """The fold (0 … ``folds``-1) a train dialogue belongs to: a hash of its id, so context training and the
    reasoner's out-of-fold examples agree on it without sharing state."""
    return int.from_bytes(hashlib.sha1(dialogue_id.encode()).digest()[:8], "big") % folds


@dataclass
class EvalResult:
    weighted_f1: float
    accuracy: float
    ece: float
    per_class_f1: dict
    n: int
    probabilities: np.ndarray | None = None
    gold: list[int] | None = None

    def summary(self) -> dict:
        return {"weighted_f1": round(100 * self.weighted_f1, 2), "accuracy": round(100 * self.accuracy, 2),
                "ece": round(self.ece, 4), "n": self.n,
                "per_class_f1": {k: round(100 * v, 2) for k, v in self.per_class_f1.items()}}  # fmt: skip


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.inference_mode()
def evaluate(model: ContextModel, dialogues: list[Dialogue], batch_dialogues: int = 8, progress=None,
             cache=None) -> EvalResult:  # fmt: skip
    """Per-utterance predictions over ``dialogues`` (each seen whole, as at inference) against their gold labels.
    ``cache``: their frozen-layer states (:meth:`ContextModel.lower_states`)."""
    model.eval()
    labels = model.cfg.labels
    index = {lab: i for i, lab in enumerate(labels)}
    probs, gold = [], []
    for s in range(0, len(dialogues), batch_dialogues):
        batch = dialogues[s : s + batch_dialogues]
        _, logits, lengths = model(batch, cache=cache)
        for b, d in enumerate(batch):
            p = F.softmax(logits[b, : len(d)], -1).numpy()
            for u, row in zip(d.utterances, p):
                if u.label is not None:
                    probs.append(row)
                    gold.append(index[u.label])
        if progress is not None:
            progress(len(batch))
    probs_a = np.stack(probs) if probs else np.zeros((0, len(labels)))
    pred = probs_a.argmax(1).tolist()
    g = [labels[i] for i in gold]
    p = [labels[i] for i in pred]
    return EvalResult(weighted_f1(g, p, labels), accuracy(g, p), expected_calibration_error(probs_a, gold),
                      per_class_f1(g, p, labels), len(gold), probs_a, gold)  # fmt: skip


def _targets(batch: list[Dialogue], labels: list[str], shape) -> torch.Tensor:
    index = {lab: i for i, lab in enumerate(labels)}
    y = torch.full(shape, -100, dtype=torch.long)
    for b, d in enumerate(batch):
        y[b, : len(d)] = torch.tensor([index[u.label] if u.label else -100 for u in d.utterances])
    return y


SENTIMENTS = ["negative", "neutral", "positive"]


def _sentiment_targets(batch: list[Dialogue], shape) -> torch.Tensor:
    index = {lab: i for i, lab in enumerate(SENTIMENTS)}
    y = torch.full(shape, -100, dtype=torch.long)
    for b, d in enumerate(batch):
        y[b, : len(d)] = torch.tensor([index.get(u.sentiment or "", -100) for u in d.utterances])
    return y


LOSSES = ("ce", "balanced", "focal")
CHECKPOINT = "checkpoint.pt"
#: options that may differ between a run and its resumption
_RESUMABLE = {"resume", "max_minutes", "threads"}


def class_weights(train_set: list[Dialogue], labels: list[str], beta: float = 0.999) -> torch.Tensor:
    """Class-balanced weights by effective number of samples (Cui et al., CVPR 2019): w_c ∝ (1 − β) / (1 − β^n_c),
    scaled so they sum to the number of classes; a class absent from train gets the largest weight."""
    counts = torch.zeros(len(labels))
    index = {lab: i for i, lab in enumerate(labels)}
    for d in train_set:
        for u in d.utterances:
            if u.label in index:
                counts[index[u.label]] += 1
    w = (1 - beta) / (1 - beta ** counts.clamp(min=1))
    return w * len(labels) / w.sum()


def emotion_loss(logits: torch.Tensor, y: torch.Tensor, opts: TrainOptions, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean loss over the labelled utterances (``y`` = -100 elsewhere) for ``opts.loss``."""
    logits, y = logits.reshape(-1, logits.shape[-1]), y.reshape(-1)
    if opts.loss == "focal":  # (1 − p_t)^γ · CE, Lin et al. 2017; label smoothing as in the CE
        keep = y != -100
        logits, y = logits[keep], y[keep]
        ce = F.cross_entropy(logits, y, reduction="none", label_smoothing=opts.label_smoothing)
        p_t = F.softmax(logits, -1).gather(1, y[:, None])[:, 0]
        return ((1 - p_t).pow(opts.focal_gamma) * ce).mean() if len(y) else logits.sum() * 0
    return F.cross_entropy(logits, y, weight=weights if opts.loss == "balanced" else None, ignore_index=-100,
                           label_smoothing=opts.label_smoothing)  # fmt: skip


def _assign(named: dict[str, torch.Tensor], values: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for n, v in values.items():
            named[n].copy_(v)


def _same_run(saved: dict, opts: TrainOptions) -> bool:
    now = asdict(opts)
    return {k: v for k, v in saved.items() if k not in _RESUMABLE} == {k: v for k, v in now.items() if k not in _RESUMABLE}


def train(opts: TrainOptions, console=None) -> dict:
    """Train, keep the best dev checkpoint in ``opts.out`` and return the run's record (also ``training.json``)."""
    from rich.console import Console

    console = console or Console(stderr=True)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    seed_everything(opts.seed)
    labels = dataset_labels(opts.dataset)
    train_set = load_dataset(opts.dataset, "train", opts.data_dir)
    dev_set = load_dataset(opts.dataset, "dev", opts.data_dir)
    if opts.limit_dialogues:
        train_set, dev_set = train_set[: opts.limit_dialogues], dev_set[: opts.limit_dialogues]
    if opts.folds:
        if not 0 <= opts.fold < opts.folds:
            raise ValueError(f"fold {opts.fold} is not one of 0 … {opts.folds - 1}")
        train_set = [d for d in train_set if fold_of(d.id, opts.folds) != opts.fold]
    if opts.loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {opts.loss!r}")
    cfg = ContextModelConfig(labels=labels, dataset=opts.dataset, encoder=opts.encoder, lora_r=opts.lora_r,
                             lora_alpha=2 * opts.lora_r, past_utterances=opts.past_utterances,
                             frozen_layers=opts.frozen_layers,
                             broad_mamba={"dropout": opts.dropout, **({"bidirectional": False} if opts.causal else {}),
                                          **opts.broad_mamba})  # fmt: skip
    model = ContextModel(cfg)
    weights = class_weights(train_set, labels) if opts.loss == "balanced" else None
    params = [p for p in model.parameters() if p.requires_grad]
    has_sentiment = any(u.sentiment for d in train_set for u in d.utterances)
    sentiment_head = None
    if opts.aux_sentiment > 0 and has_sentiment:  # multi-task: the context embedding also predicts sentiment
        sentiment_head = torch.nn.Linear(model.mamba.bls.d_out, len(SENTIMENTS))
        params += list(sentiment_head.parameters())
    n_trainable = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=opts.lr, weight_decay=opts.weight_decay)
    steps_per_epoch = math.ceil(len(train_set) / opts.batch_dialogues)
    total = steps_per_epoch * opts.epochs if opts.max_steps is None else min(opts.max_steps, steps_per_epoch * opts.epochs)
    warm = max(1, int(opts.warmup * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))
    held = f" (fold {opts.fold} of {opts.folds} held out)" if opts.folds else ""
    console.print(f"[bold]train context[/]: {opts.dataset} train{held} {len(train_set)} dialogues / "
                  f"{sum(len(d) for d in train_set)} utterances, dev {sum(len(d) for d in dev_set)} utterances; "
                  f"{n_trainable:,} trainable parameters; {total} steps at most")  # fmt: skip

    rng = random.Random(opts.seed)
    history, best, best_epoch, step, stale, start, spent = [], -1.0, -1, 0, 0, 1, 0.0
    best_weights: dict[str, torch.Tensor] = {}
    ckpt_path = Path(opts.out) / CHECKPOINT
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if sentiment_head is not None:
        named.update({f"sentiment_head.{n}": p for n, p in sentiment_head.named_parameters()})
    if opts.resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, weights_only=False)
        if not _same_run(ck["options"], opts):
            raise ValueError(f"{ckpt_path} is from a run with other options; delete it or train without --resume")
        _assign(named, ck["weights"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        rng.setstate(ck["rng"])
        np.random.set_state(ck["numpy_rng"])
        torch.set_rng_state(ck["torch_rng"])
        history, best, best_epoch, step, stale = ck["history"], ck["best"], ck["best_epoch"], ck["step"], ck["stale"]
        start, spent = ck["epoch"] + 1, ck["minutes"]
        if spent >= opts.max_minutes:
            raise ValueError(f"{ckpt_path}: the time budget is spent ({spent:.1f} of {opts.max_minutes:g} min, "
                             "counted over every run so far); resume with a larger --max-minutes")
        best_weights = ck.get("best_weights", {})
        if best_weights:  # the folder's weights may be a later, unfinished epoch's: put back the best finished one
            current = {n: p.detach().clone() for n, p in named.items()}
            _assign(named, best_weights)
            model.save(opts.out)
            _assign(named, current)
        console.print(f"resuming after epoch {ck['epoch']} (step {step}, best dev wF1 {100 * best:.2f})")
    t0 = time.monotonic() - 60 * spent
    stop_reason = "epochs"
    with progress_bar("info", console=console) as bar:
        train_cache = dev_cache = None
        if opts.frozen_layers:  # the frozen layers' outputs, once: each epoch runs only the layers above
            n_utts = sum(len(d) for d in train_set + dev_set)
            t = bar.add_task(f"encoder layers 1–{opts.frozen_layers}", total=n_utts, info="")
            train_cache = model.lower_states(train_set, progress=lambda n: bar.update(t, advance=n))
            dev_cache = model.lower_states(dev_set, progress=lambda n: bar.update(t, advance=n))
            bar.update(t, completed=n_utts, info=f"{len(train_cache) + len(dev_cache)} inputs cached")
        for epoch in range(start, opts.epochs + 1):
            model.train()
            order = list(range(len(train_set)))
            rng.shuffle(order)
            task = bar.add_task(f"epoch {epoch}", total=steps_per_epoch, info="")
            run_loss, seen = 0.0, 0
            for s in range(0, len(order), opts.batch_dialogues):
                batch = [train_set[i] for i in order[s : s + opts.batch_dialogues]]
                ctx, logits, _ = model(batch, cache=train_cache)
                y = _targets(batch, labels, logits.shape[:2])
                loss = emotion_loss(logits, y, opts, weights)
                if sentiment_head is not None:
                    ys = _sentiment_targets(batch, ctx.shape[:2])
                    if (ys >= 0).any():
                        aux = F.cross_entropy(sentiment_head(ctx).reshape(-1, len(SENTIMENTS)), ys.reshape(-1),
                                              ignore_index=-100, label_smoothing=opts.label_smoothing)
                        loss = loss + opts.aux_sentiment * aux
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                step += 1
                run_loss, seen = run_loss + loss.item(), seen + 1
                bar.update(task, advance=1, info=f"loss {run_loss / seen:.3f}")
                if opts.max_steps is not None and step >= opts.max_steps:
                    stop_reason = "max_steps"
                    break
                if time.monotonic() - t0 > opts.max_minutes * 60:
                    stop_reason = "time budget"
                    break
            dev_task = bar.add_task(f"dev {epoch}", total=len(dev_set), info="")
            res = evaluate(model, dev_set, progress=lambda n, t=dev_task: bar.update(t, advance=n), cache=dev_cache)
            partial = seen < steps_per_epoch  # stopped inside the epoch (time budget, max_steps)
            rec = {"epoch": epoch, "step": step, "train_loss": round(run_loss / max(1, seen), 4),
                   "minutes": round((time.monotonic() - t0) / 60, 2), "dev": res.summary()}  # fmt: skip
            if partial:
                rec["partial"] = True
            history.append(rec)
            improved = res.weighted_f1 > best
            if improved:
                best, best_epoch, stale = res.weighted_f1, epoch, 0
                model.save(opts.out)
                best_weights = {n: p.detach().clone() for n, p in named.items()}
            else:
                stale += 1
            bar.update(dev_task, info=f"wF1 {100 * res.weighted_f1:.2f} acc {100 * res.accuracy:.2f}"
                                      + (" (best)" if improved else ""))  # fmt: skip
            if not console.is_terminal:  # logs (CI, nohup) get one line an epoch; a terminal has the bars
                console.print(f"epoch {epoch}: step {step}, train loss {rec['train_loss']}, dev wF1 "
                              f"{rec['dev']['weighted_f1']} acc {rec['dev']['accuracy']}, {rec['minutes']} min"
                              + (" (best)" if improved else "") + (" (unfinished epoch)" if partial else ""))
            if stop_reason == "epochs" and stale >= opts.patience:
                stop_reason = f"no dev improvement for {opts.patience} epochs"
            if not partial and epoch < opts.epochs and stop_reason in ("epochs", "time budget"):
                tmp = ckpt_path.with_suffix(".tmp")  # what a killed run resumes from (written whole, then renamed)
                torch.save({"options": asdict(opts), "epoch": epoch, "step": step, "history": history, "best": best,
                            "best_epoch": best_epoch, "stale": stale, "minutes": (time.monotonic() - t0) / 60,
                            "weights": {n: p.detach().clone() for n, p in named.items()}, "best_weights": best_weights,
                            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": rng.getstate(),
                            "numpy_rng": np.random.get_state(), "torch_rng": torch.get_rng_state()}, tmp)  # fmt: skip
                tmp.replace(ckpt_path)
            if stop_reason != "epochs" or epoch == opts.epochs:
                break
    if stop_reason == "time budget" and ckpt_path.is_file():  # unfinished: a larger budget continues it
        console.print(f"stopped by the time budget ({opts.max_minutes:g} min); the last finished epoch's checkpoint "
                      f"is kept: rerun with --resume and a larger --max-minutes to continue")
    else:
        ckpt_path.unlink(missing_ok=True)  # the run is over: its record is training.json
    minutes = (time.monotonic() - t0) / 60
    record = {
        "options": asdict(opts), "labels": labels, "trainable_parameters": n_trainable, "steps": step,
        "train_dialogues": [d.id for d in train_set],
        "sentiment_head": sentiment_head is not None,
        "best_epoch": best_epoch, "best_dev": history[best_epoch - 1]["dev"] if best_epoch > 0 else None,
        "stopped": stop_reason, "minutes": round(minutes, 2), "history": history,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "cpu": platform.processor() or platform.machine()},
    }  # fmt: skip
    Path(opts.out).mkdir(parents=True, exist_ok=True)
    (Path(opts.out) / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    if best_epoch > 0:
        write_card(record, opts.out)
    return record


def write_card(record: dict, out: str | Path) -> Path:
    """``README.md`` beside the weights: what it is, the data, the run, the dev scores, how to reproduce."""
    from .. import models

    o = record["options"]
    encoder = o.get("encoder", "minilm-l6")
    try:
        spec = models.get(encoder)
        name = spec.upstream.split("/")[-1]
        sha = next((a.sha256 for a in spec.assets + spec.unpacked if a.path.endswith("model.safetensors")), "?")
        source = f"registry `{spec.name}`, `model.safetensors` sha256 `{sha}`"
    except Exception:  # a path or Hugging Face id
        name, source = encoder, "not a registry model"
    frozen = o.get("frozen_layers", 0)
    loss = {"ce": "cross-entropy", "balanced": "class-balanced cross-entropy (effective number, β = 0.999)",
            "focal": f"focal loss (γ = {o.get('focal_gamma', 2.0)})"}[o.get("loss", "ce")]  # fmt: skip
    best = record["best_dev"] or {}
    saved = json.loads((Path(out) / "config.json").read_text())
    bm = saved["broad_mamba"]
    rows = "\n".join(
        f"| {h['epoch']} | {h['step']} | {h['train_loss']:.4f} | {h['dev']['weighted_f1']:.2f} | "
        f"{h['dev']['accuracy']:.2f} | {h['dev']['ece']:.4f} | {h['minutes']:.1f} |"
        for h in record["history"]
    )
    per_class = " · ".join(f"{k} {v:.1f}" for k, v in best.get("per_class_f1", {}).items())
    ds = {"meld": "MELD (Poria et al., 2019): `train_sent_emo.csv`, `dev_sent_emo.csv`",
          "emorynlp": "EmoryNLP (Zahiri & Choi, 2018): `emorynlp_train_final.csv`, `emorynlp_dev_final.csv`"}[o["dataset"]]  # fmt: skip
    k = o.get("past_utterances", 0)
    past = (f" over its own tokens, with the {k} utterance{'s' if k > 1 else ''} before it in the encoder's input "
            f"(`[CLS] u_i-{k} [SEP] … u_i [SEP]`, earlier turns only, at most {saved.get('past_tokens')} of their tokens)") if k else ""
    multitask = (f" An auxiliary head (training only) predicts MELD's sentiment label from the same embedding, "
                 f"loss weight {o['aux_sentiment']}.") if record.get("sentiment_head") else ""
    lora_on = (f"layers {frozen + 1} and up (the lowest {frozen} frozen, their outputs cached during training)"
               if frozen else "every layer")
    text = f"""# context-{o["dataset"]}: conversation-context model (LoRA {name} + Broad Mamba)

Per-utterance emotion probabilities and context embeddings for a dialogue, over the {len(record["labels"])} labels
{", ".join(record["labels"])}. Loaded by `affect_llm.context.model.ContextModel.load` and, for `{o["dataset"]}`,
by the default pipeline (`--context-model {o["dataset"]}`).

**Architecture.** Each utterance is encoded by {name} ({source}) with a LoRA adapter (r={o["lora_r"]},
alpha={2 * o["lora_r"]}, on {"/".join(saved.get("lora_targets") or [])} in {lora_on}),
mean-pooled{past}; speaker identity (order of first appearance) is added as an embedding; then Broad Mamba:
{bm["n_layers"]} {"bidirectional" if bm.get("bidirectional", True) else "causal (forward-only)"} selective state-space layers (d_model {bm["d_model"]}, d_state {bm["d_state"]}) over the
dialogue, broad-learning feature nodes ({bm["n_feature_groups"]}×{bm["feature_size"]}) and enhancement nodes
({bm["n_enhance"]}×{bm["enhance_size"]}) whose concatenation `[Z | H]` is the context embedding, and a linear head.{multitask} {record["trainable_parameters"]:,}
trainable parameters; the base encoder is not stored here (only `encoder_lora/`, `broad_mamba.safetensors`).

**Data.** {ds}; text normalised (cp1252 bytes such as `\\x92`, typographic quotes). Trained on train, model
selection on dev weighted-F1 ({"each utterance read with the earlier ones only, as the pipeline reads it" if not bm.get("bidirectional", True) else "each dialogue seen whole, both directions, as ERC papers evaluate"}).

**Run.** {loss}, AdamW lr {o["lr"]}, weight decay {o["weight_decay"]}, dropout {o["dropout"]}, label smoothing
{o["label_smoothing"]}, {o["batch_dialogues"]} dialogues per step, linear
warm-up ({o["warmup"]:.0%}) and decay, gradient clipping 1.0, seed {o["seed"]}, up to {o["epochs"]} epochs with
patience {o["patience"]} and a {o["max_minutes"]:.0f}-minute budget. Stopped: {record["stopped"]}; best epoch
{record["best_epoch"]}; {record["steps"]} steps in {record["minutes"]:.1f} min on {record["machine"]["threads"]} CPU
threads ({record["machine"]["cpu"]}, torch {record["machine"]["torch"]}).

| epoch | step | train loss | dev wF1 | dev acc | dev ECE | minutes |
|---|---|---|---|---|---|---|
{rows}

**Best dev:** weighted-F1 **{best.get("weighted_f1")}**, accuracy {best.get("accuracy")}, ECE {best.get("ece")}
(n = {best.get("n")}). Per-class F1: {per_class}.

**Reproduce.**

```
affect-llm train context --dataset {o["dataset"]} --data-dir DIR --out adapters/context-{o["dataset"]} \\
    --epochs {o["epochs"]} --batch {o["batch_dialogues"]} --lr {o["lr"]} --patience {o["patience"]} \\
    --max-minutes {o["max_minutes"]:g} --seed {o["seed"]} --dropout {o["dropout"]} \\
    --weight-decay {o["weight_decay"]} --label-smoothing {o["label_smoothing"]} --past {k} \\
    --aux-sentiment {o.get("aux_sentiment", 0.0)} --threads {o["threads"] or 0} \\
    --encoder {encoder} --frozen-layers {frozen} --loss {o.get("loss", "ce")}{" --causal" if o.get("causal") else ""}
```

`training.json` holds the full record. Limits: trained on TV-series dialogue (Friends) in English; labels are
what annotators read from text, audio and video together, this model sees text only.
"""
    path = Path(out) / "README.md"
    path.write_text(text)
    return path
