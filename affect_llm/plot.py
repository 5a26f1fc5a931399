"""``--plot out.png``: facial AU intensities and expression probabilities over time, and the voice's pitch and
loudness contour, speech segments shaded (the panels the analysis has data for)."""

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
    face = a.timeline.get("face") or []
    voice = [p for p in a.timeline.get("prosody") or [] if p.get("pitch_hz") or p.get("loudness_db") is not None]
    if not face and not voice:
        raise InputError("nothing to plot: the analysis has no face timeline and no voice contour (no video or no "
                         "face visible, and no speech)")  # fmt: skip
    panels = (2 if face else 0) + (1 if voice else 0)
    fig, axes = plt.subplots(panels, 1, figsize=(10, 3 * panels), sharex=True, constrained_layout=True, squeeze=False)
    axes = list(axes[:, 0])
    for ax in axes:
        for s in (a.transcript.segments if a.transcript else []):
            ax.axvspan(s.start, s.end, color="0.92", zorder=0)
    axes[0].set_title(f"{Path(a.source).name}: {a.label} ({a.probabilities[a.label]:.2f}); speech shaded")
    if face:
        ax1, ax2 = axes[0], axes[1]
        ts = [f["t"] for f in face]
        aus = sorted({k for f in face for k in f["aus"]})
        peak = {au: max((f["aus"].get(au, 0.0) for f in face), default=0.0) for au in aus}
        shown = sorted(aus, key=lambda au: -peak[au])[:TOP_AUS]
        exprs = sorted({k for f in face if f["expression"] for k in f["expression"]})
        for au in shown:
            ax1.plot(ts, [f["aus"].get(au, float("nan")) for f in face], label=au)
        ax1.set_ylim(0, 5)
        ax1.set_ylabel("AU intensity (0–5)")
        ax1.legend(ncol=TOP_AUS, fontsize=8, loc="upper right")
        for e in exprs:
            ax2.plot(ts, [f["expression"][e] if f["expression"] else float("nan") for f in face], label=e)
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("expression probability")
        ax2.legend(ncol=len(exprs) or 1, fontsize=8, loc="upper right")
    if voice:
        ax = axes[-1]
        ts = [p["t"] for p in voice]
        ax.plot(ts, [p["pitch_hz"] or float("nan") for p in voice], color="tab:blue", label="pitch (Hz)")
        ax.set_ylabel("pitch (Hz)", color="tab:blue")
        loud = ax.twinx()
        loud.plot(ts, [float("nan") if p["loudness_db"] is None else p["loudness_db"] for p in voice],
                  color="tab:orange", label="loudness (dB)")  # fmt: skip
        loud.set_ylabel("loudness (dB)", color="tab:orange")
    axes[-1].set_xlabel("time (s)")
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
