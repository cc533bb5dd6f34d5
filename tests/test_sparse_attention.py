"""Chapter 4: sliding-window attention. Every implementation must equal the dense oracle, forward and backward."""

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

from dsmini_helpers.attention import MultiHeadAttention
from dsmini_helpers.flex_attention import flex_sliding_window_attention
from dsmini_helpers.sparse_attention import (
    SlidingWindowAttention,
    SlidingWindowCore,
    attention_pattern,
    band_mask,
    blocked_sliding_window_attention,
    dense_sliding_window_attention,
    layer_windows,
    receptive_field,
    resolve_impl,
    sdpa_masked_attention,
    sliding_window_attention,
)

TOL = dict(atol=1e-5, rtol=1e-5)

CASES = [  # (B, H, T, D, window, pad)
    (2, 3, 64, 8, 8, False),  # T a multiple of w
    (2, 3, 37, 8, 5, False),  # T not a multiple of w
    (2, 3, 37, 8, 5, True),  # padding, one sequence fully padded
    (1, 2, 5, 8, 16, False),  # T < w
    (2, 2, 1, 8, 3, True),  # T = 1
    (2, 2, 20, 8, 0, True),  # w = 0
    (3, 1, 50, 4, 7, True),
]


def _inputs(B, H, T, D, pad, seed=0, grad=True):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, H, T, D, generator=g).requires_grad_(grad) for _ in range(3))
    mask = None
    if pad:
        mask = torch.rand(B, T, generator=g) > 0.3
        mask[0] = False  # a sequence that is entirely padding
    return q, k, v, mask


def _globals(B, T):
    glob = torch.zeros(B, T, dtype=torch.bool)
    glob[:, 0] = True  # [CLS]
    glob[-1, T // 2] = True  # and one more, in the last sequence only
    return glob


def _assert_same(fn, q, k, v, window, mask, glob=None):
    ref = dense_sliding_window_attention(q, k, v, window, mask, glob)
    out = fn(q, k, v, window, mask, glob) if glob is not None else fn(q, k, v, window, mask)
    assert out.shape == q.shape
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, **TOL)
    grad = torch.randn_like(ref)
    for a, r in zip(torch.autograd.grad(out, (q, k, v), grad), torch.autograd.grad(ref, (q, k, v), grad)):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, r, **TOL)


def test_oracle_equals_full_attention_when_window_covers_everything():
    q, k, v, _ = _inputs(2, 2, 30, 8, False, grad=False)
    torch.testing.assert_close(dense_sliding_window_attention(q, k, v, 29),
                               torch.nn.functional.scaled_dot_product_attention(q, k, v), **TOL)


def test_oracle_fully_padded_rows_are_zero():
    q, k, v, _ = _inputs(2, 1, 10, 4, False, grad=False)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[0] = False
    out = dense_sliding_window_attention(q, k, v, 2, mask)
    assert torch.equal(out[0], torch.zeros_like(out[0]))
    assert out[1].abs().sum() > 0


@pytest.mark.parametrize("case", CASES)
def test_blocked_equals_oracle(case):
    B, H, T, D, window, pad = case
    q, k, v, mask = _inputs(B, H, T, D, pad)
    _assert_same(blocked_sliding_window_attention, q, k, v, window, mask)


@pytest.mark.parametrize("case", CASES)
def test_blocked_with_global_tokens_equals_oracle(case):
    B, H, T, D, window, pad = case
    q, k, v, mask = _inputs(B, H, T, D, pad, seed=1)
    _assert_same(blocked_sliding_window_attention, q, k, v, window, mask, _globals(B, T))


@pytest.mark.parametrize("case", CASES[:4])
def test_sdpa_cached_mask_equals_oracle(case):
    B, H, T, D, window, pad = case
    q, k, v, mask = _inputs(B, H, T, D, pad, seed=2)
    _assert_same(sdpa_masked_attention, q, k, v, window, mask)


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 2), T=st.integers(1, 40), window=st.integers(0, 12), pad=st.booleans(),
       glob=st.booleans(), seed=st.integers(0, 2**16))
def test_blocked_equals_oracle_random(B, T, window, pad, glob, seed):
    q, k, v, mask = _inputs(B, 2, T, 4, pad, seed=seed)
    _assert_same(blocked_sliding_window_attention, q, k, v, window, mask, _globals(B, T) if glob else None)


def test_flex_forward_equals_oracle_on_cpu():
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eager flex warns that it is slow
        for pad in (False, True):
            q, k, v, mask = _inputs(2, 2, 37, 8, pad, seed=3, grad=False)
            for glob in (None, _globals(2, 37)):
                ref = dense_sliding_window_attention(q, k, v, 5, mask, glob)
                out = flex_sliding_window_attention(q, k, v, 5, mask, glob, compiled=False)
                torch.testing.assert_close(out, ref, **TOL)


def test_flex_backward_on_cpu_gives_a_clear_error():
    q, k, v, _ = _inputs(1, 1, 8, 4, False)
    with pytest.raises(NotImplementedError, match="blocked"):
        flex_sliding_window_attention(q, k, v, 2, compiled=False)


