"""Benchmark: BPE training, naive vs fast (ours) and fast (ours, pure Python) vs Hugging Face `tokenizers` (chapter 2).

Two comparisons, each measured in one run on the same text, end to end from raw text (pre-tokenization included):

1. naive (recount every pair after each merge) vs fast (distinct pre-tokens, incremental pair counts, pair -> words
   index, lazy heap), 2,000 merges on the first 1 MB of chapter 1's train split. Goal: fast >= 30x faster.
2. fast vs `tokenizers`' BpeTrainer (Rust, multi-threaded), full 20,000-token vocabulary on the whole train split
   of the offline corpus. Goal: ours within 8x of theirs (their time / ours >= 0.125).

Each pair of trainers must learn the same merges in the same order (checked, printed). Times are single runs
(wall clock, time.perf_counter) on a machine other processes may share: treat small differences as noise.

    python benchmarks/bench_tokenizer.py                 # full size (a few minutes: the naive trainer is slow)
    python benchmarks/bench_tokenizer.py --quick         # seconds, small sizes (for the tests)
    python benchmarks/bench_tokenizer.py --json benchmarks/results/bench_tokenizer.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from dsmini_helpers import bpe as B  # noqa: E402
from dsmini_helpers import tokenizer as T  # noqa: E402
from dsmini_helpers.data import load_texts  # noqa: E402

FULL = dict(scratch_bytes=1_000_000, scratch_merges=2_000, full_chars=None, full_vocab=20_000)
QUICK = dict(scratch_bytes=20_000, scratch_merges=50, full_chars=200_000, full_vocab=1_000)


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def run(scratch_bytes: int, scratch_merges: int, full_chars: int | None, full_vocab: int) -> tuple[list, dict]:
    texts = load_texts("train")
    rows = []

    # 1. naive vs fast, `scratch_merges` merges on the first `scratch_bytes` characters
    scratch = "\n".join(texts)[:scratch_bytes]
    vocab = B.N_BASE + scratch_merges
    naive, t_naive = timed(B.train_naive, scratch, vocab)
    fast, t_fast = timed(B.train_fast, scratch, vocab)
    same = list(naive.merges.items()) == list(fast.merges.items())
    size = f"{len(scratch.encode()) / 1e6:.2f} MB, {scratch_merges:,} merges"
    rows.append(dict(comparison="naive vs fast", trainer="naive (ours)", data=size, seconds=round(t_naive, 3),
                     same_merges=same))
    rows.append(dict(comparison="naive vs fast", trainer="fast (ours)", data=size, seconds=round(t_fast, 3),
                     same_merges=same))

    # 2. fast vs tokenizers, `full_vocab` tokens on the train split (its last `full_chars` characters if given)
    part = texts
    if full_chars is not None:
        part, n = [], 0
        for t in reversed(texts):  # the short lead sections, so that many documents take part
            if n >= full_chars:
                break
            part.append(t)
            n += len(t)
    hf, t_hf = timed(T.train_hf_tokenizer, part, full_vocab)
    ours, t_ours = timed(B.train_fast, part, full_vocab)
    same = list(ours.merges) == T.hf_merges(hf) and ours.vocab == T.hf_vocab(hf)
    size = f"{sum(len(t.encode()) for t in part) / 1e6:.2f} MB, vocabulary {full_vocab:,}"
    rows.append(dict(comparison="fast vs tokenizers", trainer="fast (ours, Python)", data=size,
                     seconds=round(t_ours, 3), same_merges=same))
    rows.append(dict(comparison="fast vs tokenizers", trainer="tokenizers (Rust)", data=size,
                     seconds=round(t_hf, 3), same_merges=same))

    ratios = {"fast_speedup_vs_naive": round(t_naive / t_fast, 2),
              "fast_speed_vs_tokenizers": round(t_hf / t_ours, 3)}
    return rows, ratios


def print_table(rows: list[dict]) -> None:
    print(f"{'comparison':<20} {'trainer':<22} {'data':<32} {'seconds':>9}  same merges")
    for r in rows:
        print(f"{r['comparison']:<20} {r['trainer']:<22} {r['data']:<32} {r['seconds']:>9.3f}  {r['same_merges']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, seconds (for the tests)")
    p.add_argument("--json", type=Path, help="write rows, ratios and settings here")
    args = p.parse_args(argv)
    settings = QUICK if args.quick else FULL
    rows, ratios = run(**settings)
    print_table(rows)
    print("goals: fast_speedup_vs_naive >= 30; fast_speed_vs_tokenizers >= 0.125 (ours within 8x of theirs)")
    if not all(r["same_merges"] for r in rows):
        print("WARNING: the trainers did not learn the same merges")
    if args.json:
        import tokenizers

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(dict(
            benchmark="bench_tokenizer", quick=args.quick, settings=settings,
            machine=f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
                    f"tokenizers {tokenizers.__version__}",
            rows=rows, ratios=ratios), indent=1) + "\n")
    for name, value in ratios.items():
        print(f"ratio {name}: {value}")
    return 0 if all(r["same_merges"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
