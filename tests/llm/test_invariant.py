"""Batch-invariant matmuls (affect_llm.llm.invariant.block_rows): a row's result never depends on how many rows
share the call. On CPUs whose bfloat16 kernel changes with the row count (an AMX Xeon: above 32 rows) the plain
layer fails the invariance this asserts; the blocked one holds it everywhere."""

import torch

from affect_llm.llm.invariant import BLOCK_ROWS, block_rows


def test_a_blocked_linear_gives_each_row_the_bits_it_gets_alone():
    torch.manual_seed(0)
    torch.randn(1536, 576), torch.randn(800, 576)  # (this seed's second draw is one where the plain call differs)
    weight, x = torch.randn(1536, 576).to(torch.bfloat16), torch.randn(700, 576).to(torch.bfloat16)
    layer = torch.nn.Linear(576, 1536, bias=False).to(torch.bfloat16)
    layer.weight.data = weight
    plain = layer(x)
    assert block_rows(layer) == 1 and block_rows(layer) == 0  # once
    blocked = layer(x)
    assert blocked.shape == plain.shape == (700, 1536)
    torch.testing.assert_close(blocked, plain, rtol=2e-2, atol=2e-2)  # the same product, other rounding at most
    for rows in (60, 100, 200, 500):  # the first 8 rows' bits are the same whatever else is in the call
        assert torch.equal(layer(x[:rows])[:8], layer(x[:8])), rows
        assert torch.equal(layer(x[None, :rows])[0, :8], layer(x[:8])), rows  # leading dims are rows too
    small = x[:BLOCK_ROWS]  # a small input is the plain call
    assert torch.equal(layer(small), torch.nn.functional.linear(small, weight))


def test_block_rows_reaches_every_linear_of_a_model():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Sequential(torch.nn.Linear(8, 2)))
    x = torch.randn(70, 4)
    before = model(x)
    assert block_rows(model, rows=16) == 2
    torch.testing.assert_close(model(x), before)
