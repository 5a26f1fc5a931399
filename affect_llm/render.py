"""Rich terminal rendering of an :class:`Analysis` (the CLI's human output)."""

from __future__ import annotations

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .evidence import CUE_ID
from .explanation import CHECK_NOTES
from .types import Analysis

BAR = 28


def _bars(probs: dict[str, float], label: str) -> Table:
    t = Table.grid(padding=(0, 1))
    t.add_column(justify="right")
    t.add_column()
    t.add_column(justify="right")
    for lab, p in sorted(probs.items(), key=lambda kv: -kv[1]):
        n = round(p * BAR)
        style = "bold green" if lab == label else "cyan"
        t.add_row(Text(lab, style="bold" if lab == label else ""), Text("█" * n + "·" * (BAR - n), style=style), f"{p:.2f}")
    return t


def _cite(text: str, known: set[str]) -> Text:
    out = Text()
    last = 0
    for m in CUE_ID.finditer(text):
        out.append(text[last : m.start()])
        out.append(m.group(0), style="bold magenta" if m.group(0) in known else "bold red strike")
        last = m.end()
    out.append(text[last:])
    return out


def analysis(console: Console, a: Analysis) -> None:
    if a.transcript is not None and a.transcript.segments:
        lines = Text()
        for s in a.transcript.segments:
            lines.append(f"{s.start:6.1f}–{s.end:5.1f} s  ", style="dim")
            lines.append(s.text + "\n")
        console.print(Panel(lines, title="transcript", title_align="left"))
    cues = Table(show_header=True, header_style="bold", expand=True)
    cues.add_column("id", no_wrap=True)
    cues.add_column("time", no_wrap=True)
    cues.add_column("modality", no_wrap=True)
    cues.add_column("cue", ratio=1)
    for c in a.cues:
        cues.add_row(c.id, c.span(), c.modality.value, c.text)
    parts: list = [cues]
    checks = [n for n in a.notes if n.startswith(CHECK_NOTES)]
    notes = [n for n in a.notes if not n.startswith(CHECK_NOTES)]
    if a.missing_modalities or notes:
        miss = ", ".join(m.value for m in a.missing_modalities) or "none"
        parts.append(Text(f"missing: {miss}" + (f"  ({'; '.join(notes)})" if notes else ""), style="yellow"))
    console.print(Panel(Group(*parts), title="cues", title_align="left"))
    bars: list = [_bars(a.probabilities, a.label)]
    if a.distributions:
        table = Table(show_header=True, header_style="bold", box=None, padding=(0, 1))
        table.add_column("modality")
        table.add_column("weight", justify="right")
        table.add_column("top labels")
        for k, d in a.distributions.items():
            top = ", ".join(f"{lab} {p:.2f}" for lab, p in sorted(d.items(), key=lambda kv: -kv[1])[:3])
            w = a.fusion.get(k)
            table.add_row(k, f"{w:.2f}" if w is not None else "—", top)
        bars.append(Text("fused from:" if a.fusion else "per modality (not fused):", style="dim"))
        bars.append(table)
    if a.decision:
        bars.append(Text(f"why this label: {a.decision}", style="dim"))
    console.print(Panel(Group(*bars), title=f"emotion: {a.label}", title_align="left"))
    if a.explanation:
        known = {c.id for c in a.cues}
        body = _cite(a.explanation, known)
        if a.uncited_ids:
            body.append(f"\n(mentions ids not in the evidence: {', '.join(a.uncited_ids)})", style="red")
        for n in checks:  # what the explanation check changed (affect_llm.explanation)
            body.append(f"\n{n}", style="dim")
        console.print(Panel(body, title="why", title_align="left"))
    t = ", ".join(f"{k} {v:.2f}s" for k, v in a.timings.items())
    console.print(Text(t, style="dim"))


def answer(console: Console, text: str) -> None:
    console.print(Panel(text or "(no answer)", title="affect-llm", title_align="left", border_style="green"))
