"""Chapter 6: the DeepSeek-Mini encoder, its configuration, parameter counts and memory estimator."""

import dataclasses
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dsmini_helpers.attention import MultiHeadAttention
from dsmini_helpers.model import (
    DSMiniConfig,
    DSMiniModel,
    MLMOutput,
    RMSNorm,
    config_for_profile,
    count_parameters,
    count_parameters_formula,
    estimate_memory,
    measure_training_peak,
)
from dsmini_helpers.moe import MoE, SwiGLU, moe_aux_loss
from dsmini_helpers.sparse_attention import SlidingWindowAttention

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(vocab_size=300, d_model=32, n_layers=4, n_heads=4, d_hidden=48, window=3, global_every=3)


def _model(seed=0, **overrides):
    torch.manual_seed(seed)
    return DSMiniModel(DSMiniConfig(**{**TINY, **overrides}))


def _batch(B=3, T=20, V=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 13:] = False  # second sequence: 13 real tokens
    mask[2, 6:] = False  # third: 6 real tokens
    ids[~mask] = 0
    labels = torch.full((B, T), -100)
    pick = (torch.rand(B, T, generator=g) < 0.3) & mask
    labels[pick] = ids[pick]
    return ids, mask, labels


@pytest.mark.parametrize("moe_layers", [(), (1, 2)])
def test_shapes_dtypes_and_padding(moe_layers):
    model = _model(moe_layers=moe_layers, n_experts=4, top_k=2, n_shared=1).eval()
    ids, mask, labels = _batch()
    B, T = ids.shape
    with torch.no_grad():
        full = model(ids, mask)
        sparse = model(ids, mask, labels)
        alone = model.encode(ids[2:, :6])  # the third sequence without its padding
    assert isinstance(full, MLMOutput) and full.loss is None
    assert full.logits.shape == (B, T, 300) and full.logits.dtype == torch.float32
    assert full.hidden.shape == (B, T, 32) and full.hidden.dtype == torch.float32
    assert sparse.logits.shape == (int((labels != -100).sum()), 300)
    assert sparse.loss.dim() == 0 and torch.isfinite(sparse.loss)
    assert torch.isfinite(full.hidden).all()
    torch.testing.assert_close(full.hidden[2, :6], alone[0], atol=1e-5, rtol=1e-5)


def test_bfloat16_model_keeps_its_dtype():
    model = _model(moe_layers=(1,)).to(torch.bfloat16).eval()
    ids, mask, labels = _batch()
    with torch.no_grad():
        out = model(ids, mask, labels)
    assert out.hidden.dtype == torch.bfloat16 and out.logits.dtype == torch.bfloat16
    assert torch.isfinite(out.loss) and out.loss.dtype == torch.float32


def test_layers_are_chosen_as_configured():
    cfg = DSMiniConfig(**{**TINY, "n_layers": 7, "global_every": 3, "moe_layers": (0, 4, 5), "rope_base": 500.0})
    model = DSMiniModel(cfg)
    kinds = []
    for i, block in enumerate(model.blocks):
        sliding = isinstance(block.attn, SlidingWindowAttention)
        assert isinstance(block.attn, MultiHeadAttention)
        kinds.append(("S" if sliding else "G") + ("M" if isinstance(block.ffn, MoE) else "D"))
        if sliding:
            assert block.attn.window == cfg.window
        assert isinstance(block.ffn, MoE if i in (0, 4, 5) else SwiGLU)
        assert block.attn.rotary.base == 500.0
    assert kinds == ["GM", "SD", "SD", "GD", "SM", "SM", "GD"]
    assert cfg.layer_kinds()[0] == "global+moe" and cfg.layer_kinds()[1] == "sliding+dense"
    assert all(isinstance(b.attn, SlidingWindowAttention) is False
               for b in DSMiniModel(dataclasses.replace(cfg, global_every=1)).blocks)


def test_sliding_layers_really_are_local():
    """Changing a token far outside every window cannot move a position's output in an all-local model."""
    cfg = DSMiniConfig(**{**TINY, "n_layers": 2, "global_every": 100, "window": 2})  # only layer 0 is global
    local = DSMiniModel(cfg)
    local.blocks = local.blocks[1:]  # keep the sliding-window block only
    ids = torch.randint(5, 300, (1, 30))
    changed = ids.clone()
    changed[0, 29] = 7 if ids[0, 29] != 7 else 8
    with torch.no_grad():
        a, b = local.encode(ids), local.encode(changed)
    torch.testing.assert_close(a[0, :27], b[0, :27])  # |i - 29| > 2: unaffected
    assert not torch.allclose(a[0, 27:], b[0, 27:])


