"""Reports of a scored run: ``report.md`` (tables) and ``report.html`` (the same tables, a coloured confusion
matrix and per-class F1 / predicted-vs-gold plots as inline images: one self-contained file), built from
``metrics.json``, ``run.json`` and a few records of ``predictions.jsonl``; and the comparison of two runs."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

Table = tuple[str, list[str], list[list[str]]]  # title, header, rows


def _pct(x: Any) -> str:
    return f"{100 * x:.2f}" if isinstance(x, (int, float)) else "–"


def _num(x: Any, nd: int = 3) -> str:
    return f"{x:.{nd}f}" if isinstance(x, (int, float)) else "–"


def tables(m: dict[str, Any]) -> list[Table]:
    """The report's tables (shared by the Markdown and the HTML)."""
    out: list[Table] = []
    out.append(("Items", ["items", "scored", "errors", "missing"],
                [[str(m["n_items"]), str(m["n_scored"]), str(m["n_errors"]), str(m["n_missing"])]]))  # fmt: skip
    c = m.get("classification")
    if c and c.get("n"):
        out.append(("Labels (%)", ["n", "accuracy", "weighted-F1", "macro-F1", "ECE"],
                    [[str(c["n"]), _pct(c["accuracy"]), _pct(c["weighted_f1"]), _pct(c["macro_f1"]),
                      _num(c.get("ece"))]]))  # fmt: skip
        out.append(("Per class", ["label", "F1 (%)", "gold", "predicted"],
                    [[lab, _pct(c["per_class_f1"][lab]), str(c["support"][lab]), str(c["predicted"][lab])]
                     for lab in c["labels"]]))  # fmt: skip
        out.append(("Confusion matrix (rows: gold, columns: predicted)", ["gold \\ predicted", *c["labels"]],
                    [[lab, *map(str, row)] for lab, row in zip(c["labels"], c["confusion"])]))  # fmt: skip
    s = m.get("sentiment")
    if s and s.get("n"):
        out.append((f"Sentiment (%; gold {s.get('gold_from', '')})", ["n", "accuracy", "weighted-F1"],
                    [[str(s["n"]), _pct(s["accuracy"]), _pct(s["weighted_f1"])]]))  # fmt: skip
    h = m.get("hit_rate")
    if h and h.get("n"):
        per = h.get("per_wheel", {})
        out.append(("HIT rate over emotion wheels (%; gold neutral excluded)",
                    ["n", "excluded neutral", "excluded unmapped", "HIT (mean of wheels)", *per],
                    [[str(h["n"]), str(h.get("excluded_neutral", 0)), str(h.get("excluded_unmapped", 0)),
                      _pct(h["hit_rate"]), *(_pct(v if not isinstance(v, dict) else v.get("hit_rate"))
                                              for v in per.values())]]))  # fmt: skip
    o = m.get("openset")
    if o:
        out.append(("Open-vocabulary set metrics over emotion wheels (%)", ["level", "n", "F", "precision", "recall"],
                    [[lv, str(v.get("n", "")), _pct(v["f"]), _pct(v["precision"]), _pct(v["recall"])]
                     for lv, v in o.items()]))  # fmt: skip
    e = m.get("explanation")
    if e:
        out.append(("Explanations against the gold explanations",
                    ["n", "empty", "BLEU-4", "ROUGE-L", f"METEOR ({e.get('meteor_variant', '')})", "MiniLM cosine"],
                    [[str(e.get("n")), str(e.get("empty", 0)), _num(e.get("bleu4"), 2), _num(e.get("rouge_l")),
                      _num(e.get("meteor")), _num(e.get("embedding_similarity"))]]))  # fmt: skip
    f = m.get("faithfulness")
    if f:
        lc = f.get("label_consistency") or {}
        out.append(("Faithfulness (%)", ["explanations", "cite an existing cue", "cited ids that exist",
                                         "supported claim sentences", "label–explanation consistency"],
                    [[str(f.get("n", "")), _pct(f.get("cites_share")), _pct(f.get("cited_ids_exist")),
                      _pct(f.get("sentence_support")), _pct(lc.get("consistency"))]]))  # fmt: skip
        if f.get("misquote") is not None:
            out.append(("Explanation truth checks (% of explanations)",
                        ["misquote", "non-word", "flat for a non-neutral label", "speech where there is none",
                         "a conversation not given", "names another feeling", "strongest cue of each modality cited"],
                        [[_pct(f.get("misquote")), _pct(f.get("non_word")), _pct(f.get("flat")),
                          _pct(f.get("invented_speech")), _pct(f.get("invented_conversation")),
                          _pct(f.get("other_feeling")), _pct(f.get("strongest_cited"))]]))  # fmt: skip
    t = (m.get("timings") or {}).get("stages")
    if t:
        out.append(("Seconds per stage", ["stage", "items", "mean when run", "per item (amortised)"],
                    [[k, str(v["items"]), _num(v["mean_when_run"], 2), _num(v["per_item"], 2)]
                     for k, v in sorted(t.items(), key=lambda kv: -kv[1]["per_item"])]))  # fmt: skip
    return out


