"""``--plot out.png``: facial AU intensities and expression probabilities over time, speech segments shaded."""

from __future__ import annotations

from pathlib import Path

from .errors import InputError
from .types import Analysis

TOP_AUS = 6


def plot_timeline(a: Analysis, path: str | Path) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("--plot needs matplotlib (pip install affect-llm[plot])") from None
    face = a.timeline.get("face")
    if not face:
        raise InputError("nothing to plot: the analysis has no face timeline (no video, or no face visible)")
    ts = [f["t"] for f in face]
    aus = sorted({k for f in face for k in f["aus"]})
    peak = {au: max((f["aus"].get(au, 0.0) for f in face), default=0.0) for au in aus}
    shown = sorted(aus, key=lambda au: -peak[au])[:TOP_AUS]
    exprs = sorted({k for f in face if f["expression"] for k in f["expression"]})
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, constrained_layout=True)
    for ax in (ax1, ax2):
        for s in (a.transcript.segments if a.transcript else []):
            ax.axvspan(s.start, s.end, color="0.92", zorder=0)
    for au in shown:
        ax1.plot(ts, [f["aus"].get(au, float("nan")) for f in face], label=au)
    ax1.set_ylim(0, 5)
    ax1.set_ylabel("AU intensity (0–5)")
    ax1.legend(ncol=TOP_AUS, fontsize=8, loc="upper right")
    ax1.set_title(f"{Path(a.source).name}: {a.label} ({a.probabilities[a.label]:.2f}); speech shaded")
    for e in exprs:
        ax2.plot(ts, [f["expression"][e] if f["expression"] else float("nan") for f in face], label=e)
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("expression probability")
    ax2.set_xlabel("time (s)")
    ax2.legend(ncol=len(exprs) or 1, fontsize=8, loc="upper right")
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
