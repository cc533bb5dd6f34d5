"""`make gpu-check`: every CUDA check of the book in one run of at most 8 minutes on a GPU machine.

In order, each step with its own time limit, stopping early when the budget runs out:

1. install what the GPU machine lacks from wheels carried along in `.whl/gpu` (`make gpu-wheels` makes them);
   the corpus, tokenizer and token arrays come from `_build/ci-data` (`make test` builds it): carry its
   `processed`, `vocab` and `tokens` folders (13 MB), not the checkpoints;
2. `pytest -m gpu` (flex vs the float64 oracle, a bf16 step, seeded generation, chapter 8's tasks on CUDA);
3. the 8 GB promise: `benchmarks/gpu_memory.py` trains the `gpu` profile under an emulated 8 GB card;
4. `benchmarks/bench_training.py` on CUDA (ours vs Hugging Face BERT and ModernBERT, bf16);
5. nbmake over the chapters: all of them in `ci`, chapters 3-6 in `gpu` (7-9 need the 20k-step `gpu`
   checkpoint, which the memory step's tokens/s turns into a time for chapter 7's Runs-on box).

Everything lands in `benchmarks/results/gpu/` (one JSON per step plus `summary.json`), which the performance
appendix shows. `--dry-run` runs the same steps at their smallest on the CPU, to check the script itself, and writes to
`_build/gpu-check-dry-run/` instead.

    python benchmarks/gpu_check.py              # on the GPU machine (make gpu-check)
    python benchmarks/gpu_check.py --dry-run    # here, on the CPU
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import write_json  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "gpu"
DRY_OUT = ROOT / "_build" / "gpu-check-dry-run"
WHEELS = ROOT / ".whl" / "gpu"
NEEDED = {"nbmake": "nbmake", "ipykernel": "ipykernel", "ipywidgets": "ipywidgets", "fastapi": "fastapi",
          "uvicorn": "uvicorn", "mwparserfromhell": "mwparserfromhell", "httpx": "httpx", "yaml": "pyyaml",
          "xdist": "pytest-xdist"}
CHAPTERS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
GPU_CHAPTERS = [c for c in CHAPTERS if c[:2] in ("03", "04", "05", "06")]


def missing_modules() -> list[str]:
    return [pkg for mod, pkg in NEEDED.items() if importlib.util.find_spec(mod) is None]


def run_step(name: str, cmd: list[str], limit_s: float, env: dict, results: dict) -> bool:
    """Run one step with a time limit; record its exit code, wall time and output tail. True if it passed."""
    print(f"== {name}: {' '.join(cmd)} (limit {limit_s:.0f} s)", flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit_s)
        rc, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        rc, out = "timeout", (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
    wall = round(time.perf_counter() - t0, 1)
    results[name] = {"cmd": " ".join(cmd), "rc": rc, "wall_s": wall, "tail": out[-3000:]}
    print(out[-1500:], f"-> {name}: rc {rc} in {wall} s", sep="\n", flush=True)
    return rc == 0


def plan(dry_run: bool, py: str, out: Path) -> list[tuple[str, list[str], float, dict]]:
    """(name, command, time limit in seconds, extra environment) for every step."""
    nbmake = [py, "-m", "pytest", "--nbmake", "--nbmake-kernel=python3", "-q", "-p", "no:cacheprovider"]
    if dry_run:
        return [
            ("pytest_gpu", [py, "-m", "pytest", "-m", "gpu", "tests/test_gpu.py", "-q"], 120, {}),
            ("memory_8gb", [py, "benchmarks/gpu_memory.py", "--dry-run", "--json", str(out / "memory.json")],
             300, {}),
            ("bench_training", [py, "benchmarks/bench_training.py", "--quick", "--json",
                                str(out / "bench_training.json")], 300, {}),
            ("nbmake_ci", nbmake + ["notebooks/03_attention.ipynb"], 300, {"DSMINI_PROFILE": "ci"}),
        ]
    return [
        ("pytest_gpu", [py, "-m", "pytest", "-m", "gpu", "tests/test_gpu.py", "-q"], 150, {}),
        ("memory_8gb", [py, "benchmarks/gpu_memory.py", "--json", str(out / "memory.json")], 120, {}),
        ("bench_training", [py, "benchmarks/bench_training.py", "--quick", "--json",
                            str(out / "bench_training.json")], 90, {}),
        ("nbmake_ci", nbmake + ["-n", "4"] + [f"notebooks/{c}" for c in CHAPTERS], 150, {"DSMINI_PROFILE": "ci"}),
        ("nbmake_gpu", nbmake + ["-n", "4"] + [f"notebooks/{c}" for c in GPU_CHAPTERS], 150,
         {"DSMINI_PROFILE": "gpu"}),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="the smallest version of each step, on the CPU")
    parser.add_argument("--budget-s", type=float, default=480, help="stop starting steps after this (8 min)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = DRY_OUT if args.dry_run else OUT  # a CPU rehearsal never lands among the GPU results
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    results: dict = {}
    missing = missing_modules()
    if missing and WHEELS.is_dir() and not args.dry_run:  # a rehearsal leaves the environment as it is
        run_step("install", [py, "-m", "pip", "install", "--no-index", "--find-links", str(WHEELS), *missing],
                 180, dict(os.environ), results)
    carried = ROOT / "_build" / "ci-data"  # corpus, tokenizer, token arrays built here: the GPU machine has no sources
    if carried.is_dir():
        os.environ.setdefault("DSMINI_DATA_DIR", str(carried))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "HF_HUB_OFFLINE": "1", "DSMINI_DATA": "offline", "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    if args.dry_run:
        env["DSMINI_DEVICE"] = "cpu"
    for name, cmd, limit, extra in plan(args.dry_run, py, out):
        left = args.budget_s - (time.perf_counter() - start)
        if left < 20:
            results[name] = {"cmd": " ".join(cmd), "rc": "skipped: out of budget", "wall_s": 0.0}
            continue
        run_step(name, cmd, min(limit, left), {**env, **extra}, results)
    import torch

    summary = {"dry_run": args.dry_run, "torch": torch.__version__,
               "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
               "wall_s": round(time.perf_counter() - start, 1),
               "steps": {k: {kk: v[kk] for kk in ("cmd", "rc", "wall_s")} for k, v in results.items()},
               "not_run": {"nbmake gpu profile, chapters 7-9": "need the 20k-step gpu checkpoint; chapter 7's time "
                                                               "comes from memory.json's tokens/s"}}
    write_json(out / "summary.json", summary)
    failed = [k for k, v in results.items() if v["rc"] != 0]
    print(f"gpu-check: {len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
