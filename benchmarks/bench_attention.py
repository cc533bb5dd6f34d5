"""Benchmark: sliding-window attention, dense mask vs SDPA + cached mask vs blocked vs FlexAttention (chapter 4).

All four compute the same thing: query i attends keys j with |i - j| <= w (w = 128), batch 1, 4 heads, d 64,
float32, at T = 1k, 4k, 16k; forward (under torch.no_grad) and forward + backward. For each case we report the
median wall time over repeats (after one warm-up run; a first run slower than 2 s counts as a sample) and the peak
memory: on CPU, how far the resident set (VmHWM, reset through /proc/self/clear_refs) rises above its level just
before the case, in a fresh child process per case, so that nothing an earlier case allocated is reused; on CUDA,
torch.cuda.max_memory_allocated. The cached n x n mask of "SDPA + cached mask" is built after the baseline (it
counts as memory) but before the timing. FlexAttention on CPU has no backward in PyTorch 2.13, so it runs forward
only there, compiled (the compile time is excluded: it happens in the warm-up run; so is the compiler's memory,
the peak being reset after the warm-up, which may under-count memory the compiler freed and the kernel reused).

Goals on CPU at T = 16k (chapter 4): blocked >= 50x faster and >= 30x less peak memory than the dense mask for
forward + backward, >= 10x faster than SDPA + cached mask, and time(16k) / time(1k) <= 24 for blocked.

    python benchmarks/bench_attention.py                 # full size (several minutes, ~13 GB for dense at 16k)
    python benchmarks/bench_attention.py --quick         # seconds, small sizes, one process (for the tests)
    python benchmarks/bench_attention.py --json benchmarks/results/bench_attention.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

IMPLS = ("dense mask", "SDPA + cached mask", "blocked", "flex")
MODES = ("fwd", "fwd+bwd")


def _status_kb(key: str) -> int | None:
    """A field of /proc/self/status in KiB (Linux), else None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the resident-set high-water mark (VmHWM); False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _available_mb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def estimate_mb(impl: str, T: int, mode: str, heads: int = 4) -> float:
    """Rough peak need of a case, to skip it rather than run out of memory: the (T, T) tensors it holds."""
    if impl == "dense mask":
        return (3 if mode == "fwd+bwd" else 2) * heads * T * T * 4 / 2**20
    if impl == "SDPA + cached mask":
        return 2 * T * T / 2**20 + heads * T * T * 4 / 2**20 * (0.3 if mode == "fwd" else 1.2)
    return 0.0


