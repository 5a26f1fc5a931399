"""Broad Mamba: a bidirectional selective state-space scan over a dialogue's utterances, topped by a broad
learning system, giving each utterance a context embedding and emotion logits.

* **Selective SSM** (Mamba, Gu & Dao 2023): per channel a diagonal state space whose step ``Δ`` and input/output
  maps ``B``, ``C`` depend on the input, discretised by zero-order hold (``Ā = exp(ΔA)``, ``B̄u ≈ ΔBu``), after a
  depthwise causal convolution, with a SiLU gate. :func:`selective_scan_ref` is the pure-PyTorch scan (what CI
  runs); ``mamba_ssm``'s fused CUDA kernel is used when it is importable and the tensors are on a GPU.
* **Bidirectional**: one block reads the dialogue forwards, another backwards (each sequence reversed within its
  own length, so padding never leaks in), merged by a linear layer with a residual and LayerNorm. With
  ``bidirectional=False`` only the forward block runs, so an utterance's output depends on it and the utterances
  before it only: the model reads a dialogue in training exactly as the pipeline gives it one (the analysed
  utterance last, nothing after it).
* **Broad learning system** (Chen & Liu 2018): feature nodes ``Z_i = φ(X W_ei + β_ei)`` and enhancement nodes
  ``H_j = ξ(Z W_hj + β_hj)``; the output layer reads ``[Z | H]``, which is also the context embedding.
* **Speakers** enter as a learned embedding of each speaker's order of appearance in the dialogue.

This module holds the network only; utterance features, training and fusion build on it (issue 4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def selective_scan_ref(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, D: torch.Tensor
) -> torch.Tensor:
    """y_t = C_t · h_t + D u_t with h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t, per channel.

    Shapes: ``u, delta`` (batch, length, channels); ``A`` (channels, state); ``B, C`` (batch, length, state);
    ``D`` (channels). A plain loop over time: dialogues are tens of utterances, so this is not the bottleneck.
    """
    b, length, d = u.shape
    dA = torch.exp(delta.unsqueeze(-1) * A)  # (b, l, d, n)
    dBu = delta.unsqueeze(-1) * B.unsqueeze(2) * u.unsqueeze(-1)  # (b, l, d, n)
    h = u.new_zeros(b, d, A.shape[1])
    ys = []
    for t in range(length):
        h = dA[:, t] * h + dBu[:, t]
        ys.append((h * C[:, t].unsqueeze(1)).sum(-1))
    return torch.stack(ys, dim=1) + u * D


def _fused_scan():
    """mamba_ssm's CUDA kernel, when installed (it needs CUDA); None otherwise."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # ImportError, or a CUDA library that fails to load on a CPU-only machine
        return None
    return selective_scan_fn


