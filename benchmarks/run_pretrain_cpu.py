"""Chapter 7's measured `cpu` run: train the cpu profile, measure honest baselines and a same-budget ablation.

Writes benchmarks/results/pretrain_cpu.json, which the chapter loads to show the run whatever profile it executes
in. The run is the artefact store's `cpu` run, the one `get_checkpoint("cpu")` returns to chapters 7, 8 and 9.

    python benchmarks/run_pretrain_cpu.py                       # the full run + ablation (minutes on 2 CPU cores)
    python benchmarks/run_pretrain_cpu.py --retrain             # delete the stored run and measure a fresh one
    python benchmarks/run_pretrain_cpu.py --ablation-steps 0    # without the four ablation variants
    python benchmarks/run_pretrain_cpu.py --max-steps 5 --ablation-steps 0 --json /tmp/x.json   # a smoke test
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dsmini_helpers.batches import get_source_valid_arrays, get_token_arrays, make_valid_set  # noqa: E402
from dsmini_helpers.cache import artefact_dir, data_dir  # noqa: E402
from dsmini_helpers.checkpoint import load_checkpoint  # noqa: E402
from dsmini_helpers.device import describe_environment, get_device, peak_memory_mb  # noqa: E402
from dsmini_helpers.evaluation import evaluate, evaluate_by_source, unigram_baseline  # noqa: E402
from dsmini_helpers.inference import load_probes, probe_summary, score_probes  # noqa: E402
from dsmini_helpers.runs import find_checkpoint, get_checkpoint, run_ablation, run_artefact  # noqa: E402
from dsmini_helpers.tokenizer import get_tokenizer  # noqa: E402
from dsmini_helpers.train import TrainConfig, build_model, train  # noqa: E402


def train_store_run(retrain: bool, device) -> tuple[Path, float]:
    """Train the `cpu` profile's run into the artefact store (where chapters 7-9 find it); (checkpoint, seconds)."""
    kind, key, _ = run_artefact("cpu")
    if find_checkpoint("cpu") is not None:
        if not retrain:
            raise SystemExit(f"the cpu run is already trained ({artefact_dir(kind, key)}): pass --retrain to "
                             "delete it and measure a fresh run")
        shutil.rmtree(artefact_dir(kind, key))
    t0 = time.perf_counter()
    checkpoint = get_checkpoint("cpu", device=device, progress=True)
    return checkpoint, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, help="a shorter run into --out (a smoke test, not the store's run)")
    parser.add_argument("--retrain", action="store_true", help="delete the stored cpu run and train it again")
    parser.add_argument("--ablation-steps", type=int,
                        help="steps per ablation variant (default: the profile's ablation_steps; 0: none)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "dsmini_pretrain_cpu_smoke")
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
    init_model = build_model(cfg).to(device)
    baselines = {"unigram": unigram_baseline(arrays["train"], valid, V), "init": evaluate(init_model, valid, device)}
    probes = load_probes()
    probes_init = probe_summary(score_probes(init_model.eval(), tok, probes))
    print("baselines:", json.dumps(baselines))
    if args.max_steps:
        t0 = time.perf_counter()
        checkpoint = train(cfg, args.out, tokenizer=tok, token_arrays=arrays, device=device).checkpoint
        wall = time.perf_counter() - t0
    else:
        checkpoint, wall = train_store_run(args.retrain, device)
    model, _, state = load_checkpoint(checkpoint, device)
    history = state["history"]
    final = [r for r in history if r["kind"] == "eval"][-1]
    probe_rows = score_probes(model, tok, probes)
    by_source = evaluate_by_source(model, get_source_valid_arrays(tok), V, n_batches=cfg.eval_batches,
                                   batch_size=cfg.batch_size, seq_len=cfg.seq_len, rate=cfg.mask_rate,
                                   device=device)
    print("per-source validation:", json.dumps({k: v.get("valid_loss", v) for k, v in by_source.items()}))
    print(f"trained in {wall / 60:.1f} min: {json.dumps(final)}")
    print(f"accuracy / unigram: {final['valid_accuracy'] / baselines['unigram']['valid_accuracy']:.2f}x")
    print(f"probes: untrained {json.dumps(probes_init)}\n        trained {json.dumps(probe_summary(probe_rows))}")
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
                   config=asdict(cfg), params=sum(p.numel() for p in model.parameters()),
                   wall_s=round(wall, 1), peak_rss_mb=peak_memory_mb(),
                   checkpoint=str(checkpoint.relative_to(ROOT) if checkpoint.is_relative_to(ROOT) else checkpoint),
                   baselines=baselines, final=final, history=history,
                   probes=probe_summary(probe_rows), probes_init=probes_init, probe_rows=probe_rows,
                   by_source=by_source,
                   ablation=ablation, ablation_steps=args.ablation_steps)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.json}; checkpoint: {checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
