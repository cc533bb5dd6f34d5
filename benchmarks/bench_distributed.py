"""Benchmark for chapter 10: training throughput of one process against N ranks under torchrun (DDP, FSDP).

The same experiment (the same global batch, accumulation and steps) is trained four times through chapter 7's
command line, each in its own process tree:

- `1 process, 1 thread`: the per-rank baseline (torchrun gives each rank one thread);
- `1 process, N threads`: what one process does with the whole machine;
- `N ranks DDP` and `N ranks FSDP`: `torchrun --nproc-per-node N -m dsmini_helpers.launch --parallel ...`.

Throughput is the last `tokens_per_s` of each run's metrics.jsonl (training steps only: start-up, evaluation
and saving are excluded); `seconds` is the whole job, start-up included. The scaling efficiency is the N-rank
throughput over N times the one-thread throughput.

    python benchmarks/bench_distributed.py                 # the cpu model, N = 2 (about two minutes on 2 busy cores)
    python benchmarks/bench_distributed.py --quick         # the ci model, a few steps: seconds, for tests
    python benchmarks/bench_distributed.py --nproc 8       # on a machine with 8 GPUs: one GPU per rank (NCCL)
    python benchmarks/bench_distributed.py --cpu           # ranks on the CPU (gloo) even where CUDA exists

On this book's 2 shared CPU cores, N = 2 cannot show a speed-up: one process already uses both cores through
PyTorch's threads, and two ranks add communication. Multi-GPU and multi-node scaling must be measured on such
machines with `--nproc`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import bench_parser, pick_settings, write_json  # noqa: E402
from dsmini_helpers.device import describe_environment  # noqa: E402

FULL = dict(model="cpu", max_steps=6, batch_size=8, seq_len=128, grad_accum=2, repeats=1)
QUICK = dict(model="ci", max_steps=3, batch_size=8, seq_len=64, grad_accum=1, repeats=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(strategy: str, nproc: int, config: Path, out: Path) -> list[str]:
    args = ["--config", str(config), "--out", str(out), "--quiet"]
    if strategy == "none":
        return [sys.executable, "-m", "dsmini_helpers.pretrain", *args]
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
            f"--master-port={_free_port()}", "-m", "dsmini_helpers.launch", *args, "--parallel", strategy]


def run_one(name: str, strategy: str, nproc: int, threads: int, config: Path, work: Path, cpu: bool) -> dict:
    """Train `config` once; its row: tokens/s of the training steps, whole-job seconds, final loss."""
    out = work / name.replace(" ", "_").replace(",", "")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))
    if cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    t0 = time.perf_counter()
    done = subprocess.run(_command(strategy, nproc, config, out), capture_output=True, text=True, env=env,
                          cwd=ROOT)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{done.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in rows if r["kind"] == "train"][-1]
    return {"name": name, "strategy": strategy, "ranks": nproc if strategy != "none" else 1,
            "threads_per_rank": threads, "tokens_per_s": last["tokens_per_s"], "seconds": seconds,
            "final_loss": last["loss"], "world_size": last["world_size"]}


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--nproc", type=int, default=2, help="ranks of the torchrun runs (default 2)")
    parser.add_argument("--cpu", action="store_true", help="run every rank on the CPU (gloo)")
    args = parser.parse_args(argv)
    cfg = pick_settings(args, QUICK, FULL)
    n = args.nproc
    if n < 2 or cfg["batch_size"] % n:
        raise SystemExit(f"--nproc must be >= 2 and divide batch_size {cfg['batch_size']}, got {n}")
    print(describe_environment())
    train = {k: cfg[k] for k in ("model", "max_steps", "batch_size", "seq_len", "grad_accum")}
    train.update(eval_every=cfg["max_steps"], save_every=0, log_every=1, precision="fp32", warmup_steps=1)
    print(f"experiment: {train}")
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as tmp:
        work = Path(tmp)
        config = work / "bench.yaml"
        config.write_text(yaml.safe_dump({"profile": "ci", "name": "bench", "train": train}))
        plan = [("1 process, 1 thread", "none", 1, 1), (f"1 process, {n} threads", "none", 1, n),
                (f"{n} ranks DDP", "ddp", n, 1), (f"{n} ranks FSDP", "fsdp", n, 1)]
        rows = [run_one(name, s, p, t, config, work, args.cpu) for name, s, p, t in plan]
    print(f"{'run':>22} | {'tokens/s':>9} {'job s':>7} {'final loss':>11}")
    for r in rows:
        print(f"{r['name']:>22} | {r['tokens_per_s']:>9.0f} {r['seconds']:>7.1f} {r['final_loss']:>11.6f}")
    by = {r["name"]: r["tokens_per_s"] for r in rows}
    one, whole, ddp, fsdp = (by[name] for name, *_ in plan)
    ratios = {f"ddp{n}_vs_one_thread": ddp / one, f"ddp{n}_vs_one_process": ddp / whole,
              f"fsdp{n}_vs_ddp{n}": fsdp / ddp, f"efficiency_ddp{n}": ddp / (n * one)}
    loss_gap = max(abs(r["final_loss"] - rows[0]["final_loss"]) for r in rows)
    print(f"same run everywhere: final losses agree to {loss_gap:.1e}")
    for name, value in ratios.items():
        print(f"ratio {name}: {value:.3f}")
    if args.json:
        write_json(args.json, dict(benchmark="distributed", settings={**cfg, "nproc": n, "cpu": args.cpu},
                                   environment=describe_environment(), rows=rows,
                                   ratios={k: round(v, 4) for k, v in ratios.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
