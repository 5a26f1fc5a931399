"""Broad Mamba's pure-PyTorch path: the scan's recurrence, causality, bidirectionality, padding, learning."""

import pytest

torch = pytest.importorskip("torch")

from affect_llm.context.broad_mamba import (  # noqa: E402
    BroadMamba,
    BroadMambaConfig,
    SelectiveSSM,
    reverse_padded,
    selective_scan_ref,
)


def _naive_scan(u, delta, A, B, C, D):
    """The recurrence written out one scalar at a time."""
    b, length, d = u.shape
    n = A.shape[1]
    y = torch.zeros_like(u)
    for i in range(b):
        for c in range(d):
            h = [0.0] * n
            for t in range(length):
                for k in range(n):
                    h[k] = float(torch.exp(delta[i, t, c] * A[c, k])) * h[k] + float(delta[i, t, c] * B[i, t, k] * u[i, t, c])
                y[i, t, c] = sum(h[k] * float(C[i, t, k]) for k in range(n)) + float(D[c] * u[i, t, c])
    return y


def test_scan_matches_the_scalar_recurrence():
    g = torch.Generator().manual_seed(0)
    b, length, d, n = 2, 5, 3, 4
    u, delta = torch.randn(b, length, d, generator=g), torch.rand(b, length, d, generator=g)
    A = -torch.rand(d, n, generator=g)
    B, C = torch.randn(b, length, n, generator=g), torch.randn(b, length, n, generator=g)
    D = torch.randn(d, generator=g)
    torch.testing.assert_close(selective_scan_ref(u, delta, A, B, C, D), _naive_scan(u, delta, A, B, C, D))


def test_ssm_block_is_causal():
    torch.manual_seed(0)
    m = SelectiveSSM(8, d_state=4).eval()
    x = torch.randn(1, 6, 8)
    y = m(x)
    x2 = x.clone()
    x2[:, 4:] += 5.0  # change the future
    y2 = m(x2)
    torch.testing.assert_close(y[:, :4], y2[:, :4])
    assert not torch.allclose(y[:, 4:], y2[:, 4:])


def test_reverse_padded():
    x = torch.arange(2 * 4).view(2, 4, 1).float()
    r = reverse_padded(x, torch.tensor([4, 2]))
    assert r[0, :, 0].tolist() == [3, 2, 1, 0]
    assert r[1, :, 0].tolist() == [5, 4, 6, 7]  # reversed within length 2, padding left in place


def test_broad_mamba_is_bidirectional_and_ignores_padding():
    torch.manual_seed(0)
    cfg = BroadMambaConfig(d_in=12, n_labels=3, d_model=16, d_state=4, n_layers=1, n_feature_groups=2,
                           feature_size=4, n_enhance=2, enhance_size=8, dropout=0.0)  # fmt: skip
    m = BroadMamba(cfg).eval()
    feats, spk, lengths = torch.randn(1, 5, 12), torch.tensor([[0, 1, 0, 1, 0]]), torch.tensor([5])
    ctx, logits = m(feats, spk, lengths)
    assert ctx.shape == (1, 5, m.bls.d_out) and logits.shape == (1, 5, 3)
    later = feats.clone()
    later[:, 4] += 3.0
    assert not torch.allclose(m(later, spk, lengths)[1][:, 0], logits[:, 0])  # the future reaches the past
    # padding: a dialogue of 3 padded to 5 gives the same outputs for its 3 utterances whatever the padding holds
    short = m(feats[:, :3], spk[:, :3], torch.tensor([3]))[1]
    padded = torch.cat([feats[:, :3], 100 * torch.randn(1, 2, 12)], dim=1)
    torch.testing.assert_close(m(padded, spk, torch.tensor([3]))[1][:, :3], short)
    # speakers matter
    assert not torch.allclose(m(feats, torch.zeros_like(spk), lengths)[1], logits)


def test_learns_a_context_dependent_toy_task():
    """Label of utterance t = sign of feature 0 of utterance t+1 (needs the backward direction)."""
    torch.manual_seed(0)
    cfg = BroadMambaConfig(d_in=4, n_labels=2, d_model=16, d_state=4, n_layers=1, n_feature_groups=2,
                           feature_size=8, n_enhance=1, enhance_size=8, dropout=0.0)  # fmt: skip
    m = BroadMamba(cfg)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    feats = torch.randn(64, 6, 4)
    target = (feats[:, 1:, 0] > 0).long()
    spk, lengths = torch.zeros(64, 6, dtype=torch.long), torch.full((64,), 6)
    losses = []
    for _ in range(60):
        logits = m(feats, spk, lengths)[1][:, :5]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 2), target.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    acc = (m.eval()(feats, spk, lengths)[1][:, :5].argmax(-1) == target).float().mean()
    assert losses[-1] < 0.5 * losses[0] and acc > 0.9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="mamba_ssm's fused kernel needs CUDA")
def test_fused_kernel_matches_reference_on_cuda():
    pytest.importorskip("mamba_ssm")
    from affect_llm.context.broad_mamba import _fused_scan

    g = torch.Generator(device="cuda").manual_seed(0)
    b, length, d, n = 2, 16, 8, 4
    u = torch.randn(b, length, d, device="cuda", generator=g)
    delta = torch.rand(b, length, d, device="cuda", generator=g)
    A = -torch.rand(d, n, device="cuda", generator=g)
    B = torch.randn(b, length, n, device="cuda", generator=g)
    C = torch.randn(b, length, n, device="cuda", generator=g)
    D = torch.randn(d, device="cuda", generator=g)
    fused = _fused_scan()(u.transpose(1, 2).contiguous(), delta.transpose(1, 2).contiguous(), A,
                          B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous(), D).transpose(1, 2)  # fmt: skip
    torch.testing.assert_close(fused, selective_scan_ref(u, delta, A, B, C, D), atol=1e-4, rtol=1e-3)


def test_causal_broad_mamba_reads_only_the_past():
    """bidirectional=False: an utterance's output is the same whether or not later utterances follow it (what the
    pipeline relies on when it analyses an utterance as the last of its dialogue), and it has no backward block."""
    torch.manual_seed(0)
    cfg = BroadMambaConfig(d_in=12, n_labels=3, d_model=16, d_state=4, n_layers=2, n_feature_groups=2,
                           feature_size=4, n_enhance=2, enhance_size=8, dropout=0.0, bidirectional=False)  # fmt: skip
    m = BroadMamba(cfg).eval()
    assert all(layer.bwd is None for layer in m.layers)
    feats, spk, lengths = torch.randn(1, 5, 12), torch.tensor([[0, 1, 0, 1, 0]]), torch.tensor([5])
    ctx, logits = m(feats, spk, lengths)
    later = feats.clone()
    later[:, 3:] += 3.0
    ctx2, logits2 = m(later, spk, lengths)
    torch.testing.assert_close(logits2[:, :3], logits[:, :3])  # the future does not reach the past
    torch.testing.assert_close(ctx2[:, :3], ctx[:, :3])
    assert not torch.allclose(logits2[:, 3:], logits[:, 3:])
    for k in range(1, 6):  # every prefix's last output is the whole dialogue's output at that position
        torch.testing.assert_close(m(feats[:, :k], spk[:, :k], torch.tensor([k]))[1][:, -1], logits[:, k - 1])
    assert not torch.allclose(m(feats[:, :4].flip(1), spk[:, :4], torch.tensor([4]))[1][:, -1], logits[:, 3])  # order matters
