"""Chapter 5 (dsmini_helpers.moe): grouped dispatch == dense oracle, gates, balancing, capacity, errors."""

import math

import pytest
import torch

from dsmini_helpers.moe import (
    MoE,
    SwiGLU,
    capacity_keep,
    moe_aux_loss,
    moe_stats,
    moe_update_biases,
    route_sigmoid,
    route_softmax,
    switch_aux_loss,
)


def _fwd_and_grads(layer, x):
    """Output and gradients (input + every parameter) of a loss that weighs output and aux loss."""
    y = layer(x)
    loss = (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum() + 10 * layer.aux_loss
    grads = torch.autograd.grad(loss, [x, *layer.parameters()])
    return y, grads


@pytest.mark.parametrize("n_experts", [1, 2, 8])
@pytest.mark.parametrize("top_k", [1, 2])
@pytest.mark.parametrize("n_shared", [0, 2])
@pytest.mark.parametrize("balance", ["aux", "bias", "none"])
def test_grouped_equals_dense_oracle(n_experts, top_k, n_shared, balance):
    if top_k > n_experts:
        pytest.skip("k > E is an error (tested below)")
    torch.manual_seed(0)
    layer = MoE(16, 24, n_experts, top_k, n_shared, balance, z_loss_coef=1e-3).double()
    if balance == "bias":
        layer.expert_bias.copy_(torch.randn(n_experts) * 0.1)  # the bias must steer both paths the same way
    x = torch.randn(3, 7, 16, dtype=torch.double, requires_grad=True)
    y_grouped, g_grouped = _fwd_and_grads(layer, x)
    stats = layer.last_stats
    layer.impl = "dense"
    y_dense, g_dense = _fwd_and_grads(layer, x)
    torch.testing.assert_close(y_grouped, y_dense)
    for a, b in zip(g_grouped, g_dense, strict=True):
        torch.testing.assert_close(a, b)
    assert sum(stats["tokens_per_expert"]) == 3 * 7 * top_k
    assert any(g.abs().sum() > 0 for g in g_grouped[1:])


def test_grouped_equals_oracle_with_capacity():
    torch.manual_seed(1)
    layer = MoE(8, 16, 4, 2, 1, "aux", capacity_factor=0.75).double()
    x = torch.randn(2, 16, 8, dtype=torch.double, requires_grad=True)
    y_grouped, g_grouped = _fwd_and_grads(layer, x)
    assert layer.last_stats["dropped_fraction"] > 0
    layer.impl = "dense"
    y_dense, g_dense = _fwd_and_grads(layer, x)
    torch.testing.assert_close(y_grouped, y_dense)
    for a, b in zip(g_grouped, g_dense, strict=True):
        torch.testing.assert_close(a, b)


def test_k_equals_e_is_the_full_soft_mixture():
    torch.manual_seed(2)
    layer = MoE(8, 16, n_experts=4, top_k=4, balance="none").double()
    x = torch.randn(2, 5, 8, dtype=torch.double)
    probs = torch.softmax(layer.router(x), dim=-1)  # (B, T, E)
    soft = sum(probs[..., e : e + 1] * layer.experts[e](x) for e in range(4))
    torch.testing.assert_close(layer(x), soft)


def test_top1_gate_is_the_router_probability_and_router_learns():
    torch.manual_seed(3)
    logits = torch.randn(10, 4, requires_grad=True)
    experts, gates, probs = route_softmax(logits, 1)
    torch.testing.assert_close(gates.squeeze(1), probs.max(dim=-1).values)
    gates.sum().backward()
    assert logits.grad.abs().sum() > 0  # a renormalised top-1 gate would be 1.0 and pass no gradient


def test_topk_gates_renormalised():
    logits = torch.randn(10, 8)
    for route in (route_softmax, route_sigmoid):
        experts, gates, _ = route(logits, 3)
        torch.testing.assert_close(gates.sum(-1), torch.ones(10))
        assert experts.shape == (10, 3)


def test_sigmoid_bias_steers_choice_not_gates():
    torch.manual_seed(4)
    logits = torch.randn(50, 4)
    bias = torch.tensor([10.0, 0.0, 0.0, 0.0])
    experts, gates, _ = route_sigmoid(logits, 1, bias)
    assert (experts == 0).all()  # the bias decides the choice ...
    torch.testing.assert_close(gates.squeeze(1), torch.sigmoid(logits[:, 0]))  # ... not the weight


@pytest.mark.parametrize("balance", ["aux", "none", "bias"])
def test_permuting_tokens_permutes_outputs(balance):
    torch.manual_seed(5)
    layer = MoE(8, 16, 4, 2, 1, balance).double()
    x = torch.randn(1, 12, 8, dtype=torch.double)
    perm = torch.randperm(12)
    torch.testing.assert_close(layer(x[:, perm]), layer(x)[:, perm])
    # and across the batch dimension: each token is routed on its own
    torch.testing.assert_close(layer(x.view(3, 4, 8)).view(1, 12, 8), layer(x))


def test_bias_rule_balances_a_skewed_router_within_200_steps():
    torch.manual_seed(6)
    layer = MoE(16, 8, n_experts=8, top_k=2, balance="bias")  # bias_rate = 1e-3 (DeepSeek-V3's gamma)
    with torch.no_grad():
        layer.router.weight[0] += 0.03  # expert 0 favoured by every token ...
        layer.router.weight[1] += 0.015  # ... and expert 1 by most
    x = torch.randn(1, 4096, 16).abs()

    def max_over_mean() -> float:
        load = torch.tensor(layer.last_stats["tokens_per_expert"], dtype=torch.float)
        return float(load.max() / load.mean())

    layer(x)
    assert max_over_mean() > 2.0, "the router should start skewed"
    for _ in range(200):
        layer(x)
        moe_update_biases(layer)
    layer(x)
    assert max_over_mean() < 1.1
    assert layer.expert_bias[0] < 0  # the favourite was pushed down


def test_bias_update_is_noop_for_other_modes():
    layer = MoE(8, 8, 4, 1, balance="aux")
    layer(torch.randn(1, 32, 8))
    moe_update_biases(layer)
    assert (layer.expert_bias == 0).all()


def test_switch_loss_is_alpha_on_a_uniform_router():
    layer = MoE(8, 8, n_experts=4, top_k=2, balance="aux", aux_alpha=0.01)
    with torch.no_grad():
        layer.router.weight.zero_()  # every probability is exactly 1/E
    layer(torch.randn(2, 16, 8))
    assert math.isclose(float(layer.aux_loss.detach()), 0.01, rel_tol=1e-6)
    assert math.isclose(float(moe_aux_loss(layer).detach()), 0.01, rel_tol=1e-6)


def test_switch_loss_grows_when_routing_concentrates():
    probs = torch.tensor([[0.9, 0.1]] * 8)
    experts = torch.zeros(8, 1, dtype=torch.long)
    assert float(switch_aux_loss(probs, experts, 2, alpha=1.0)) == pytest.approx(2 * 0.9)


def test_capacity_drops_are_counted():
    layer = MoE(4, 8, n_experts=2, top_k=1, balance="none", capacity_factor=1.0)  # capacity = ceil(8/2) = 4
    with torch.no_grad():
        layer.router.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]]))
    x = torch.randn(1, 8, 4)
    x[0, :, 0] = torch.tensor([1.0, 2, 3, 4, 5, 6, -1, -2])  # 6 tokens want expert 0, 2 want expert 1
    y = layer(x)
    stats = layer.last_stats
    assert stats["tokens_per_expert"] == [6, 2]
    assert stats["dropped_fraction"] == pytest.approx(2 / 8)
    assert torch.all(y[0, 4:6] == 0)  # the last two tokens in expert 0's queue get no expert output
    assert torch.all(y[0, :4].abs().sum(-1) > 0) and torch.all(y[0, 6:].abs().sum(-1) > 0)


