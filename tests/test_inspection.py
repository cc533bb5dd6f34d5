"""Chapter 8's inspection helpers: attention weights and expert routing captured by hooks, on a small
untrained DeepSeek-Mini (every layer kind: global and sliding attention, dense and MoE FFN), against the
layers' real outputs and the masks the layers are built with."""

import pytest
import torch

from dsmini_helpers.inspection import (
    allowed_keys,
    attention_probs,
    capture_attention,
    capture_routing,
    output_from_probs,
    routed_output,
)
from dsmini_helpers.model import DSMiniConfig, DSMiniModel
from dsmini_helpers.sparse_attention import band_mask

WINDOW = 3


def _model(**overrides) -> DSMiniModel:
    torch.manual_seed(0)
    config = dict(vocab_size=50, d_model=32, n_layers=3, n_heads=4, d_hidden=48, window=WINDOW, global_every=2,
                  moe_layers=(1, 2), n_experts=4, top_k=2, n_shared=1, max_len=32)
    config.update(overrides)
    return DSMiniModel(DSMiniConfig(**config)).eval()


def _ids(B: int = 2, T: int = 16) -> torch.Tensor:
    return torch.randint(0, 50, (B, T), generator=torch.Generator().manual_seed(1))


def test_weights_rebuild_every_layer_output_and_keep_to_each_layer_mask():
    net, ids = _model(), _ids()
    layers = capture_attention(net, ids)
    assert [la.layer for la in layers] == [0, 1, 2]
    assert [la.window for la in layers] == [None, WINDOW, None]
    band = band_mask(16, WINDOW)
    for la in layers:
        assert la.probs.shape == (2, 4, 16, 16) and la.max_error < 1e-5
        torch.testing.assert_close(la.probs.sum(-1), torch.ones(2, 4, 16))
        if la.window is None:
            assert (la.probs > 0).all()
        else:
            assert (la.probs[..., ~band] == 0).all() and (la.probs[..., band] > 0).all()


def test_capture_attention_removes_its_hooks_and_leaves_the_output_unchanged():
    net, ids = _model(), _ids()
    before = net(ids).logits
    capture_attention(net, ids)
    assert not any(b.attn._forward_hooks or b.ffn._forward_hooks for b in net.blocks)
    torch.testing.assert_close(net(ids).logits, before)


def test_padded_keys_get_no_weight_and_the_rebuilt_output_still_matches():
    net, ids = _model(), _ids()
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, 10:] = False
    for la in capture_attention(net, ids, mask):
        assert (la.probs[1, :, :, 10:] == 0).all()
        assert (la.probs[0, :, :, 10:] > 0).any()  # the unpadded row still reads them


def test_a_wrong_mask_does_not_rebuild_the_output():
    """The check can fail: full-attention weights on a sliding layer give another output."""
    net, ids = _model(), _ids()
    block = net.blocks[1]
    assert not block.is_global
    seen = {}
    hook = block.attn.register_forward_hook(lambda m, args, out: seen.update(x=args[0], out=out))
    with torch.no_grad():
        net(ids)
    hook.remove()
    right = attention_probs(block.attn, seen["x"])
    torch.testing.assert_close(output_from_probs(block.attn, seen["x"], right), seen["out"])
    q, k, _ = block.attn.project(seen["x"])
    full = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1).detach()
    assert (output_from_probs(block.attn, seen["x"], full) - seen["out"]).abs().max() > 1e-4


def test_allowed_keys_follow_the_layer_kind():
    net = _model()
    assert allowed_keys(net.blocks[0].attn, 6).all()
    torch.testing.assert_close(allowed_keys(net.blocks[1].attn, 9)[0], band_mask(9, WINDOW))
    padding = torch.tensor([[True, True, False]])
    assert allowed_keys(net.blocks[0].attn, 3, padding)[0].tolist() == [[True, True, False]] * 3


def test_routing_rebuilds_each_moe_output_and_counts_every_assignment():
    net, ids = _model(), _ids()
    routes = capture_routing(net, ids)
    assert [r.layer for r in routes] == [1, 2]
    for r in routes:
        assert r.experts.shape == r.gates.shape == (32, 2) and r.max_error < 1e-5
        assert r.load.sum() == 32 * 2
        assert torch.equal(r.load, torch.bincount(r.experts.flatten(), minlength=4))
        assert (r.experts[:, 0] != r.experts[:, 1]).all()  # two different experts per token


def test_padding_is_never_routed():
    net, ids = _model(), _ids()
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[0, 12:] = False
    for r in capture_routing(net, ids, mask):
        assert r.experts.shape == (32 - 4, 2)


def test_a_shuffled_routing_does_not_rebuild_the_output():
    net, ids = _model(), _ids()
    moe = net.blocks[1].ffn
    seen = {}
    hook = moe.register_forward_hook(lambda m, args, out: seen.update(x=args[0].reshape(-1, 32),
                                                                      out=out.reshape(-1, 32)))
    with torch.no_grad():
        net(ids)
    hook.remove()
    r = capture_routing(net, ids)[0]
    torch.testing.assert_close(routed_output(moe, seen["x"], r.experts, r.gates), seen["out"])
    wrong = r.experts.roll(1, dims=0)
    assert (routed_output(moe, seen["x"], wrong, r.gates) - seen["out"]).abs().max() > 1e-4


@pytest.mark.parametrize("balance", ["bias", "aux"])
def test_routing_capture_works_for_each_balancing(balance):
    net = _model(balance=balance, top_k=1, capacity_factor=1.0)
    routes = capture_routing(net, _ids())
    assert all(r.experts.shape == (32, 1) and r.max_error < 1e-5 for r in routes)


def test_bad_input_gets_a_clear_error():
    net = _model()
    with pytest.raises(ValueError, match="eval"):
        capture_attention(net.train(), _ids())
    net.eval()
    with pytest.raises(TypeError, match="batch, seq"):
        capture_routing(net, _ids()[0])
    with pytest.raises(TypeError, match="DSMiniModel"):
        capture_attention(torch.nn.Linear(2, 2).eval(), _ids())
    assert not any(b.attn._forward_hooks for b in net.blocks)
