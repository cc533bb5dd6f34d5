"""Tune the `cpu` recipe by measurement: train variants of the profile's run, score each on one fixed valid set.

Every variant trains on the same number of tokens (or for the same wall time with --seconds) and is scored on the
same Wikipedia validation windows (seq 128, mask rate 0.3), whatever its own seq_len or mask rate. Prints a table
and writes benchmarks/results/recipe_sweep_cpu.json.

    python benchmarks/run_recipe_sweep.py --tokens 600000             # every variant on the same 600k tokens
    python benchmarks/run_recipe_sweep.py --tokens 600000 --only base lr3e-3
    python benchmarks/run_recipe_sweep.py --quick                     # 3 steps of two variants (a smoke test)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import write_json  # noqa: E402
from dsmini_helpers.batches import get_token_arrays, make_valid_set  # noqa: E402
from dsmini_helpers.device import describe_environment, get_device  # noqa: E402
from dsmini_helpers.evaluation import evaluate  # noqa: E402
from dsmini_helpers.moe import moe_stats  # noqa: E402
from dsmini_helpers.tokenizer import get_tokenizer  # noqa: E402
from dsmini_helpers.train import TrainConfig, train  # noqa: E402

# each variant: TrainConfig overrides of the `cpu` profile's run (model_overrides change the model)
VARIANTS: dict[str, dict] = {
    "base": {},
    "lr2e-3": {"lr": 2e-3},
    "lr3e-3": {"lr": 3e-3},
    "lr4e-3": {"lr": 4e-3},
    "lr5e-3": {"lr": 5e-3},
    "bf16": {"precision": "bf16"},
    "min-lr0": {"min_lr_ratio": 0.0},
    "var0.1": {"variable_mix": 0.1},
    "var0.25": {"variable_mix": 0.25},
    "mask0.2": {"mask_rate": 0.2},
    "batch32": {"batch_size": 32},
    "batch8": {"batch_size": 8},
    "mask0.4": {"mask_rate": 0.4},
    "mask0.15": {"mask_rate": 0.15},
    "no-variable": {"variable_mix": 0.0},
    "d192": {"model_overrides": {"d_model": 192, "n_heads": 3, "d_hidden": 384}},
    "3-layers": {"model_overrides": {"n_layers": 3, "moe_layers": (1,)}},
    "d128": {"model_overrides": {"d_model": 128, "n_heads": 4, "d_hidden": 256}},
    "d128-6layers": {"model_overrides": {"d_model": 128, "n_heads": 4, "d_hidden": 256, "n_layers": 6,
                                         "moe_layers": (1, 3, 5)}},
    "6-layers-d192": {"model_overrides": {"n_layers": 6, "d_model": 192, "n_heads": 3, "d_hidden": 384,
                                           "moe_layers": (1, 3, 5)}},
    "dense": {"model_overrides": {"moe_layers": ()}},
    "wd0.1": {"weight_decay": 0.1},
    "lr2e-3-b8": {"lr": 2e-3, "batch_size": 8},
    "lr3e-3-b8": {"lr": 3e-3, "batch_size": 8},
    "lr2e-3-mask0.4": {"lr": 2e-3, "mask_rate": 0.4},
    "lr2e-3-var0.1": {"lr": 2e-3, "variable_mix": 0.1},
    "lr2e-3-bias": {"lr": 2e-3, "model_overrides": {"balance": "bias"}},
    "lr2e-3-aux": {"lr": 2e-3, "model_overrides": {"balance": "aux"}},
    "lr2e-3-b32": {"lr": 2e-3, "batch_size": 32},
    "lr2e-3-d192": {"lr": 2e-3, "model_overrides": {"d_model": 192, "n_heads": 3, "d_hidden": 384}},
    "lr2e-3-3layers": {"lr": 2e-3, "model_overrides": {"n_layers": 3, "moe_layers": (1,)}},
}

RECIPE_FIELDS = ("lr", "batch_size", "seq_len", "mask_rate", "variable_mix", "warmup_steps")  # recorded in each row


@torch.no_grad()
def expert_imbalance(model, valid_set: list, device) -> float:
    """The busiest expert's share of tokens over the mean share, worst MoE layer, on the valid inputs (1 = even)."""
    loads = None
    for inputs, _ in valid_set:
        model(inputs.to(device))
        counts = torch.tensor([s["tokens_per_expert"] for s in moe_stats(model)], dtype=torch.float64)
        loads = counts if loads is None else loads + counts
    if loads is None or loads.numel() == 0:
        return float("nan")
    return float((loads.max(1).values / loads.mean(1)).max())


