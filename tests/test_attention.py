"""Chapter 3: our attention against PyTorch's (forward and backward, with padding), RoPE, masks, bad input."""

import pytest
import torch
import torch.nn.functional as F

from dsmini_helpers.attention import (
    MultiHeadAttention,
    RotaryEmbedding,
    apply_rope,
    attention_weights,
    scaled_dot_product_attention,
    stable_softmax,
    torch_sdpa_core,
)

TOL = dict(atol=1e-5, rtol=1e-5)


def _padded_mask(B: int, T: int) -> torch.Tensor:
    keep = torch.ones(B, T, dtype=torch.bool)
    keep[1, -3:] = False
    keep[2, T // 2:] = False
    return keep


@pytest.mark.parametrize("with_mask", [False, True])
def test_ours_equals_torch_sdpa_forward_and_backward(with_mask):
    torch.manual_seed(0)
    B, H, T, D = 3, 2, 9, 8
    q, k, v = (torch.randn(B, H, T, D, dtype=torch.float64, requires_grad=True) for _ in range(3))
    keep = _padded_mask(B, T) if with_mask else None
    ours = scaled_dot_product_attention(q, k, v, keep)
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=None if keep is None else keep[:, None, None, :])
    torch.testing.assert_close(ours, theirs)
    g = torch.randn_like(ours)
    grads_ours = torch.autograd.grad(ours, (q, k, v), g)
    grads_theirs = torch.autograd.grad(theirs, (q, k, v), g)
    for a, b in zip(grads_ours, grads_theirs):
        torch.testing.assert_close(a, b)


def test_torch_sdpa_core_equals_ours_including_empty_rows():
    torch.manual_seed(1)
    q, k, v = (torch.randn(3, 2, 7, 4) for _ in range(3))
    keep = _padded_mask(3, 7)
    keep[0] = False                                       # sequence 0: all padding
    torch.testing.assert_close(torch_sdpa_core(q, k, v, keep), scaled_dot_product_attention(q, k, v, keep))
    torch.testing.assert_close(torch_sdpa_core(q, k, v), scaled_dot_product_attention(q, k, v))


def test_padded_keys_get_zero_weight_and_zero_gradient():
    torch.manual_seed(2)
    q = torch.randn(3, 2, 8, 4)
    k = torch.randn(3, 2, 8, 4, requires_grad=True)
    v = torch.randn(3, 2, 8, 4, requires_grad=True)
    keep = _padded_mask(3, 8)
    w = attention_weights(q, k, keep)                     # (B, H, T, T)
    assert (w.masked_select(~keep[:, None, None, :].expand_as(w)) == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 2, 8))
    scaled_dot_product_attention(q, k, v, keep).sum().backward()
    assert (k.grad[1, :, -3:] == 0).all() and (v.grad[2, :, 4:] == 0).all()
    assert v.grad[0].abs().sum() > 0


def _grad_close(ours, theirs):
    """1e-5 relative to the gradient's scale: float32 sums over B*T positions round in their own order."""
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5 * theirs.abs().max().item())


@pytest.mark.parametrize("core", [None, scaled_dot_product_attention])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("C,T", [(32, 10), (256, 128)])
def test_multi_head_equals_torch_multihead_attention(core, bias, C, T):
    torch.manual_seed(3)
    H, B = 4, 3
    ours = MultiHeadAttention(C, H, rope=False, core=core, bias=bias)
    ref = torch.nn.MultiheadAttention(C, H, bias=bias, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.qkv.weight)
        ref.out_proj.weight.copy_(ours.out.weight)
        if bias:
            ours.qkv.bias.normal_()
            ours.out.bias.normal_()
            ref.in_proj_bias.copy_(ours.qkv.bias)
            ref.out_proj.bias.copy_(ours.out.bias)
    x = torch.randn(B, T, C)
    keep = _padded_mask(B, T)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y1 = ours(x1, keep)
    y2, _ = ref(x2, x2, x2, key_padding_mask=~keep, need_weights=False)
    torch.testing.assert_close(y1, y2, **TOL)
    g = torch.randn_like(y1)
    y1.backward(g)
    y2.backward(g)
    _grad_close(x1.grad, x2.grad)
    _grad_close(ours.qkv.weight.grad, ref.in_proj_weight.grad)
    _grad_close(ours.out.weight.grad, ref.out_proj.weight.grad)
    if bias:
        _grad_close(ours.qkv.bias.grad, ref.in_proj_bias.grad)
        _grad_close(ours.out.bias.grad, ref.out_proj.bias.grad)


