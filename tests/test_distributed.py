"""torch.distributed training on CPU (gloo, 2 processes): DDP and FSDP2 equal one process, resume, failure."""

import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as tmp
from safetensors.torch import load_file

from dsmini_helpers.checkpoint import latest_checkpoint
from dsmini_helpers.distributed import init_distributed
from dsmini_helpers.train import TrainConfig, train

CFG = dict(model="ci", max_steps=6, batch_size=4, seq_len=32, grad_accum=2, eval_every=3,
           eval_batches=2, log_every=1, save_every=3, keep_last=3, precision="fp32", lr=2e-3,
           warmup_steps=2, variable_mix=0.25)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)


def _crash(at_step: int):
    def callback(record: dict, history: list) -> None:
        if record["step"] >= at_step:
            os._exit(17)  # a rank dies without saying goodbye
    return callback


def _run(rank: int, world: int, port: int, root: str) -> None:
    """One rank of the job: DDP, FSDP2, FSDP2 resumed from DDP's step 3, then a DDP run that dies."""
    _env(rank, world, port)
    middle = Path(root) / "ddp" / "step-0000003"
    phases = (("ddp", "ddp", None, 0), ("fsdp", "fsdp", None, 0), ("fsdp", "fsdp_resumed", middle, 0),
              ("ddp", "killed", None, 4))
    for strategy, name, resume_from, crash_at in phases:
        par = init_distributed(strategy, timeout_s=20)
        callback = _crash(crash_at) if crash_at and rank == world - 1 else None
        train(TrainConfig.from_dict(CFG), Path(root) / name, device="cpu", progress=False,
              parallel=par, callback=callback, resume_from=resume_from)


def _one_process(out: Path, resume: bool = False) -> None:
    resume_from = latest_checkpoint(out) if resume else None
    train(TrainConfig.from_dict(CFG), out, device="cpu", progress=False, resume_from=resume_from)


def _losses(out: Path) -> list[float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["kind"] == "train"]


def _assert_same(a: Path, b: Path, tol: float = 1e-6, weight_tol: float = 5e-5) -> None:
    """Losses to 1e-6; weights to 5e-5: AdamW turns fp32 summation-order noise in near-zero
    gradients into updates of about lr * noise / eps, a few 1e-6 after a few steps and, on the odd
    embedding row whose gradient is nearly zero, up to about 2e-5 (lr is 2e-3)."""
    la, lb = _losses(a), _losses(b)
    assert len(la) == len(lb) == CFG["max_steps"]  # a resumed run keeps the history it resumed
    torch.testing.assert_close(torch.tensor(la), torch.tensor(lb), rtol=tol, atol=tol)
    wa, wb = (load_file(latest_checkpoint(d) / "model.safetensors") for d in (a, b))
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=weight_tol,
                                   msg=lambda m, k=k: f"{k}: {m}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    _one_process(root / "one")
    with pytest.raises(tmp.ProcessExitedException, match="exit code 17"):
        tmp.spawn(_run, args=(2, _free_port(), str(root)), nprocs=2)  # ends with a dead rank
    return root


def test_ddp_two_ranks_equal_one_process(runs):
    _assert_same(runs / "one", runs / "ddp")
    rows = [json.loads(line) for line in (runs / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert {r.get("world_size") for r in rows if r["kind"] == "train"} == {2}
    state = json.loads((latest_checkpoint(runs / "ddp") / "trainer_state.json").read_text())
    assert state["world_size"] == 2


def test_fsdp_two_ranks_equal_ddp(runs):
    _assert_same(runs / "ddp", runs / "fsdp")


def test_fsdp_resumes_a_ddp_checkpoint(runs):
    _assert_same(runs / "one", runs / "fsdp_resumed")  # another strategy, same world size


def test_kill_and_resume_equals_uninterrupted(runs):
    out = runs / "killed"
    assert latest_checkpoint(out).name == "step-0000003"  # rank 1 died at step 4
    _one_process(out, resume=True)  # resumed with another world size: one process
    _assert_same(runs / "one", out)


def _dead_peer(rank: int, port: int, out: str) -> None:
    _env(rank, 2, port)
    par = init_distributed("ddp", timeout_s=10)
    if rank == 1:
        os._exit(3)
    train(TrainConfig.from_dict(CFG), out, device="cpu", progress=False, parallel=par)


def test_a_dead_rank_fails_the_job_loudly(tmp_path):
    port = _free_port()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_dead_peer, args=(r, port, str(tmp_path))) for r in range(2)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    procs[0].join(timeout=120)
    alive = procs[0].is_alive()
    for p in procs:
        p.kill() if p.is_alive() else None
    assert not alive, "rank 0 hung after its peer died"
    assert procs[0].exitcode not in (0, None) and procs[1].exitcode == 3
    assert time.perf_counter() - t0 < 60


def test_launcher_is_chapter_7s_command_line(tmp_path):
    """`-m dsmini_helpers.launch` trains like `-m dsmini_helpers.pretrain` on one process, and asks for
    torchrun when a strategy needs several."""
    out = tmp_path / "launch"
    args = [sys.executable, "-m", "dsmini_helpers.launch", "--profile", "ci", "--max-steps", "2", "--out", str(out),
            "--quiet"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    one = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert one.returncode == 0, one.stderr
    assert f"checkpoint: {out / 'step-0000002'}" in one.stdout
    ddp = subprocess.run([*args, "--parallel", "ddp"], capture_output=True, text=True, timeout=600, env=env)
    assert ddp.returncode != 0 and "torchrun --nproc-per-node N -m dsmini_helpers.launch" in ddp.stderr