def score_variant(name: str, overrides: dict, tokens: int, seconds: float | None, arrays: dict, tok,
                  valid_set: list, device) -> dict:
    """Train one variant on `tokens` training tokens (or for `seconds`) and score it on the shared valid set."""
    base = TrainConfig.for_profile("cpu")
    cfg = TrainConfig.from_dict({**asdict(base), **overrides, "save_every": 0, "eval_batches": 1})
    steps = max(1, tokens // (cfg.batch_size * cfg.seq_len * cfg.grad_accum))
    cfg = TrainConfig.from_dict({**asdict(cfg), "max_steps": steps, "eval_every": steps})
    if seconds:  # the same wall time: measure this variant's step time, then set its steps
        probe = TrainConfig.from_dict({**asdict(cfg), "max_steps": 20, "eval_every": 20, "warmup_steps": 5})
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            train(probe, tmp, tokenizer=tok, token_arrays=arrays, device=device, progress=False)
            per_step = (time.perf_counter() - t0) / 20
        steps = max(20, int(seconds / per_step))
        cfg = TrainConfig.from_dict({**asdict(cfg), "max_steps": steps, "eval_every": steps})
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = train(cfg, tmp, tokenizer=tok, token_arrays=arrays, device=device, progress=False)
        wall = time.perf_counter() - t0
    metrics = evaluate(res.model, valid_set, device)
    recipe = {k: getattr(cfg, k) for k in RECIPE_FIELDS} | {"d_model": res.model.config.d_model}
    return {"variant": name, "overrides": overrides, "recipe": recipe, "steps": steps, "wall_s": round(wall, 1),
            "max_load_ratio": round(expert_imbalance(res.model, valid_set, device), 3),
            "tokens_per_s": round(res.records("train")[-1]["tokens_per_s"]),
            "params": sum(p.numel() for p in res.model.parameters()),
            "valid_loss": metrics["valid_loss"], "valid_accuracy": metrics["valid_accuracy"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=600_000, help="training tokens per variant (equal data)")
    parser.add_argument("--seconds", type=float, help="equal wall time per variant instead of equal steps")
    parser.add_argument("--only", nargs="*", help="variants to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="3 steps of two variants, scored on one batch")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "recipe_sweep_cpu.json")
    args = parser.parse_args(argv)
    names = ["base", "lr3e-3"] if args.quick else (args.only or list(VARIANTS))
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")
    tokens = 3 * 16 * 128 if args.quick else args.tokens
    device, tok = get_device(), get_tokenizer()
    arrays = get_token_arrays(tok)
    valid_set = make_valid_set(arrays["valid"], tok.get_vocab_size(), n_batches=1 if args.quick else 24,
                               batch_size=16, seq_len=128, rate=0.3)
    rows = []
    print(f"{'variant':16}{'steps':>7}{'wall s':>8}{'tok/s':>8}{'params':>11}{'valid loss':>12}{'acc %':>8}"
          f"{'max load':>10}")
    for name in names:
        row = score_variant(name, VARIANTS[name], tokens, None if args.quick else args.seconds, arrays, tok,
                            valid_set, device)
        rows.append(row)
        print(f"{name:16}{row['steps']:>7}{row['wall_s']:>8}{row['tokens_per_s']:>8}{row['params']:>11,}"
              f"{row['valid_loss']:>12.3f}{100 * row['valid_accuracy']:>8.1f}{row['max_load_ratio']:>10.2f}",
              flush=True)
    if not args.quick:
        old = json.loads(args.json.read_text())["rows"] if args.json.exists() else []
        done = {(r["variant"], r["steps"]) for r in rows}
        kept = [r for r in old if (r["variant"], r["steps"]) not in done]
        write_json(args.json, {"environment": describe_environment(), "rows": kept + rows,
                               "valid_set": "24 batches x 16 x 128 Wikipedia valid windows, mask rate 0.3"})
    base = next((r for r in rows if r["variant"] == "base"), None)
    for r in rows:
        if base and r is not base:
            print(f"ratio accuracy_{r['variant']}_vs_base: {r['valid_accuracy'] / base['valid_accuracy']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
