"""Host synchronisations in one training step, counted on the CPU (issue 15: none in hot loops but the justified).

A `TorchDispatchMode` records the ops that make the host wait for the device on an accelerator: reading a
scalar (`_local_scalar_dense`: `.item()`, `bool(t)`, `float(t)`), `nonzero`, boolean-mask indexing and
`masked_select`; `Tensor.tolist` is wrapped because on the CPU it reads memory without dispatching an op.
"""

import dataclasses

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dsmini_helpers.constants import IGNORE_INDEX
from dsmini_helpers.model import DSMiniModel, config_for_profile
from dsmini_helpers.moe import moe_aux_loss, moe_update_biases

SYNC_OPS = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.masked_select.default"}


class SyncCounter(TorchDispatchMode):
    """Records each op that would wait for the device, with the op's name."""

    def __init__(self) -> None:
        super().__init__()
        self.syncs: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func)
        bool_index = name.startswith("aten.index.Tensor") and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else []))
        if name in SYNC_OPS or bool_index:
            self.syncs.append("boolean-mask index" if bool_index else name)
        return func(*args, **kwargs)

    def __enter__(self):
        original, counter = torch.Tensor.tolist, self

        def tolist(t):
            counter.syncs.append("Tensor.tolist")
            return original(t)

        self._original_tolist, torch.Tensor.tolist = original, tolist
        return super().__enter__()

    def __exit__(self, *exc):
        torch.Tensor.tolist = self._original_tolist
        return super().__exit__(*exc)


def test_the_counter_sees_each_kind_of_sync():
    t, m = torch.tensor([1, 2, 3]), torch.tensor([True, False, True])
    with SyncCounter() as c:
        t.sum().item(), bool(m.any()), t[m], m.nonzero(), t.tolist(), t * 2, t.index_select(0, t - 1)
    assert c.syncs == ["aten._local_scalar_dense.default"] * 2 + ["boolean-mask index", "aten.nonzero.default",
                                                                   "Tensor.tolist"]


def _step_syncs(balance: str) -> list[str]:
    torch.manual_seed(0)
    config = dataclasses.replace(config_for_profile("ci"), balance=balance)
    model = DSMiniModel(config).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(5, config.vocab_size, (4, 64))  # (B, T)
    labels = torch.where(torch.rand(4, 64) < 0.3, ids, torch.full_like(ids, IGNORE_INDEX))  # (B, T)
    with SyncCounter() as counter:
        out = model(ids, None, labels)
        (out.loss + moe_aux_loss(model)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()  # fused AdamW on CUDA never syncs; on the CPU its step counters are host numbers anyway
    with SyncCounter() as after:
        moe_update_biases(model)
        opt.zero_grad(set_to_none=True)
    return counter.syncs + after.syncs


@pytest.mark.parametrize("balance", ["aux", "bias", "none"])
def test_a_training_step_syncs_only_where_justified(balance):
    n_moe = len(config_for_profile("ci").moe_layers)
    syncs = _step_syncs(balance)
    # Justified: the sparse MLM head finds the masked positions once (`nonzero`: their number decides the shape
    # of everything after it), and each MoE layer reads its tokens-per-expert counts once, to split the grouped
    # tokens into one matrix product per expert (a grouped GEMM with device-side offsets would avoid it).
    expected = ["aten.nonzero.default"] + ["Tensor.tolist"] * n_moe
    assert sorted(syncs) == sorted(expected), syncs


def test_the_training_loops_step_syncs_only_where_justified(monkeypatch):
    """chapter 7's `train_step` (two micro-batches): the model's syncs per micro-batch, nothing else on the device.

    With the optimizer a CUDA run gets (fused AdamW: the default foreach AdamW reads each step counter on the host).
    """
    from dsmini_helpers import train as train_module
    from dsmini_helpers.train import TrainConfig, Trainer, draw_batch, train_step

    monkeypatch.setattr(train_module, "fused_adamw", lambda device: True)

    cfg = TrainConfig.for_profile("ci", grad_accum=2, batch_size=4, seq_len=32)
    trainer = Trainer.create(cfg, torch.device("cpu"), cfg_vocab := config_for_profile("ci").vocab_size)
    tokens = np.random.default_rng(0).integers(5, cfg_vocab, 10_000).astype(np.uint16)
    _, inputs, labels = draw_batch(cfg, tokens, cfg_vocab, trainer.generator)  # host work, before the step
    with SyncCounter() as counter:
        stats = train_step(trainer, trainer.model, inputs, labels)
    n_moe = len(config_for_profile("ci").moe_layers)
    # Per micro-batch, the model's justified syncs (above). The micro-batch weights read the masked counts of the
    # labels while they are still on the host (1 total + one per micro-batch): no device is waited for.
    device_syncs = (["aten.nonzero.default"] + ["Tensor.tolist"] * n_moe) * cfg.grad_accum
    host_reads = ["aten._local_scalar_dense.default"] * (1 + cfg.grad_accum)
    assert sorted(counter.syncs) == sorted(device_syncs + host_reads), counter.syncs
    assert stats.shape == (3,) and torch.isfinite(stats).all()  # losses and grad norm stay tensors
    assert trainer.optimizer.defaults["fused"]
