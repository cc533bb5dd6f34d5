"""Chapter 7's measured `cpu` run: train the cpu profile, measure honest baselines and a same-budget ablation.

Writes benchmarks/results/pretrain_cpu.json, which the chapter loads to show the run whatever profile it executes
in. The checkpoint goes to data/checkpoints/cpu/ (where `get_checkpoint("cpu")` finds it for chapters 8 and 9).

    python benchmarks/run_pretrain_cpu.py                       # the full run + ablation (minutes on 2 CPU cores)
    python benchmarks/run_pretrain_cpu.py --ablation-steps 0    # without the four ablation variants
    python benchmarks/run_pretrain_cpu.py --max-steps 5 --json /tmp/x.json   # a smoke test
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dsmini_helpers.batches import get_token_arrays, make_valid_set  # noqa: E402
from dsmini_helpers.cache import data_dir  # noqa: E402
from dsmini_helpers.device import describe_environment, get_device  # noqa: E402
from dsmini_helpers.evaluation import evaluate, unigram_baseline  # noqa: E402
from dsmini_helpers.runs import run_ablation  # noqa: E402
from dsmini_helpers.tokenizer import get_tokenizer  # noqa: E402
from dsmini_helpers.train import TrainConfig, build_model, train  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, help="override the profile's max_steps")
    parser.add_argument("--ablation-steps", type=int,
                        help="steps per ablation variant (default: the profile's ablation_steps; 0: none)")
    parser.add_argument("--out", type=Path, help="checkpoint folder (default: data/checkpoints/cpu)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "pretrain_cpu.json")
    args = parser.parse_args(argv)
    overrides = {"max_steps": args.max_steps} if args.max_steps else {}
    cfg = TrainConfig.for_profile("cpu", **overrides)
    device = get_device()
    tok = get_tokenizer()
    arrays = get_token_arrays(tok)
    V = tok.get_vocab_size()
    valid = make_valid_set(arrays["valid"], V, n_batches=cfg.eval_batches, batch_size=cfg.batch_size,
                             seq_len=cfg.seq_len, rate=cfg.mask_rate)
    baselines = {"unigram": unigram_baseline(arrays["train"], valid, V),
                 "init": evaluate(build_model(cfg).to(device), valid, device)}
    print("baselines:", json.dumps(baselines))
    t0 = time.perf_counter()
    out = args.out or data_dir("checkpoints", "cpu")
    result = train(cfg, out, tokenizer=tok, token_arrays=arrays, device=device)
    wall = time.perf_counter() - t0
    final = result.records("eval")[-1]
    print(f"trained in {wall / 60:.1f} min: {json.dumps(final)}")
    print(f"accuracy / unigram: {final['valid_accuracy'] / baselines['unigram']['valid_accuracy']:.2f}x")
    if args.ablation_steps is None:
        from dsmini_helpers.profiles import get_profile

        args.ablation_steps = get_profile("cpu").sizes("pretrain").ablation_steps
    ablation = []
    if args.ablation_steps:
        ab_cfg = TrainConfig.from_dict({**asdict(cfg), "max_steps": args.ablation_steps,
                                          "eval_every": args.ablation_steps})  # as the chapter's ablation cell
        ablation = run_ablation(ab_cfg, data_dir("runs", "cpu_ablation"), tokenizer=tok, token_arrays=arrays,
                                  device=device)
        for row in ablation:
            print(json.dumps(row))
    payload = dict(date=datetime.date.today().isoformat(), environment=describe_environment(),
                   command=" ".join(["python benchmarks/run_pretrain_cpu.py", *(argv or sys.argv[1:])]),
                   config=asdict(cfg), params=sum(p.numel() for p in result.model.parameters()),
                   wall_s=round(wall, 1), peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   checkpoint=str(result.checkpoint.relative_to(ROOT) if result.checkpoint.is_relative_to(ROOT)
                                  else result.checkpoint),
                   baselines=baselines, final=final, history=result.history,
                   ablation=ablation, ablation_steps=args.ablation_steps)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.json}; checkpoint: {result.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
