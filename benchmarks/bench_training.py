"""Benchmark for chapter 7: training tokens/s of our model vs Hugging Face BertForMaskedLM and ModernBertForMaskedLM.

Same shape on both sides (layers, width, heads, vocabulary, sequence, batch), random init from a config (no
download), the same random batches with 30% of the tokens masked, one AdamW step per batch (forward, backward,
optimiser). Two cases:

- sequence 512: ours (global attention, dense SwiGLU FFN) vs `BertForMaskedLM` (SDPA attention, GELU FFN of
  4x width, so about the same parameter count; its MLM head computes logits at every position);
- sequence 2048: ours (sliding window 128 tokens, every third layer global) vs `ModernBertForMaskedLM` with the
  same local window and global cadence and its own sparse prediction head (logits at masked positions only).

Best of `--repeats` interleaved rounds after a warm-up step (the machine may be shared).

At 2048 a third row, `ours, local attention free`, is our model with the sliding layers' attention replaced by
`out = v` (no work at all; not a model anyone should train). It is the ceiling of what a faster sliding-window
kernel could give: the rest of the step (projections, FFN, the head, the global layers' full attention, AdamW) is
the same computation on both sides. Its ratio line (`bound ...`) says how far the goal is reachable at this shape.

    python benchmarks/bench_training.py                  # full size (a few minutes on 2 CPU cores)
    python benchmarks/bench_training.py --quick          # seconds, for tests
    python benchmarks/bench_training.py --json benchmarks/results/bench_training.json
    python benchmarks/bench_training.py --only modernbert --layers 6 --long-seq 4096   # another shape

Goals on CPU: >= 1.3x BERT at sequence 512, >= 2x ModernBERT at 2048.

On CUDA the settings are the GPU issue's shapes (d 512, 8 layers, 8 heads, vocabulary 20k, dense FFN, bf16
autocast, fused AdamW on both sides): BERT at 32 x 512, ModernBERT at 8 x 2048 and 2 x 8192; goals >= 1.5x
BERT, >= 2x and >= 3x ModernBERT. `--quick` on CUDA keeps those shapes with fewer steps.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import bench_parser, pick_settings, write_json  # noqa: E402
from dsmini_helpers.device import describe_environment, get_device, synchronize  # noqa: E402
from dsmini_helpers.model import DSMiniModel, config_for_profile  # noqa: E402

FULL = dict(layers=4, d_model=256, heads=4, vocab=20_000, window=128, global_every=3, repeats=3, steps=2,
            cases=(("bert", 512, 4), ("modernbert", 2048, 1)))
QUICK = dict(layers=2, d_model=32, heads=2, vocab=500, window=16, global_every=2, repeats=1, steps=1,
             cases=(("bert", 64, 2), ("modernbert", 128, 1)))
GPU = dict(layers=8, d_model=512, heads=8, vocab=20_000, window=128, global_every=3, repeats=3, steps=4,
           cases=(("bert", 512, 32), ("modernbert", 2048, 8), ("modernbert", 8192, 2)))
GPU_QUICK = {**GPU, "repeats": 1, "steps": 2}
GOALS = {"bert": 1.3, "modernbert": 2.0}
GPU_GOALS = {("bert", 512): 1.5, ("modernbert", 2048): 2.0, ("modernbert", 8192): 3.0}
MASK_RATE = 0.3
FREE = "ours, local attention free"


def ours(cfg: dict, kind: str, seq: int) -> torch.nn.Module:
    """Our model with the benchmark's shape: dense FFN; global attention (bert) or sliding + global (modernbert)."""
    d = cfg["d_model"]
    hidden = 8 * d // 3 // 32 * 32 if kind == "bert" else 2 * d  # SwiGLU has 3 matrices: 8d/3 ~ BERT's 2 of 4d
    window = cfg["window"] // 2  # ours counts |i - j| <= window; HF's local_attention is the full width
    mc = dataclasses.replace(config_for_profile("ci"), vocab_size=cfg["vocab"], d_model=d, n_layers=cfg["layers"],
                             n_heads=cfg["heads"], d_hidden=hidden, moe_layers=(), max_len=seq,
                             window=window, global_every=1 if kind == "bert" else cfg["global_every"])
    return DSMiniModel(mc)


def free_local_attention(model: torch.nn.Module) -> torch.nn.Module:
    """The same model with every sliding layer's attention core replaced by `out = v`: a cost floor, not a model."""
    for block in model.blocks:
        if not block.is_global:
            block.attn.core = lambda q, k, v, key_padding_mask=None, dropout_p=0.0: v  # (B, H, T, D), no work
    return model


def reference(cfg: dict, kind: str, seq: int) -> torch.nn.Module:
    """The Hugging Face model of the same shape, randomly initialised (no download)."""
    import transformers as tf

    common = dict(vocab_size=cfg["vocab"], hidden_size=cfg["d_model"], num_hidden_layers=cfg["layers"],
                  num_attention_heads=cfg["heads"], max_position_embeddings=seq, pad_token_id=0)
    if kind == "bert":
        conf = tf.BertConfig(intermediate_size=4 * cfg["d_model"], hidden_dropout_prob=0.0,
                             attention_probs_dropout_prob=0.0, **common)
        return tf.BertForMaskedLM._from_config(conf, attn_implementation="sdpa")
    conf = tf.ModernBertConfig(intermediate_size=2 * cfg["d_model"], local_attention=cfg["window"],
                               global_attn_every_n_layers=cfg["global_every"], sparse_prediction=True,
                               cls_token_id=2, sep_token_id=3, bos_token_id=2, eos_token_id=3, mask_token_id=4,
                               attention_dropout=0.0, mlp_dropout=0.0, embedding_dropout=0.0, **common)
    return tf.ModernBertForMaskedLM._from_config(conf, attn_implementation="sdpa")


