"""Probability-guided fusion of per-modality label distributions (context model, LLM label scores, face
expression, CLIP scene matching), after Team RAS's multi-head probability fusion (MER 2024).

For the modalities ``S`` present in a sample, each modality's distribution is first temperature-scaled,
``q_m = softmax(log p_m / T_m)``. Head ``h`` mixes them with class-wise weights
``alpha_hmk = softmax_{m in S}(a_hmk)`` — a missing modality is simply not in the softmax, so the others' weights
renormalise — giving ``p_hk ∝ sum_m alpha_hmk q_mk``. The heads are averaged and a final temperature ``T`` is
applied: ``p = softmax(log mean_h p_h / T)``. ``T_m``, ``a`` and ``T`` are fitted on labelled dev data by minimising
the negative log-likelihood (temperatures first, one modality at a time, then the weights, then ``T``).

A modality with no labelled data to fit on (here: face and scene, as no labelled MELD video ships) keeps
``T_m = 1`` and weight logits at ``log(prior)`` below the mean of the fitted modalities', which the saved file
records as ``fitted: false``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError, ModelNotFound

EPS = 1e-6
#: the LLM whose label scores a fusion file without an ``info["llm"]`` record was fitted on (every file written
#: before the record existed: the shipped SmolLM2, with or without the reasoner adapter)
LEGACY_LLM = "smollm2-135m"


def fusion_llm(fusion: "ProbabilityFusion | None") -> str | None:
    """The LLM (:meth:`affect_llm.llm.reasoner.Reasoner.identity`) whose label scores ``fusion`` was fitted on."""
    if fusion is None:
        return None
    return str(fusion.info.get("llm") or LEGACY_LLM)


@dataclass
class FusionResult:
    distribution: dict[str, float]
    weights: dict[str, float]  # each used modality's mean mixing weight (over heads and classes)
    used: list[str]
    ignored: dict[str, str] = field(default_factory=dict)  # modality -> why it was left out


@dataclass
class ProbabilityFusion:
    labels: list[str]
    modalities: list[str]
    n_heads: int = 4
    temperatures: dict[str, float] = field(default_factory=dict)
    logits: np.ndarray | None = None  # (heads, modalities, labels) weight logits
    final_temperature: float = 1.0
    fitted: dict[str, bool] = field(default_factory=dict)
    prior: float = 0.5  # an unfitted modality's weight relative to the fitted ones'
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.logits is None:
            self.logits = np.zeros((self.n_heads, len(self.modalities), len(self.labels)))
        self.logits = np.asarray(self.logits, dtype=np.float64)
        for m in self.modalities:
            self.temperatures.setdefault(m, 1.0)
            self.fitted.setdefault(m, False)

    # --- inference ---------------------------------------------------------------------------------------
    def fuse(self, distributions: dict[str, dict[str, float]]) -> FusionResult:
        """Fuse the given per-modality distributions (label -> probability). Unknown modalities and those whose
        labels are not this fusion's label set are ignored (and said so); at least one must be usable."""
        used, rows, ignored = [], [], {}
        for m, dist in distributions.items():
            if m not in self.modalities:
                ignored[m] = "not a fusion input"
                continue
            if set(dist) != set(self.labels):
                ignored[m] = f"its labels ({', '.join(sorted(dist))}) are not the fusion's ({', '.join(sorted(self.labels))})"
                continue
            used.append(m)
            rows.append([dist[lab] for lab in self.labels])
        if not used:
            why = "; ".join(f"{m}: {reason}" for m, reason in ignored.items()) or "none given"
            raise InputError(f"no modality distribution to fuse ({why})")
        idx = [self.modalities.index(m) for m in used]
        p = self._forward(np.asarray(rows)[None], idx)[0]
        alpha = _softmax(self.logits[:, idx, :], axis=1)  # (heads, used, labels)
        w = alpha.mean(axis=(0, 2))
        return FusionResult({lab: float(x) for lab, x in zip(self.labels, p)},
                            {m: round(float(x), 4) for m, x in zip(used, w)}, used, ignored)  # fmt: skip

    def _forward(self, probs: np.ndarray, idx: list[int]) -> np.ndarray:
        """probs (N, len(idx), K) -> fused (N, K), numpy (the fitted parameters as they are)."""
        t = np.array([self.temperatures[self.modalities[i]] for i in idx])[None, :, None]
        q = _softmax(np.log(np.clip(probs, EPS, 1)) / t, axis=-1)
        alpha = _softmax(self.logits[:, idx, :], axis=1)  # (H, M, K)
        ph = np.einsum("hmk,nmk->nhk", alpha, q)
        ph = ph / ph.sum(-1, keepdims=True)
        return _softmax(np.log(np.clip(ph.mean(1), EPS, 1)) / self.final_temperature, axis=-1)

    # --- fitting -----------------------------------------------------------------------------------------
    def fit(self, probs: dict[str, np.ndarray], gold: np.ndarray, steps: int = 300, lr: float = 0.05,
            l2: float = 1e-2, seed: int = 0) -> ProbabilityFusion:  # fmt: skip
        """Fit on ``probs[m]`` (N, K) per modality (a row of NaN = modality missing for that sample) and gold
        label indices (N,). Modalities absent from ``probs`` stay unfitted."""
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny tensors: threads only add synchronisation (and spin on a busy machine)
        try:
            return self._fit(probs, gold, steps, lr, l2, seed)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, probs, gold, steps, lr, l2, seed) -> ProbabilityFusion:
        import torch

        gold_t = torch.as_tensor(np.asarray(gold), dtype=torch.long)
        names = [m for m in self.modalities if m in probs]
        if not names:
            raise InputError("no modality to fit on")
        for m in names:
            if probs[m].shape != (len(gold), len(self.labels)):
                raise InputError(f"{m}: expected shape {(len(gold), len(self.labels))}, got {probs[m].shape}")
        torch.manual_seed(seed)
        # 1. temperature scaling per modality, on the samples where it is present
        for m in names:
            present = ~np.isnan(probs[m]).any(1)
            lp = torch.log(torch.as_tensor(np.clip(probs[m][present], EPS, 1)))
            self.temperatures[m] = _fit_temperature(lp, gold_t[torch.as_tensor(present)])
            self.fitted[m] = True
        # 2. class-wise mixing weights (all heads), on the samples with at least one present modality
        idx = [self.modalities.index(m) for m in names]
        stack = np.stack([probs[m] for m in names], 1)  # (N, M, K)
        mask = torch.as_tensor(~np.isnan(stack).any(-1))  # (N, M)
        keep = mask.any(1)
        t = torch.tensor([self.temperatures[m] for m in names])[None, :, None]
        q = torch.softmax(torch.log(torch.as_tensor(np.clip(np.nan_to_num(stack, nan=1.0), EPS, 1))) / t, -1)
        q, mask, y = q[keep], mask[keep], gold_t[keep]
        a = torch.nn.Parameter(0.1 * torch.randn(self.n_heads, len(names), len(self.labels)))
        opt = torch.optim.Adam([a], lr=lr)
        q = q.float()
        for _ in range(steps):
            fused = _torch_mix(a, q, mask)
            loss = torch.nn.functional.nll_loss(torch.log(fused.clamp_min(EPS)), y) + l2 * (a**2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        a = a.detach()
        logits = np.zeros((self.n_heads, len(self.modalities), len(self.labels)))
        logits[:, idx, :] = a.numpy()
        fitted_mean = a.mean(1).numpy()  # (H, K)
        for i, m in enumerate(self.modalities):
            if m not in names:
                logits[:, i, :] = fitted_mean + np.log(self.prior)
        self.logits = logits
        # 3. final temperature on the mixture
        with torch.no_grad():
            mixed = _torch_mix(a, q, mask)
        self.final_temperature = _fit_temperature(torch.log(mixed.clamp_min(EPS)).float(), y)
        return self

    def predict(self, probs: dict[str, np.ndarray]) -> np.ndarray:
        """Batch version of :meth:`fuse` over arrays (N, K) per modality, NaN rows = missing."""
        names = [m for m in self.modalities if m in probs]
        n = len(next(iter(probs.values())))
        out = np.full((n, len(self.labels)), 1.0 / len(self.labels))
        present = np.stack([~np.isnan(probs[m]).any(1) for m in names], 1)  # (N, M)
        for pattern in {tuple(r) for r in present}:  # one batch per combination of present modalities
            rows = (present == pattern).all(1)
            used = [m for m, on in zip(names, pattern) if on]
            if used:
                idx = [self.modalities.index(m) for m in used]
                out[rows] = self._forward(np.stack([probs[m][rows] for m in used], 1), idx)
        return out

    # --- persistence -------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"labels": self.labels, "modalities": self.modalities, "n_heads": self.n_heads,
                "temperatures": self.temperatures, "final_temperature": self.final_temperature,
                "fitted": self.fitted, "prior": self.prior, "logits": np.round(self.logits, 6).tolist(),
                "info": self.info}  # fmt: skip

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ProbabilityFusion:
        p = Path(path)
        if not p.is_file():
            raise ModelNotFound(f"{p}: no fusion file")
        d = json.loads(p.read_text())
        return cls(labels=d["labels"], modalities=d["modalities"], n_heads=d["n_heads"],
                   temperatures=d["temperatures"], logits=np.array(d["logits"]),
                   final_temperature=d["final_temperature"], fitted=d["fitted"], prior=d.get("prior", 0.5),
                   info=d.get("info", {}))  # fmt: skip


def _torch_mix(a, q, mask):
    """a (H, M, K) weight logits, q (N, M, K) scaled distributions, mask (N, M) present -> fused (N, K)."""
    import torch

    blocked = torch.zeros(mask.shape, dtype=a.dtype).masked_fill(~mask, float("-inf"))  # (N, M)
    alpha = torch.softmax(a[None] + blocked[:, None, :, None], dim=2)  # (N, H, M, K)
    ph = torch.einsum("nhmk,nmk->nhk", alpha, q)
    ph = ph / ph.sum(-1, keepdim=True)
    return ph.mean(1)


def _fit_temperature(logp, y) -> float:
    """T > 0 minimising NLL of softmax(logp / T) (Guo et al., 2017), by LBFGS on log T."""
    import torch

    if len(y) == 0:
        return 1.0
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100)
    logp = logp.float()

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logp / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(np.clip(log_t.exp().item(), 0.05, 20.0))


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)