def markdown(m: dict[str, Any], run: dict[str, Any] | None = None, examples: list[dict] | None = None) -> str:
    lines = [f"# {m['dataset']}{' ' + m['split'] if m.get('split') else ''}: evaluation report", ""]
    lines += _provenance(m, run)
    for title, header, rows in tables(m):
        lines += ["", f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    if examples:
        lines += ["", "## Examples", ""]
        for x in examples:
            lines.append(f"- `{x['id']}` gold **{x.get('gold', '–')}**, predicted **{x.get('label') or '–'}**"
                         + (f": {x['explanation']}" if x.get("explanation") else "")
                         + (f" (error: {x['error']})" if x.get("error") else ""))  # fmt: skip
    return "\n".join(lines) + "\n"


def _provenance(m: dict[str, Any], run: dict[str, Any] | None) -> list[str]:
    out = []
    if run:
        s = dict(run.get("settings", {}))
        config = s.pop("config", None)
        out.append("Settings: " + ", ".join(f"`{k}={v}`" for k, v in s.items() if v is not None))
        if config:
            out.append("")
            out.append("Pipeline options other than the defaults: "
                       + (", ".join(f"`{k}={v}`" for k, v in _changed(config).items()) or "none"))  # fmt: skip
        out.append("")
        out.append(f"Started {run.get('started', '?')}, code {run.get('git') or 'unknown'}.")
    if m.get("wheels"):
        out.append(f"Emotion wheels: {m['wheels']}.")
    return out


def _changed(config: dict, prefix: str = "") -> dict[str, Any]:
    """The options of a dumped PipelineConfig that differ from the defaults, as ``stage.option`` → value."""
    from ..config import PipelineConfig

    default = PipelineConfig().model_dump(mode="json")

    def walk(a: Any, b: Any, key: str, out: dict) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in a:
                walk(a[k], b.get(k), f"{key}{k}.", out)
        elif a != b:
            out[key.rstrip(".")] = a

    out: dict[str, Any] = {}
    walk(config, default, prefix, out)
    return out


def _plots(m: dict[str, Any]) -> list[tuple[str, str]]:
    """(title, base64 PNG) plots; none when matplotlib is not installed."""
    c = m.get("classification")
    if not c or not c.get("n"):
        return []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError:
        return []
    labels = c["labels"]
    out = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    x = np.arange(len(labels))
    axes[0].bar(x, [100 * c["per_class_f1"][lab] for lab in labels], color="#4c72b0")
    axes[0].set_title("per-class F1 (%)")
    axes[1].bar(x - 0.2, [c["support"][lab] for lab in labels], 0.4, label="gold", color="#999999")
    axes[1].bar(x + 0.2, [c["predicted"][lab] for lab in labels], 0.4, label="predicted", color="#dd8452")
    axes[1].set_title("label counts")
    axes[1].legend()
    for ax in axes:
        ax.set_xticks(x, labels, rotation=30, ha="right")
    fig.tight_layout()
    out.append(("Per class", _png(fig, plt)))
    cm = np.array(c["confusion"], dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")  # fmt: skip
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title("confusion (row-normalised colour)")
    fig.tight_layout()
    out.append(("Confusion matrix", _png(fig, plt)))
    return out


def _png(fig, plt) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def html_page(m: dict[str, Any], run: dict[str, Any] | None = None, examples: list[dict] | None = None) -> str:
    esc = html.escape
    title = f"{m['dataset']}{' ' + m['split'] if m.get('split') else ''}: evaluation report"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>"
             "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}"
             "code{background:#f6f6f6}li{margin:.3em 0}</style></head><body>",
             f"<h1>{esc(title)}</h1>"]  # fmt: skip
    parts += [f"<p>{esc(x)}</p>" for x in _provenance(m, run) if x]
    for t, header, rows in tables(m):
        parts.append(f"<h2>{esc(t)}</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        confusion = t.startswith("Confusion")
        for r in rows:
            cells = []
            total = sum(int(v) for v in r[1:]) if confusion else 0
            for j, v in enumerate(r):
                style = ""
                if confusion and j > 0 and total:
                    a = int(v) / total
                    style = f" style='background:rgba(31,119,180,{a:.2f});color:{'#fff' if a > 0.5 else '#000'}'"
                cells.append(f"<td{style}>{esc(v)}</td>")
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</table>")
    for t, png in _plots(m):
        parts.append(f"<h2>{esc(t)} (plot)</h2><img alt='{esc(t)}' src='data:image/png;base64,{png}'>")
    if examples:
        parts.append("<h2>Examples</h2><ul>")
        for x in examples:
            parts.append(f"<li><code>{esc(x['id'])}</code> gold <b>{esc(str(x.get('gold', '–')))}</b>, predicted "
                         f"<b>{esc(x.get('label') or '–')}</b>"
                         + (f": {esc(x['explanation'])}" if x.get("explanation") else "")
                         + (f" <i>(error: {esc(x['error'])})</i>" if x.get("error") else "") + "</li>")  # fmt: skip
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_reports(run_dir: Path, m: dict[str, Any], run: dict[str, Any] | None, examples: list[dict]) -> list[Path]:
    md = run_dir / "report.md"
    md.write_text(markdown(m, run, examples))
    page = run_dir / "report.html"
    page.write_text(html_page(m, run, examples))
    return [md, page]


def flatten(m: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a metrics dict as ``a.b.c`` → value (lists such as the confusion matrix left out)."""
    out: dict[str, float] = {}
    if isinstance(m, dict):
        for k, v in m.items():
            out |= flatten(v, f"{prefix}{k}.")
    elif isinstance(m, (int, float)) and not isinstance(m, bool):
        out[prefix.rstrip(".")] = float(m)
    return out


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, float | None, float | None, float | None]]:
    """(metric, A, B, B − A) for every numeric metric of either run, in A's order then B's."""
    fa, fb = flatten(a), flatten(b)
    keys = list(fa) + [k for k in fb if k not in fa]
    return [(k, fa.get(k), fb.get(k), (fb[k] - fa[k]) if k in fa and k in fb else None) for k in keys]