def batch(cfg: dict, seq: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, cfg["vocab"], (size, seq), generator=g)
    chosen = torch.rand(size, seq, generator=g) < MASK_RATE
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    return torch.where(chosen, torch.full_like(ids, 4), ids), labels


def step_fn(model: torch.nn.Module, is_ours: bool, device: torch.device):
    """One AdamW step on a batch; bf16 autocast and fused AdamW on CUDA (the same for every model)."""
    cuda = device.type == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)

    def step(inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with autocast:
            if is_ours:
                loss = model(inputs, None, labels).loss
            else:
                loss = model(input_ids=inputs, attention_mask=torch.ones_like(inputs), labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()  # no .item(): the timer synchronizes once per round

    return step


def measure(cfg: dict, device: torch.device) -> tuple[list[dict], dict[str, float]]:
    rows, ratios = [], {}
    for kind, seq, size in cfg["cases"]:
        torch.manual_seed(0)
        models = {"ours": ours(cfg, kind, seq), f"hf {kind}": reference(cfg, kind, seq)}
        if kind == "modernbert":
            models[FREE] = free_local_attention(ours(cfg, kind, seq))
        steps = {name: step_fn(m.to(device).train(), name.startswith("ours"), device) for name, m in models.items()}
        data = [tuple(t.to(device) for t in batch(cfg, seq, size, s)) for s in range(cfg["steps"])]
        for step in steps.values():  # warm-up
            step(*data[0])
        best = {name: float("inf") for name in steps}
        for _ in range(cfg["repeats"]):
            for name, step in steps.items():  # interleaved, so a noisy neighbour hits both
                synchronize(device)
                t0 = time.perf_counter()
                for inputs, labels in data:
                    step(inputs, labels)
                synchronize(device)
                best[name] = min(best[name], (time.perf_counter() - t0) / len(data))
        for name, m in models.items():
            rows.append(dict(case=f"{kind} seq {seq}", model=name, seq_len=seq, batch=size,
                             params_m=round(sum(p.numel() for p in m.parameters()) / 1e6, 2),
                             step_ms=round(best[name] * 1e3, 1), tokens_per_s=round(seq * size / best[name], 1)))
        ratios[f"ours/{kind} tokens_per_s seq{seq}" + (f" batch{size}" if device.type == "cuda" else "")] = (
            best[f"hf {kind}"] / best["ours"])
        if FREE in best:
            ratios[f"bound ours/{kind} tokens_per_s seq{seq} (local attention free)"] = best[f"hf {kind}"] / best[FREE]
    return rows, ratios


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--layers", type=int, help="layers of every model (default 4)")
    parser.add_argument("--long-seq", type=int, help="sequence length of the ModernBERT case (default 2048)")
    parser.add_argument("--only", choices=["bert", "modernbert"], help="run one case")
    args = parser.parse_args(argv)
    device = get_device()
    cuda = device.type == "cuda"
    cfg = pick_settings(args, GPU_QUICK if cuda else QUICK, GPU if cuda else FULL)
    if args.layers:
        cfg["layers"] = args.layers
    if args.long_seq:
        cfg["cases"] = tuple((k, args.long_seq if k == "modernbert" else s, b) for k, s, b in cfg["cases"])
    if args.only:
        cfg["cases"] = tuple(c for c in cfg["cases"] if c[0] == args.only)
    print(describe_environment())
    rows, ratios = measure(cfg, device)
    cols = ["case", "model", "params_m", "seq_len", "batch", "step_ms", "tokens_per_s"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print(" | ".join(f"{c:>{widths[c]}}" for c in cols))
    for r in rows:
        print(" | ".join(f"{str(r[c]):>{widths[c]}}" for c in cols))
    for name, value in ratios.items():
        kind, seq = name.split("/")[1].split()[0], int(name.split("seq")[1].split()[0])
        goal = GPU_GOALS.get((kind, seq), GOALS[kind]) if cuda else GOALS[kind]
        if name.startswith("bound"):
            print(f"ceiling {kind} {seq}: even with free sliding-window attention, {value:.2f}x ("
                  f"{'the goal is reachable' if value >= goal else 'the goal is out of reach at this shape'})")
        else:
            print(f"goal {kind} {seq}: >= {goal}x ({'met' if value >= goal else 'NOT met'})")
    for name, value in ratios.items():
        print(f"ratio {name}: {value:.3f}")
    if args.json:
        payload = dict(environment=describe_environment(), device=str(device), quick=args.quick,
                       dtype="bfloat16 autocast" if cuda else "float32",
                       settings={k: v for k, v in cfg.items() if k != "cases"},
                       cases=[list(c) for c in cfg["cases"]],
                       goals={f"{k} {s}": g for (k, s), g in GPU_GOALS.items()} if cuda else GOALS, rows=rows,
                       ratios={k: round(v, 4) for k, v in ratios.items()})
        write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