def test_sparse_head_equals_full_head():
    model = _model(moe_layers=(1,)).eval()
    ids, mask, labels = _batch(seed=1)
    with torch.no_grad():
        sparse = model(ids, mask, labels)
        full = model(ids, mask).logits
    where = labels != -100
    torch.testing.assert_close(sparse.logits, full[where])
    torch.testing.assert_close(sparse.loss, F.cross_entropy(full[where], labels[where]))
    empty = model(ids, mask, torch.full_like(labels, -100))
    assert empty.logits.shape == (0, 300) and empty.loss.item() == 0.0


def test_tied_weights_are_one_tensor():
    model = _model()
    assert model.head.weight is model.embed.weight
    ids, mask, labels = _batch()
    model(ids, mask, labels).loss.backward()
    assert model.embed.weight.grad is not None  # both uses accumulate into one gradient
    with torch.no_grad():
        model.embed.weight[7].fill_(3.0)
    assert torch.equal(model.head.weight[7], torch.full((32,), 3.0))
    untied = _model(tie_weights=False)
    assert untied.head.weight is not untied.embed.weight
    assert count_parameters(untied)["total"] == count_parameters(model)["total"] + 300 * 32


def test_config_json_round_trip(tmp_path):
    cfg = DSMiniConfig(**{**TINY, "moe_layers": [1, 3], "n_experts": 6, "top_k": 2, "n_shared": 1,
                          "balance": "bias", "capacity_factor": 1.25, "dropout": 0.1, "tie_weights": False})
    cfg.save(tmp_path / "config.json")
    back = DSMiniConfig.load(tmp_path / "config.json")
    assert back == cfg and back.moe_layers == (1, 3)
    with pytest.raises(ValueError, match="unknown config keys"):
        DSMiniConfig.from_dict({**cfg.to_dict(), "n_layer": 3})


@pytest.mark.parametrize("name,file", [("ci", "ci.yaml"), ("cpu", "cpu.yaml"), ("gpu", "pretrain_small.yaml")])
def test_each_profile_reads_its_model_from_its_experiment_file(name, file):
    assert config_for_profile(name) == DSMiniConfig.from_yaml(ROOT / "experiments" / file)


def test_experiment_files_with_unknown_keys_are_errors(tmp_path):
    f = tmp_path / "exp.yaml"
    f.write_text("name: exp\nmodle:\n  d_model: 64\n")
    with pytest.raises(ValueError, match="unknown keys"):
        DSMiniConfig.from_yaml(f)
    f.write_text("name: exp\nmodel:\n  d_modl: 64\n")
    with pytest.raises(ValueError, match="unknown config keys"):
        DSMiniConfig.from_yaml(f)


def _check_every_parameter_gets_a_gradient(model, ids, mask, labels):
    out = model(ids, mask, labels)
    (out.loss + moe_aux_loss(model)).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reached {missing}"


def test_dense_model_backprops_into_every_parameter():
    model = _model(dropout=0.1).train()
    _check_every_parameter_gets_a_gradient(model, *_batch(B=4, T=24))


@pytest.mark.parametrize("balance", ["aux", "bias"])
def test_moe_model_backprops_into_every_parameter_router_included(balance):
    model = _model(moe_layers=(0, 1, 3), n_experts=4, top_k=2, n_shared=1, balance=balance).train()
    ids, mask, labels = _batch(B=4, T=40)
    _check_every_parameter_gets_a_gradient(model, ids, mask, labels)
    routers = [n for n, _ in model.named_parameters() if "router" in n]
    assert len(routers) == 3


@pytest.mark.parametrize("bad,message", [
    (dict(d_model=30, n_heads=4), "divisible by n_heads"),
    (dict(d_model=36, n_heads=4), "even for RoPE"),
    (dict(window=0), "window must be >= 1"),
    (dict(n_experts=2, top_k=3), "top_k"),
    (dict(moe_layers=(4,)), "moe_layers"),
    (dict(moe_layers=(1, 1)), "moe_layers"),
    (dict(balance="loss-free"), "balance"),
    (dict(dropout=1.0), "dropout"),
    (dict(global_every=0), "global_every"),
    (dict(rope_base=0.5), "rope_base"),
    (dict(capacity_factor=0.0), "capacity_factor"),
])
def test_bad_configs_fail_at_construction(bad, message):
    with pytest.raises(ValueError, match=message):
        DSMiniConfig(**{**TINY, **bad})