class _LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an op produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("glob", [False, True])
def test_blocked_never_builds_a_T_by_T_tensor(glob):
    B, H, T, D, w = 1, 2, 2048, 4, 16
    q, k, v, mask = _inputs(B, H, T, D, False)
    mask = torch.ones(B, T, dtype=torch.bool)
    with _LargestTensor() as probe:
        out = blocked_sliding_window_attention(q, k, v, w, mask, _globals(B, T) if glob else None)
        out.sum().backward()
    assert probe.largest < T * T / 8, probe.largest  # O(T·w): 3·T·w·H = 196k < T²/8 = 524k
    with _LargestTensor() as probe_dense:
        dense_sliding_window_attention(q, k, v, w, mask)
    assert probe_dense.largest >= T * T  # the oracle does


def test_dispatch_and_auto_choice():
    q, k, v, mask = _inputs(2, 2, 33, 8, True, grad=False)
    assert resolve_impl("auto", q) == "blocked"  # CPU
    assert resolve_impl("flex", q) == "flex"
    ref = dense_sliding_window_attention(q, k, v, 4, mask)
    for impl in ("auto", "blocked", "sdpa", "dense"):
        torch.testing.assert_close(sliding_window_attention(q, k, v, 4, mask, impl=impl), ref, **TOL)


@pytest.mark.parametrize("bad, err", [
    (dict(window=-1), ValueError),
    (dict(window=2.5), TypeError),
    (dict(k=torch.randn(1, 2, 10, 3)), ValueError),
    (dict(q=torch.randn(2, 10, 4)), ValueError),
    (dict(key_padding_mask=torch.ones(1, 10)), TypeError),
    (dict(key_padding_mask=torch.ones(1, 9, dtype=torch.bool)), ValueError),
    (dict(global_mask=torch.ones(1, 10, dtype=torch.int64)), TypeError),
    (dict(impl="sparse"), ValueError),
    (dict(dropout_p=1.5), ValueError),
    (dict(k=torch.randn(1, 2, 10, 4, dtype=torch.float64)), TypeError),
])
def test_bad_input_gives_a_clear_error(bad, err):
    args = dict(q=torch.randn(1, 2, 10, 4), k=torch.randn(1, 2, 10, 4), v=torch.randn(1, 2, 10, 4), window=2)
    args.update(bad)
    with pytest.raises(err):
        sliding_window_attention(**args)


def test_band_and_receptive_field_grow_by_w_per_layer():
    assert band_mask(4, 1).int().tolist() == [[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1]]
    T, w, token = 64, 3, 30
    for L in range(1, 8):
        rf = receptive_field([attention_pattern(T, w)] * L, token)
        assert rf.shape == (L + 1, T)
        assert [int(r.sum()) for r in rf] == [min(2 * n * w + 1, T) for n in range(L + 1)]
        assert rf[-1, token - L * w] and not rf[-1, token - L * w - 1]
    assert receptive_field([attention_pattern(T, w, (0,))] * 2, token)[-1].all()  # via [CLS]
    assert receptive_field([attention_pattern(T, None)], token)[-1].all()  # one global layer
    mixed = receptive_field([attention_pattern(T, w), attention_pattern(T, w), attention_pattern(T, None)], token)
    assert [int(r.sum()) for r in mixed] == [1, 2 * w + 1, 4 * w + 1, T]  # grows by w per local layer, then all


def test_layer_windows_modernbert_pattern():
    assert layer_windows(6, 128, 3) == [None, 128, 128, None, 128, 128]
    assert layer_windows(3, 64) == [64, 64, 64]
    with pytest.raises(ValueError):
        layer_windows(3, 64, 0)


def test_sliding_window_attention_module_is_chapter3_module_with_another_core():
    torch.manual_seed(0)
    d, H, T = 32, 4, 40
    x = torch.randn(2, T, d)
    pad = torch.ones(2, T, dtype=torch.bool)
    pad[1, 30:] = False
    swa = SlidingWindowAttention(d, H, window=5, impl="blocked")
    assert isinstance(swa, MultiHeadAttention) and isinstance(swa.core, SlidingWindowCore)
    oracle = MultiHeadAttention(d, H, core=lambda q, k, v, m, p: dense_sliding_window_attention(q, k, v, 5, m))
    oracle.load_state_dict(swa.state_dict())
    out = swa(x, pad)
    torch.testing.assert_close(out, oracle(x, pad), **TOL)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in swa.parameters())
    # a window that covers everything is full attention
    wide = SlidingWindowAttention(d, H, window=T)
    full = MultiHeadAttention(d, H)
    full.load_state_dict(wide.state_dict())
    torch.testing.assert_close(wide(x, pad)[:, :30], full(x, pad)[:, :30], **TOL)


def test_module_with_global_cls_and_dropout():
    torch.manual_seed(0)
    d, H, T = 16, 2, 25
    x = torch.randn(2, T, d)
    swa = SlidingWindowAttention(d, H, window=2, n_global=1, dropout=0.1).eval()
    glob = torch.zeros(2, T, dtype=torch.bool)
    glob[:, 0] = True
    oracle = MultiHeadAttention(d, H, core=lambda q, k, v, m, p: dense_sliding_window_attention(q, k, v, 2, m, glob))
    oracle.load_state_dict(swa.state_dict())
    torch.testing.assert_close(swa(x), oracle(x), **TOL)
    swa.train()
    assert torch.isfinite(swa(x)).all()  # attention dropout through SDPA in the blocked kernel
    with pytest.raises(ValueError):
        SlidingWindowAttention(d, H, window=-2)
    with pytest.raises(ValueError):
        SlidingWindowAttention(d, H, window=2, impl="nope")