class SelectiveSSM(nn.Module):
    """One Mamba block: in-projection to (x, gate), depthwise causal conv, input-dependent Δ/B/C, scan, gate."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, dt_rank: int | None = None):
        super().__init__()
        d_inner = expand * d_model
        self.d_inner, self.d_state = d_inner, d_state
        self.dt_rank = dt_rank or math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * d_inner)
        self.conv = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner)
        # S4D-real initialisation: A_n = -(n + 1); Δ initialised in [1e-3, 1e-1] (log-uniform), as in Mamba
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        dt = torch.exp(torch.rand(d_inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.out_proj = nn.Linear(d_inner, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, length, d_model) -> (batch, length, d_model). Causal: y_t sees x_1..x_t only."""
        length = x.shape[1]
        xs, z = self.in_proj(x).chunk(2, dim=-1)
        xs = F.silu(self.conv(xs.transpose(1, 2))[..., :length].transpose(1, 2))
        dt, B, C = self.x_proj(xs).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))
        A = -torch.exp(self.A_log.float())
        fused = _fused_scan() if xs.is_cuda else None
        if fused is not None:
            y = fused(
                xs.transpose(1, 2).contiguous(), delta.transpose(1, 2).contiguous(), A,
                B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous(), self.D.float(),
            ).transpose(1, 2)  # fmt: skip
        else:
            y = selective_scan_ref(xs, delta, A, B, C, self.D)
        return self.out_proj(y * F.silu(z))


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of ``x`` (batch, length, ...) within its own length; padding stays at the end."""
    length = x.shape[1]
    pos = torch.arange(length, device=x.device).unsqueeze(0)  # (1, l)
    idx = torch.where(pos < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - pos, pos)  # (b, l)
    return x.gather(1, idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand_as(x))


class BiMambaLayer(nn.Module):
    """A forward and (``bidirectional``) a backward scan, merged with a residual and LayerNorm."""

    def __init__(self, d_model: int, d_state: int = 16, dropout: float = 0.1, bidirectional: bool = True):
        super().__init__()
        self.fwd = SelectiveSSM(d_model, d_state)
        self.bwd = SelectiveSSM(d_model, d_state) if bidirectional else None
        self.merge = nn.Linear((2 if bidirectional else 1) * d_model, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h = self.fwd(x)
        if self.bwd is not None:
            h = torch.cat([h, reverse_padded(self.bwd(reverse_padded(x, lengths)), lengths)], dim=-1)
        return self.norm(x + self.drop(self.merge(h)))


class BroadLearning(nn.Module):
    """Feature nodes Z_i = φ(X W_ei + β_ei) (i = 1..n_feature_groups), enhancement nodes H_j = ξ(Z W_hj + β_hj)."""

    def __init__(self, d_in: int, n_feature_groups: int = 8, feature_size: int = 32, n_enhance: int = 4,
                 enhance_size: int = 64):  # fmt: skip
        super().__init__()
        self.features = nn.ModuleList(nn.Linear(d_in, feature_size) for _ in range(n_feature_groups))
        z = n_feature_groups * feature_size
        self.enhancements = nn.ModuleList(nn.Linear(z, enhance_size) for _ in range(n_enhance))
        self.d_out = z + n_enhance * enhance_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.cat([F.gelu(w(x)) for w in self.features], dim=-1)  # φ
        h = torch.cat([torch.tanh(w(z)) for w in self.enhancements], dim=-1)  # ξ
        return torch.cat([z, h], dim=-1)


@dataclass
class BroadMambaConfig:
    d_in: int = 384  # utterance feature size (all-MiniLM-L6-v2)
    n_labels: int = 7
    d_model: int = 256
    d_state: int = 16
    n_layers: int = 2
    max_speakers: int = 9
    dropout: float = 0.1
    n_feature_groups: int = 8
    feature_size: int = 32
    n_enhance: int = 4
    enhance_size: int = 64
    bidirectional: bool = True  # False: causal, each utterance reads only itself and the ones before it


class BroadMamba(nn.Module):
    def __init__(self, cfg: BroadMambaConfig | None = None):
        super().__init__()
        self.cfg = c = cfg or BroadMambaConfig()
        self.inp = nn.Sequential(nn.Linear(c.d_in, c.d_model), nn.LayerNorm(c.d_model), nn.Dropout(c.dropout))
        self.speaker = nn.Embedding(c.max_speakers, c.d_model)
        self.layers = nn.ModuleList(BiMambaLayer(c.d_model, c.d_state, c.dropout, c.bidirectional) for _ in range(c.n_layers))
        self.bls = BroadLearning(c.d_model, c.n_feature_groups, c.feature_size, c.n_enhance, c.enhance_size)
        self.head = nn.Linear(self.bls.d_out, c.n_labels)

    def forward(self, feats: torch.Tensor, speakers: torch.Tensor, lengths: torch.Tensor):
        """feats (batch, utterances, d_in), speakers (batch, utterances) as order of appearance (0, 1, …),
        lengths (batch,). Returns (context embeddings (b, u, bls.d_out), logits (b, u, n_labels))."""
        x = self.inp(feats) + self.speaker(speakers.clamp(max=self.cfg.max_speakers - 1))
        for layer in self.layers:
            x = layer(x, lengths)
        ctx = self.bls(x)
        return ctx, self.head(ctx)