def test_bad_types_and_inputs():
    with pytest.raises(TypeError, match="n_layers must be an int"):
        DSMiniConfig(**{**TINY, "n_layers": 2.0})
    with pytest.raises(TypeError, match="DSMiniConfig"):
        DSMiniModel(TINY)
    model = _model()
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 513, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 300\)"):
        model.eval()(torch.full((1, 4), 300))  # training mode skips the value check: it would sync every step
    model.train()
    with pytest.raises(TypeError, match="attention_mask"):
        model(torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 4))
    with pytest.raises(TypeError, match="input_ids"):
        model(torch.zeros(1, 4))


def test_rmsnorm_matches_torch():
    x = torch.randn(3, 7, 16) * 2 + 0.5
    ours, ref = RMSNorm(16), torch.nn.RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        ours.weight.normal_()
        ref.weight.copy_(ours.weight)
    torch.testing.assert_close(ours(x), ref(x))


@pytest.mark.parametrize("name", ["ci", "cpu", "gpu"])
def test_parameter_counts(name):
    cfg = config_for_profile(name)
    counted = count_parameters(cfg)
    assert counted == count_parameters_formula(cfg)
    if name == "ci":  # a real model, not only the meta-device one
        assert counted["total"] == sum(p.numel() for p in DSMiniModel(cfg).parameters())
    assert counted["active_per_token"] < counted["total"]
    assert counted["head"] == 0  # tied


def test_loss_at_init_is_close_to_ln_vocab():
    model = _model(vocab_size=5000, d_model=64, d_hidden=96).eval()
    ids, mask, _ = _batch(B=8, T=64, V=5000)
    g = torch.Generator().manual_seed(3)
    chosen = (torch.rand(ids.shape, generator=g) < 0.3) & mask
    labels = torch.where(chosen, ids, -100)
    with torch.no_grad():
        loss = model(torch.where(chosen, 4, ids), mask, labels).loss.item()  # 4 = [MASK]
    assert abs(loss - math.log(5000)) < 0.1


def test_estimate_memory_terms_and_validation():
    cfg = config_for_profile("cpu")
    est = estimate_memory(cfg, 8, 256, torch.float32)
    P = count_parameters(cfg)["total"]
    assert est["weights"] == 4 * P and est["gradients"] == 4 * P and est["optimizer"] == 8 * P
    assert est["peak"] >= sum(v for k, v in est.items() if k != "peak") - 1
    twice = estimate_memory(cfg, 16, 256, torch.float32)["activations"]
    assert twice == pytest.approx(2 * est["activations"], rel=1e-4)
    assert estimate_memory(cfg, 8, 256, torch.float32, training=False)["peak"] < est["peak"]
    assert estimate_memory(cfg, 8, 256, torch.bfloat16)["activations"] < est["activations"]
    gpu = estimate_memory(config_for_profile("gpu"), 24, 512, torch.bfloat16)
    assert 1.15 * gpu["peak"] <= 7.5 * 2**30  # the gpu profile's batch fits the 8 GB budget (estimated)
    with pytest.raises(ValueError, match="batch_size"):
        estimate_memory(cfg, 0, 256)
    with pytest.raises(TypeError, match="dtype"):
        estimate_memory(cfg, 8, 256, "float32")


@pytest.mark.parametrize("name,cfg", [
    ("dense", DSMiniConfig(vocab_size=20_000, d_model=128, n_layers=2, n_heads=4, d_hidden=256, window=16,
                           global_every=2)),
    ("moe", DSMiniConfig(vocab_size=8_000, d_model=128, n_layers=4, n_heads=4, d_hidden=256, window=16,
                         global_every=2, moe_layers=(1, 3), n_experts=4, top_k=2, n_shared=1)),
])
def test_estimator_within_15_percent_of_measured_cpu_peak(name, cfg):
    measured = measure_training_peak(cfg, 8, 128, torch.float32)
    estimated = estimate_memory(cfg, 8, 128, torch.float32)["peak"]
    assert abs(estimated / measured - 1) < 0.15, (name, estimated, measured)
