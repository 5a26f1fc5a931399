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
padding with ghost rows whose tokens it throws away.
"""

from __future__ import annotations

import torch

NAME = "affect_rowwise"

#: rows from which a forward computes each row as any larger batch would (measured on x86 CPUs, 2 threads)
MIN_ROWS = {"bfloat16": 2, "float32": 4}

_registered = False


def _repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    if n_rep == 1:
        return x
    b, h, s, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, s, d).reshape(b, h * n_rep, s, d)


def rowwise_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                      is_causal=None, **kwargs):  # fmt: skip
    """transformers' attention-function signature: (b, h, q, d) query, (b, h_kv, kv, d) key and value, an sdpa
    mask ((b, 1, q, kv) bool, float additive, or None for plain causal). Returns ((b, q, h, d), None)."""
    b, h, q, d = query.shape
    kv = key.shape[2]
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = _repeat_kv(key, groups), _repeat_kv(value, groups)
    own = torch.arange(kv - q, kv, device=query.device)  # each query's position on the key axis
    causal = own[:, None] >= torch.arange(kv, device=query.device)[None, :]
    if attention_mask is None:
        allowed = causal.expand(b, q, kv)
    else:
        m = attention_mask[:, 0] if attention_mask.dim() == 4 else attention_mask
        allowed = m if m.dtype == torch.bool else m > torch.finfo(m.dtype).min / 2
        allowed = allowed.expand(b, q, kv)
    out = query.new_zeros((b, q, h, d))
    for r in range(b):
        keys = allowed[r, -1].nonzero().squeeze(1)  # the last query is real and, being causal, sees every real key
        if keys.numel() == 0:
            continue
        real = torch.isin(own, keys).nonzero().squeeze(1)  # queries standing on a real key position
        mask = allowed[r].index_select(0, real).index_select(1, keys)
        qr = query[r : r + 1].index_select(2, real)
        kr = key[r : r + 1].index_select(2, keys)
        vr = value[r : r + 1].index_select(2, keys)
        o = torch.nn.functional.scaled_dot_product_attention(qr, kr, vr, attn_mask=mask, dropout_p=dropout,
                                                             scale=scaling)  # fmt: skip
        out[r, real] = o[0].transpose(0, 1)
    return out, None


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
