"""Chapter 7's `compile` option, measured: the same training run eager and through `torch.compile`, side by side.

Trains the profile's model (the `cpu` profile's has MoE layers) for `--steps` steps twice from the same seed,
once eager and once with `TrainConfig(compile=True)`, and prints wall time (compilation included), the last
training throughput and the final losses. Wall time includes compilation; the inductor cache in /tmp makes a
second run faster.

    python benchmarks/run_compile_cpu.py                      # cpu profile, 80 steps (about 3 min on 2 cores)
    python benchmarks/run_compile_cpu.py --profile ci --steps 10
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dsmini_helpers import pretrain as P  # noqa: E402
from dsmini_helpers.device import describe_environment  # noqa: E402
from dsmini_helpers.tokenizer import get_tokenizer  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--steps", type=int, default=80)
    args = parser.parse_args(argv)
    print(describe_environment())
    tok = get_tokenizer()
    arrays = P.get_token_arrays(tok)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for compiled in (False, True):
            cfg = P.TrainConfig.for_profile(args.profile, max_steps=args.steps, eval_every=args.steps, save_every=0,
                                            compile=compiled, precision="fp32")
            t0 = time.perf_counter()
            res = P.train(cfg, Path(tmp) / str(compiled), tokenizer=tok, token_arrays=arrays, device="cpu",
                          progress=False)
            last = res.records("train")[-1]
            rows["compiled" if compiled else "eager"] = dict(
                wall_s=time.perf_counter() - t0, tokens_per_s=last["tokens_per_s"], loss=last["loss"],
                valid_loss=res.records("eval")[-1]["valid_loss"])
    print(f"{'run':>9} | {'wall s':>7} | {'tokens/s':>9} | {'train loss':>10} | {'valid loss':>10}")
    for name, r in rows.items():
        print(f"{name:>9} | {r['wall_s']:7.1f} | {r['tokens_per_s']:9.0f} | {r['loss']:10.4f} | "
              f"{r['valid_loss']:10.4f}")
    print(f"ratio compiled/eager tokens_per_s: {rows['compiled']['tokens_per_s'] / rows['eager']['tokens_per_s']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