def test_capacity_keep_gives_first_choices_priority():
    experts = torch.tensor([[0, 1], [0, 1], [1, 0]])  # (N=3, k=2)
    keep = capacity_keep(experts, 2, capacity=2)
    # expert 0 queue: first choices of tokens 0, 1, then token 2's second choice -> dropped
    assert keep.tolist() == [[True, True], [True, False], [True, False]]


def test_stats_and_helpers_over_a_model():
    model = torch.nn.Sequential(MoE(8, 8, 4, 1, balance="aux"), MoE(8, 8, 4, 1, balance="aux", z_loss_coef=1e-2))
    model(torch.randn(2, 6, 8))
    total = moe_aux_loss(model)
    torch.testing.assert_close(total, model[0].aux_loss + model[1].aux_loss)
    assert total.requires_grad
    stats = moe_stats(model)
    assert len(stats) == 2 and set(stats[0]) == {"tokens_per_expert", "dropped_fraction", "router_entropy",
                                                 "aux_loss"}
    assert 0 <= stats[0]["router_entropy"] <= math.log(4) + 1e-6
    assert float(moe_aux_loss(torch.nn.Linear(2, 2))) == 0.0


def test_swiglu_formula():
    ffn = SwiGLU(6, 10)
    x = torch.randn(3, 6)
    h = torch.nn.functional.silu(x @ ffn.w_gate.weight.T) * (x @ ffn.w_up.weight.T)
    torch.testing.assert_close(ffn(x), h @ ffn.w_down.weight.T)


def test_bias_state_is_saved_with_the_model():
    layer = MoE(8, 8, 4, 1, balance="bias")
    layer.expert_bias.fill_(0.5)
    assert "expert_bias" in layer.state_dict() and "load_since_update" not in layer.state_dict()


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(n_experts=2, top_k=3), ValueError),
        (dict(n_experts=0), ValueError),
        (dict(top_k=0), ValueError),
        (dict(n_shared=-1), ValueError),
        (dict(balance="switch"), ValueError),
        (dict(capacity_factor=0.0), ValueError),
        (dict(n_experts=2.0), TypeError),
        (dict(score_func="relu"), ValueError),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error):
    with pytest.raises(error):
        MoE(8, 16, **kwargs)


def test_bad_input_shape_raises():
    with pytest.raises(ValueError, match=r"\(B, T, 8\)"):
        MoE(8, 16)(torch.randn(4, 8))


def test_bias_bookkeeping_stays_exact_in_bf16():
    layer = MoE(8, 8, 4, 1, balance="bias").to(torch.bfloat16)
    assert layer.expert_bias.dtype == torch.float32 and layer.router.weight.dtype == torch.bfloat16
    for _ in range(3):
        layer(torch.randn(1, 1001, 8, dtype=torch.bfloat16))
    assert int(layer.load_since_update.sum()) == 3 * 1001  # exact counts, not bf16-rounded
    layer.expert_bias.fill_(0.1)
    moe_update_biases(layer)
    assert not torch.allclose(layer.expert_bias, torch.full((4,), 0.1))  # 1e-3 steps survive
    layer.expert_bias.fill_(0.25)
    layer.double()
    assert layer.expert_bias.dtype == torch.float32 and float(layer.expert_bias[0]) == 0.25
