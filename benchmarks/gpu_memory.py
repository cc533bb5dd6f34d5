"""The 8 GB promise, measured: train the `gpu` profile under an emulated 8 GB card and compare with the estimate.

On a larger card, `torch.cuda.set_per_process_memory_fraction` caps this process at 7.6 GiB (what an 8 GB
RTX 4060 leaves to PyTorch). The real `train()` then runs `--steps` steps of the `gpu` profile, evaluating at the
end, with `PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True` (fewer, growable segments: less fragmentation).
Reported: peak allocated and reserved memory, chapter 6's `estimate_memory` for the same step and their
ratio, steady tokens/s, and the time the full 20k-step run would take at that speed (for chapter 7's box).
`--snapshot` also records the allocator's history (`torch.cuda.memory._record_memory_history`) and writes the
pickle for https://pytorch.org/memory_viz, to see what sits above the estimate.

    python benchmarks/gpu_memory.py --json benchmarks/results/gpu/memory.json     # on a GPU (make gpu-check)
    python benchmarks/gpu_memory.py --dry-run                                      # the ci profile, CPU, 3 steps
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")  # before CUDA initialises

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import write_json  # noqa: E402
from dsmini_helpers.device import describe_environment, get_device  # noqa: E402
from dsmini_helpers.memory import estimate_memory  # noqa: E402
from dsmini_helpers.profiles import get_profile  # noqa: E402
from dsmini_helpers.train import TrainConfig, build_model, train  # noqa: E402

CARD_GIB = 7.6  # usable memory of an 8 GB card


def cap_memory(device: torch.device, gib: float) -> float:
    """Cap this process's CUDA memory at `gib` GiB; returns the fraction of the card that is."""
    total = torch.cuda.get_device_properties(device).total_memory
    fraction = min(1.0, gib * 2**30 / total)
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    return fraction


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--dry-run", action="store_true", help="ci profile on the CPU, 3 steps: checks the script")
    parser.add_argument("--snapshot", type=Path, help="write the allocator history pickle here")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    device = torch.device("cpu") if args.dry_run else get_device()
    if device.type != "cuda" and not args.dry_run:
        print("gpu_memory: no CUDA device; use --dry-run to check the script on the CPU")
        return 2
    profile = get_profile("ci" if args.dry_run else "gpu")
    steps = 3 if args.dry_run else args.steps
    full = TrainConfig.for_profile(profile.name)  # the profile's real run, read once
    full_steps = full.max_steps
    cfg = replace(full, max_steps=steps, eval_every=steps, save_every=0, warmup_steps=min(steps, full.warmup_steps))
    fraction = cap_memory(device, CARD_GIB) if device.type == "cuda" else None
    if args.snapshot and device.type == "cuda":
        torch.cuda.memory._record_memory_history(max_entries=200_000)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    print(describe_environment())
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        result = train(cfg, out, device=device, progress=False)
    wall = time.perf_counter() - t0
    logs = result.records("train")
    steady = [r["tokens_per_s"] for r in logs[len(logs) // 2:]] or [float("nan")]
    tokens_per_s = sum(steady) / len(steady)
    model_cfg = build_model(cfg).config
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    est = estimate_memory(model_cfg, cfg.batch_size, cfg.seq_len, dtype, mask_rate=cfg.mask_rate)
    row = {"profile": profile.name, "device": str(device), "steps": steps, "wall_s": round(wall, 1),
           "tokens_per_s": round(tokens_per_s, 1), "cap_gib": CARD_GIB if fraction else None,
           "estimate_peak_gib": round(est["peak"] / 2**30, 3),
           "projected_full_run_min": round(full_steps * cfg.batch_size * cfg.grad_accum * cfg.seq_len
                                           / tokens_per_s / 60, 1),
           "final_eval": result.records("eval")[-1] if result.records("eval") else None}
    if device.type == "cuda":
        alloc, reserved = torch.cuda.max_memory_allocated(device), torch.cuda.max_memory_reserved(device)
        row.update(peak_allocated_gib=round(alloc / 2**30, 3), peak_reserved_gib=round(reserved / 2**30, 3),
                   estimate_over_allocated=round(est["peak"] / alloc, 3), fits_8gb=reserved <= CARD_GIB * 2**30)
        if args.snapshot:
            args.snapshot.parent.mkdir(parents=True, exist_ok=True)
            torch.cuda.memory._dump_snapshot(str(args.snapshot))
            torch.cuda.memory._record_memory_history(enabled=None)
    for key, value in row.items():
        print(f"{key:>26}: {value}")
    if args.json:
        write_json(args.json, {"environment": describe_environment(), "train_config": asdict(cfg),
                               "estimate_terms_gib": {k: round(v / 2**30, 3) for k, v in est.items()}, **row})
    return 0


if __name__ == "__main__":
    sys.exit(main())
