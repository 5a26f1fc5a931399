"""Batch-invariant attention: a sequence's outputs do not depend on what it is batched with.

Batched generation left-pads prompts of different lengths and drops rows as they finish, so a row's attention
runs over a padded key axis whose length depends on its neighbours. Masked positions add exact zeros, but the
kernels block and reduce over the padded length, and in bfloat16 (and float32, less often) the rounding moves
enough to change a greedy choice. The result: an explanation depends on what else was in its batch.

:func:`rowwise_attention` runs scaled-dot-product attention one row at a time over only that row's real query
and key positions, with an explicit boolean causal mask -- exactly the call an unbatched, unpadded sequence
makes -- so each row is computed the same way whatever surrounds it. It is registered with transformers'
``AttentionInterface`` under :data:`NAME` (with the ``sdpa`` mask builder), and :class:`~affect_llm.llm.hf.TransformersLM`
switches its model to it. The other layers compute each row alone, except that a forward of a single row takes
other kernels than a batch (measured: MKL's float32 matmul gives a row other bits at 1, 2 and 3 rows than at 4 or
more; in bfloat16 one row differs from two or more), so the decoder never runs fewer than :func:`min_rows` rows,
padding with ghost rows whose tokens it throws away. And in bfloat16 on a CPU, :func:`block_rows` makes every
linear layer multiply at most :data:`BLOCK_ROWS` rows per call: above that, oneDNN's kernel (an AMX Xeon, measured)
changes with the row count, so a prompt prefilled beside others would get other bits than alone.
"""

from __future__ import annotations

import threading

import torch

NAME = "affect_rowwise"

#: rows from which a forward computes each row as any larger batch would (measured on x86 CPUs, 2 threads)
MIN_ROWS = {"bfloat16": 2, "float32": 4}

_registered = False


# the last mask (or a key standing for None) and its plan, per thread: one forward's layers share it, and a
# forward runs in one thread (two models in two threads never see each other's plan)
_local = threading.local()


def _plan(attention_mask, b: int, q: int, kv: int, device):
    """Per row: (its real key positions, as a slice when they are one run; its real query rows; their boolean
    mask). The same for every layer of one forward, so it is worked out once per mask."""
    key = attention_mask if attention_mask is not None else ("causal", b, q, kv, str(device))
    hit = getattr(_local, "key", None)
    if hit is not None and (hit is key or (isinstance(key, tuple) and hit == key)):
        return _local.plan
    own = torch.arange(kv - q, kv, device=device)  # each query's position on the key axis
    causal = own[:, None] >= torch.arange(kv, device=device)[None, :]
    if attention_mask is None:
        allowed = causal.expand(b, q, kv)
    else:
        m = attention_mask[:, 0] if attention_mask.dim() == 4 else attention_mask
        allowed = (m if m.dtype == torch.bool else m > torch.finfo(m.dtype).min / 2).expand(b, q, kv)
    plan = []
    for r in range(b):
        keys = allowed[r, -1].nonzero().squeeze(1)  # the last query is real and, being causal, sees every real key
        if keys.numel() == 0:
            plan.append(None)
            continue
        real = torch.isin(own, keys).nonzero().squeeze(1)  # queries standing on a real key position
        mask = allowed[r].index_select(0, real).index_select(1, keys).contiguous()
        lo, hi = int(keys[0]), int(keys[-1]) + 1
        span = slice(lo, hi) if hi - lo == keys.numel() else None
        rows = slice(int(real[0]), int(real[-1]) + 1) if int(real[-1]) + 1 - int(real[0]) == real.numel() else None
        plan.append((keys, span, real, rows, mask))
    _local.key, _local.plan = key, plan
    return plan


def rowwise_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                      is_causal=None, **kwargs):  # fmt: skip
    """transformers' attention-function signature: (b, h, q, d) query, (b, h_kv, kv, d) key and value, an sdpa
    mask ((b, 1, q, kv) bool, float additive, or None for plain causal). Returns ((b, q, h, d), None).

    Each row's real keys are taken as they are stored (a slice, when they are one run, as for a row without
    padding) or gathered into a copy (a left-padded row: its head, then its own positions); grouped-query heads
    are read in place (``enable_gqa``), never repeated."""
    b, h, q, d = query.shape
    kv = key.shape[2]
    gqa = key.shape[1] != h
    plan = _plan(attention_mask, b, q, kv, query.device)
    out = query.new_zeros((b, q, h, d))
    for r, step in enumerate(plan):
        if step is None:
            continue
        keys, span, real, rows, mask = step
        qr = query[r : r + 1, :, rows] if rows is not None else query[r : r + 1].index_select(2, real)
        if span is not None:
            kr, vr = key[r : r + 1, :, span], value[r : r + 1, :, span]
        else:
            kr, vr = key[r : r + 1].index_select(2, keys), value[r : r + 1].index_select(2, keys)
        if q == 1:
            # one new token: it attends to every key kept (the mask is all true), so no mask at all, and the
            # query heads of each key head packed as that head's queries (no repeated keys): one small matmul
            kv_heads = kr.shape[1]
            o = torch.nn.functional.scaled_dot_product_attention(
                qr.reshape(1, kv_heads, h // kv_heads, d), kr, vr, dropout_p=dropout, scale=scaling
            ).reshape(1, h, 1, d)
        else:
            o = torch.nn.functional.scaled_dot_product_attention(qr, kr, vr, attn_mask=mask, dropout_p=dropout,
                                                                 scale=scaling, enable_gqa=gqa)  # fmt: skip
        if rows is not None:
            out[r, rows] = o[0].transpose(0, 1)
        else:
            out[r, real] = o[0].transpose(0, 1)
    return out, None


#: the most rows one bfloat16 matmul takes on a CPU. oneDNN picks its kernel by the row count, and above 32 rows
#: (measured on an AMX Xeon, torch 2.13: SmolLM2's 576->1536 and 576->49152 projections) a row's result depends on
#: how many rows share the call, so a prompt prefilled with others, or in other chunks, would get other bits
BLOCK_ROWS = 32


def block_rows(model: torch.nn.Module, rows: int = BLOCK_ROWS) -> int:
    """Make every ``nn.Linear`` in ``model`` multiply at most ``rows`` rows per call (the rows of a larger input in
    blocks of ``rows``, each computed as a small input would be); return how many layers were changed."""
    n = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and not getattr(module, "_affect_blocked", False):
            module.forward = _blocked(module, rows)
            module._affect_blocked = True
            n += 1
    return n


def _blocked(layer: torch.nn.Linear, rows: int):
    def forward(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        if flat.shape[0] <= rows:
            return torch.nn.functional.linear(x, layer.weight, layer.bias)
        out = torch.cat([torch.nn.functional.linear(flat[i : i + rows], layer.weight, layer.bias)
                         for i in range(0, flat.shape[0], rows)])  # fmt: skip
        return out.reshape(*x.shape[:-1], out.shape[-1])

    return forward


def register() -> str:
    """Register :func:`rowwise_attention` with transformers (once); return its implementation name."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

        AttentionInterface.register(NAME, rowwise_attention)
        AttentionMaskInterface.register(NAME, sdpa_mask)
        _registered = True
    return NAME


def min_rows(dtype) -> int:
    """How many rows a forward must carry for its rows to be computed as they would be in any larger batch."""
    return MIN_ROWS.get(str(dtype).removeprefix("torch."), max(MIN_ROWS.values()))