def test_rope_score_depends_only_on_relative_position():
    torch.manual_seed(4)
    D = 16
    rot = RotaryEmbedding(D)
    q, k = torch.randn(D), torch.randn(D)

    def at(x, p):
        cos, sin = rot(torch.tensor([p]))                  # (1, D)
        return apply_rope(x[None], cos, sin)[0]

    for m, n, shift in [(3, 7, 100), (0, 0, 41), (12, 5, 9)]:
        torch.testing.assert_close(at(q, m) @ at(k, n), at(q, m + shift) @ at(k, n + shift), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(at(q, m).norm(), q.norm())   # a rotation keeps lengths
    assert not torch.allclose(at(q, 3) @ at(k, 7), at(q, 3) @ at(k, 8), atol=1e-3)  # but distance matters


def test_rope_int_positions_match_explicit_positions():
    rot = RotaryEmbedding(8)
    cos1, sin1 = rot(5)
    cos2, sin2 = rot(torch.arange(5))
    torch.testing.assert_close(cos1, cos2)
    torch.testing.assert_close(sin1, sin2)
    assert cos1.shape == (5, 8)
    torch.testing.assert_close(cos1[0], torch.ones(8))      # position 0: no rotation


def test_permutation_equivariance_without_positions_only():
    torch.manual_seed(5)
    x = torch.randn(2, 12, 32)
    perm = torch.randperm(12)
    plain = MultiHeadAttention(32, 4, rope=False).eval()
    torch.testing.assert_close(plain(x[:, perm]), plain(x)[:, perm], **TOL)
    rope = MultiHeadAttention(32, 4, rope=True).eval()
    assert not torch.allclose(rope(x[:, perm]), rope(x)[:, perm], atol=1e-4)


@pytest.mark.parametrize("core", [None, scaled_dot_product_attention])
def test_fully_padded_rows_are_finite_forward_and_backward(core):
    torch.manual_seed(6)
    m = MultiHeadAttention(32, 4, core=core, bias=True)
    x = torch.randn(2, 6, 32, requires_grad=True)
    keep = torch.zeros(2, 6, dtype=torch.bool)
    keep[0, :3] = True                                     # sequence 1 is all padding
    y = m(x, keep)
    assert torch.isfinite(y).all()
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in m.parameters())
    # the core's convention: a query with no kept key gets a zero output
    q, k, v = m.project(x.detach())
    assert (m.core(q, k, v, keep, 0.0)[1] == 0).all()


def test_stable_softmax_large_scores_and_empty_rows():
    x = torch.tensor([[1000.0, 999.0, -50.0], [float("-inf")] * 3])
    out = stable_softmax(x)
    torch.testing.assert_close(out[0], torch.softmax(x[0], -1))
    assert (out[1] == 0).all()


def test_dropout_only_in_training():
    torch.manual_seed(7)
    m = MultiHeadAttention(16, 2, dropout=0.5)
    x = torch.randn(1, 8, 16)
    m.eval()
    torch.testing.assert_close(m(x), m(x))
    m.train()
    assert not torch.allclose(m(x), m(x))


def test_bad_shapes_raise_clear_errors():
    m = MultiHeadAttention(32, 4)
    with pytest.raises(ValueError, match="d_model=32"):
        m(torch.randn(2, 5, 16))
    with pytest.raises(ValueError, match=r"\(batch, seq, d_model"):
        m(torch.randn(5, 32))
    with pytest.raises(ValueError, match="key_padding_mask must have shape"):
        m(torch.randn(2, 5, 32), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool"):
        m(torch.randn(2, 5, 32), torch.ones(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="multiple of n_heads"):
        MultiHeadAttention(30, 4)
    with pytest.raises(ValueError, match="even head_dim"):
        RotaryEmbedding(7)
    q = torch.randn(1, 2, 5, 8)
    with pytest.raises(ValueError, match="4-D"):
        scaled_dot_product_attention(q[0], q[0], q[0])
    with pytest.raises(ValueError, match="expected q"):
        scaled_dot_product_attention(q, torch.randn(1, 2, 5, 4), q)
    with pytest.raises(TypeError, match="floating-point"):
        scaled_dot_product_attention(q.long(), q.long(), q.long())
    with pytest.raises(ValueError, match="apply_rope"):
        apply_rope(q, *RotaryEmbedding(8)(4))


def test_rope_base_and_core_are_configurable():
    m = MultiHeadAttention(32, 4, rope_base=500.0, core=scaled_dot_product_attention)
    assert m.rotary.base == 500.0 and m.core is scaled_dot_product_attention
    assert MultiHeadAttention(32, 4, rope=False).rotary is None
    assert MultiHeadAttention(32, 4).core is torch_sdpa_core


def test_rope_keeps_the_autocast_dtype():
    """Under bf16 autocast q, k stay bf16 after RoPE, like v (a float32 cos/sin must not promote them)."""
    from dsmini_helpers.attention import RotaryEmbedding, apply_rope
    from dsmini_helpers.sparse_attention import SlidingWindowAttention

    x = torch.randn(2, 4, 8, 16, dtype=torch.bfloat16)
    cos, sin = RotaryEmbedding(16)(8)
    assert apply_rope(x, cos, sin).dtype == torch.bfloat16
    layer = SlidingWindowAttention(32, 4, window=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(torch.randn(2, 8, 32))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