def measure(impl: str, T: int, mode: str, window: int, heads: int, head_dim: int, repeats: int,
            budget_s: float) -> dict:
    """Time and peak memory of one case, in this process."""
    import torch

    from dsmini_helpers.device import get_device
    from dsmini_helpers.sparse_attention import (
        blocked_sliding_window_attention,
        cached_band_mask,
        dense_sliding_window_attention,
        flex_sliding_window_attention,
        sdpa_masked_attention,
    )

    device = get_device()
    torch.manual_seed(0)
    grad = mode == "fwd+bwd"
    q, k, v = (torch.randn(1, heads, T, head_dim, device=device, requires_grad=grad) for _ in range(3))
    fns = {
        "dense mask": lambda: dense_sliding_window_attention(q, k, v, window),
        "SDPA + cached mask": lambda: sdpa_masked_attention(q, k, v, window),
        "blocked": lambda: blocked_sliding_window_attention(q, k, v, window),
        "flex": lambda: flex_sliding_window_attention(q, k, v, window),
    }
    fn = fns[impl]

    def run() -> None:
        if grad:
            fn().sum().backward()
            q.grad = k.grad = v.grad = None
        else:
            with torch.no_grad():
                fn()
        if device.type == "cuda":
            torch.cuda.synchronize()

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        how = "torch.cuda.max_memory_allocated"
    else:
        how = "VmHWM growth, fresh child" if _reset_peak() else "ru_maxrss growth (no reset)"
        base = _status_kb("VmRSS") or 0
    if impl == "SDPA + cached mask":
        cached_band_mask(T, window, str(device))  # built once, outside the timing, inside the memory
    start = time.perf_counter()
    t0 = time.perf_counter()
    run()  # warm-up (compiles flex)
    first = time.perf_counter() - t0
    samples = [first] if first > 2.0 and impl != "flex" else []
    if impl == "flex" and device.type != "cuda":  # the compiler's own memory is not the kernel's: start afresh
        how = "VmHWM growth after compiling (may under-count memory the compiler freed)"
        _reset_peak()
        base = _status_kb("VmRSS") or 0
    while len(samples) < repeats and (not samples or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        run()
        samples.append(time.perf_counter() - t0)
    if device.type == "cuda":
        peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak_mb = ((_status_kb("VmHWM") or 0) - base) / 1024
    return dict(impl=impl, T=T, mode=mode, time_ms=round(statistics.median(samples) * 1e3, 2),
                peak_mb=round(max(peak_mb, 0.0), 1), runs=len(samples), memory=how, device=device.type)


def runnable(impl: str, mode: str) -> str | None:
    """Why a case cannot run here (None when it can)."""
    import torch

    from dsmini_helpers.device import get_device
    from dsmini_helpers.flex_attention import flex_available

    if impl == "flex":
        if not flex_available():
            return "no FlexAttention in this PyTorch"
        if mode == "fwd+bwd" and get_device().type == "cpu":
            return "no FlexAttention backward on CPU in torch " + torch.__version__.split("+")[0]
    return None


def run_child(cases: list[dict], timeout: float) -> list[dict]:
    """Measure `cases` in one fresh Python process (so earlier allocations cannot hide a peak)."""
    cmd = [sys.executable, __file__, "--child", json.dumps(cases)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [dict(c, time_ms=None, peak_mb=None, note=f"timed out after {timeout:.0f} s") for c in cases]
    out = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or len(out) != len(cases):
        err = (proc.stderr.strip().splitlines() or ["killed (out of memory?)"])[-1]
        done = {(r["impl"], r["T"], r["mode"]) for r in out}
        out += [dict(c, time_ms=None, peak_mb=None, note=f"failed: {err[:200]}") for c in cases
                if (c["impl"], c["T"], c["mode"]) not in done]
    return out


def ratios(rows: list[dict], seq_lens: list[int]) -> dict[str, float]:
    """The goal ratios at the largest T (and the blocked kernel's scaling from the smallest to the largest T)."""
    get = {(r["impl"], r["T"], r["mode"]): r for r in rows if r.get("time_ms") is not None}
    lo, hi = min(seq_lens), max(seq_lens)
    out = {}

    def add(name, num, den, key):
        if num in get and den in get and get[den][key]:
            out[name] = round(get[num][key] / get[den][key], 2)

    fb, fw = "fwd+bwd", "fwd"
    add(f"blocked_speedup_vs_dense_fwdbwd_T{hi}", ("dense mask", hi, fb), ("blocked", hi, fb), "time_ms")
    add(f"blocked_memory_saving_vs_dense_fwdbwd_T{hi}", ("dense mask", hi, fb), ("blocked", hi, fb), "peak_mb")
    add(f"blocked_speedup_vs_sdpa_cached_fwdbwd_T{hi}", ("SDPA + cached mask", hi, fb), ("blocked", hi, fb),
        "time_ms")
    add(f"blocked_speedup_vs_sdpa_cached_fwd_T{hi}", ("SDPA + cached mask", hi, fw), ("blocked", hi, fw), "time_ms")
    add(f"blocked_speedup_vs_dense_fwd_T{hi}", ("dense mask", hi, fw), ("blocked", hi, fw), "time_ms")
    add(f"flex_speedup_vs_blocked_fwd_T{hi}", ("blocked", hi, fw), ("flex", hi, fw), "time_ms")
    add(f"blocked_time_T{hi}_over_T{lo}_fwdbwd", ("blocked", hi, fb), ("blocked", lo, fb), "time_ms")
    return out


def print_table(rows: list[dict], seq_lens: list[int]) -> None:
    impls = [i for i in IMPLS if any(r["impl"] == i for r in rows)]
    head = f"{'T':>6} {'mode':>8} " + " ".join(f"{i:>24}" for i in impls)
    print("median time ms / peak memory MiB")
    print(head)
    for T in seq_lens:
        for mode in MODES:
            cells = []
            for i in impls:
                r = next((r for r in rows if r["impl"] == i and r["T"] == T and r["mode"] == mode), None)
                if r is None or r.get("time_ms") is None:
                    cells.append(f"{'n/a':>24}")
                else:
                    cells.append(f"{r['time_ms']:>13.1f} / {r['peak_mb']:>8.1f}")
            print(f"{T:>6} {mode:>8} " + " ".join(cells))
    for r in rows:
        if r.get("note"):
            print(f"  note: {r['impl']} T={r['T']} {r['mode']}: {r['note']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, one process, seconds (for the tests)")
    p.add_argument("--json", type=Path, help="write rows, ratios and settings here")
    p.add_argument("--impls", nargs="+", choices=IMPLS, default=None)
    p.add_argument("--seq-lens", nargs="+", type=int, default=None)
    p.add_argument("--window", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:  # measure the given cases in this process, one JSON line each
        for c in json.loads(args.child):
            print(json.dumps(measure(**c)), flush=True)
        return 0

    import torch

    seq_lens = args.seq_lens or ([128, 256] if args.quick else [1024, 4096, 16384])
    window = args.window if args.window is not None else (32 if args.quick else 128)
    repeats = args.repeats or (1 if args.quick else 3)
    impls = args.impls or ([i for i in IMPLS if i != "flex"] if args.quick else list(IMPLS))
    heads, head_dim = 4, 64
    cases, rows = [], []
    for T in seq_lens:
        for impl in impls:
            for mode in MODES:
                why = runnable(impl, mode)
                need, avail = estimate_mb(impl, T, mode, heads), _available_mb()
                if why is None and avail is not None and need > 0.8 * avail:
                    why = f"needs ~{need:.0f} MiB, {avail:.0f} MiB available"
                if why:
                    rows.append(dict(impl=impl, T=T, mode=mode, time_ms=None, peak_mb=None, note=why))
                    continue
                cases.append(dict(impl=impl, T=T, mode=mode, window=window, heads=heads, head_dim=head_dim,
                                  repeats=repeats, budget_s=60.0))
    if args.quick:
        rows += run_child(cases, timeout=300)
    else:
        for c in cases:
            print(f"... {c['impl']} T={c['T']} {c['mode']}", file=sys.stderr, flush=True)
            rows += run_child([c], timeout=900)
    rows.sort(key=lambda r: (r["T"], MODES.index(r["mode"]), IMPLS.index(r["impl"])))
    print(f"sliding-window attention: w={window}, batch 1, {heads} heads, d {head_dim}, float32, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}, "
          f"{os.cpu_count()} CPUs")
    print_table(rows, seq_lens)
    result_ratios = ratios(rows, seq_lens)
    for name, value in result_ratios.items():
        print(f"ratio {name}: {value}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        machine = (f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} threads")
        args.json.write_text(json.dumps(dict(
            benchmark="bench_attention", machine=machine, window=window, heads=heads, head_dim=head_dim,
            batch=1, dtype="float32", repeats=repeats, quick=args.quick,
            memory="peak resident-set growth per case in a fresh process (VmHWM after clear_refs) on CPU; "
                   "torch.cuda.max_memory_allocated on CUDA",
            goals="at the largest T: blocked >= 50x faster and >= 30x less memory than dense (fwd+bwd), "
                  ">= 10x faster than SDPA + cached mask; blocked time(16k)/time(1k) <= 24",
            rows=rows, ratios=result_ratios), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
