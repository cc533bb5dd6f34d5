"""Chapter 7's `compile` option, measured: the same training run eager and through `torch.compile`, side by side.

Trains the profile's model (the `cpu` profile's has MoE layers) for `--steps` steps twice from the same seed,
once eager and once with `TrainConfig(compile=True)`, and prints wall time (compilation included), the
steady-state throughput over the second half of the steps (compilation mostly done), the final losses, and
dynamo's counts of compiled graphs, graph breaks and recompilations. The inductor cache in /tmp makes a second
run's compilation faster. `--json PATH` writes the rows.

    python benchmarks/run_compile_cpu.py                      # cpu profile, 80 steps (about 3 min on 2 cores)
    python benchmarks/run_compile_cpu.py --profile ci --steps 10
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dsmini_helpers.batches import get_token_arrays  # noqa: E402
from dsmini_helpers.device import describe_environment  # noqa: E402
from dsmini_helpers.tokenizer import get_tokenizer  # noqa: E402
from dsmini_helpers.train import TrainConfig, train  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    print(describe_environment())
    tok = get_tokenizer()
    arrays = get_token_arrays(tok)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        import torch._dynamo

        for compiled in (False, True):
            torch._dynamo.reset()
            torch._dynamo.utils.counters.clear()
            cfg = TrainConfig.for_profile(args.profile, max_steps=args.steps, eval_every=args.steps, save_every=0,
                                            compile=compiled, precision="fp32")
            t0 = time.perf_counter()
            res = train(cfg, Path(tmp) / str(compiled), tokenizer=tok, token_arrays=arrays, device="cpu",
                          progress=False)
            steps = res.records("train")
            last, half = steps[-1], steps[len(steps) // 2 - 1]
            tokens = cfg.batch_size * cfg.seq_len * cfg.grad_accum
            # tokens_per_s is cumulative: train_time(k) = tokens * k / tokens_per_s(k)
            seconds = tokens * (last["step"] / last["tokens_per_s"] - half["step"] / half["tokens_per_s"])
            counters = torch._dynamo.utils.counters
            rows["compiled" if compiled else "eager"] = dict(
                wall_s=time.perf_counter() - t0, tokens_per_s_all=last["tokens_per_s"],
                tokens_per_s_2nd_half=tokens * (last["step"] - half["step"]) / seconds, loss=last["loss"],
                valid_loss=res.records("eval")[-1]["valid_loss"],
                graphs=int(counters["stats"]["unique_graphs"]), graph_breaks=int(sum(counters["graph_break"].values())))
    print(f"{'run':>9} | {'wall s':>7} | {'tok/s all':>9} | {'tok/s 2nd half':>14} | {'train loss':>10} | "
          f"{'valid loss':>10} | {'graphs':>6} | {'breaks':>6}")
    for name, r in rows.items():
        print(f"{name:>9} | {r['wall_s']:7.1f} | {r['tokens_per_s_all']:9.0f} | {r['tokens_per_s_2nd_half']:14.0f} | "
              f"{r['loss']:10.4f} | {r['valid_loss']:10.4f} | {r['graphs']:6d} | {r['graph_breaks']:6d}")
    if args.json:
        args.json.write_text(json.dumps({"profile": args.profile, "steps": args.steps, "rows": rows}, indent=1) + "\n")
    ratio = rows["compiled"]["tokens_per_s_2nd_half"] / rows["eager"]["tokens_per_s_2nd_half"]
    print(f"ratio compiled/eager tokens_per_s (2nd half): {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
