"""Hand-written plumbing (not exported from a notebook): the one size knob, DSMINI_PROFILE.

`ci` runs every chapter in seconds (tests, CI), `cpu` in minutes (default without a GPU), `gpu` is the real
configuration for an 8 GB card (default on CUDA). Every heavy cell reads its sizes from here:

    profile = get_profile()
    sizes = profile.sizes("attention")   # the attention chapter's sizes for this profile
    sizes.seq_len

The model and the training run of each profile are the one thing not in this table: they live in
`experiments/<file>.yaml` (`model:` for DSMiniConfig, `train:` for TrainConfig), read by `read_experiment`,
so that `python -m dsmini_helpers.pretrain --config experiments/cpu.yaml` trains exactly the `cpu` run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any

import torch
import yaml

PROFILE_NAMES = ("ci", "cpu", "gpu")
EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
PROFILE_EXPERIMENTS = {"ci": "ci.yaml", "cpu": "cpu.yaml", "gpu": "pretrain_small.yaml"}  # model + training run
EXPERIMENT_KEYS = ("name", "profile", "model", "train")

# One block per chapter; each block gives the same keys for the three profiles.
SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "data": {
        # online_docs_per_source: documents streamed per online source; registry_docs_per_source: the offline
        # registry sources' training documents kept per source (None: all; ci keeps a few, reading every archive)
        "ci": dict(online_docs_per_source=200, registry_docs_per_source=24, preview_docs=3),
        "cpu": dict(online_docs_per_source=20_000, registry_docs_per_source=None, preview_docs=3),
        "gpu": dict(online_docs_per_source=200_000, registry_docs_per_source=None, preview_docs=3),
    },
    "tokenizer": {
        # scratch_*: the from-scratch naive-vs-fast run; compare_*: our trainer vs `tokenizers` (share of the
        # train split, vocabulary); the book's tokenizer is always 20k on the whole train split
        "ci": dict(vocab_size=20_000, scratch_bytes=30_000, scratch_merges=150, compare_fraction=0.1,
                   compare_vocab=3_000),
        "cpu": dict(vocab_size=20_000, scratch_bytes=300_000, scratch_merges=1_000, compare_fraction=1.0,
                    compare_vocab=20_000),
        "gpu": dict(vocab_size=20_000, scratch_bytes=300_000, scratch_merges=1_000, compare_fraction=1.0,
                    compare_vocab=20_000),
    },
    "attention": {
        # bench_seq_lens / repeats: the "ours or PyTorch's kernel" timing (forward + backward)
        "ci": dict(d_model=64, n_heads=4, seq_len=32, bench_seq_lens=(128, 512), repeats=3),
        "cpu": dict(d_model=256, n_heads=4, seq_len=128, bench_seq_lens=(256, 1024, 2048), repeats=5),
        "gpu": dict(d_model=256, n_heads=4, seq_len=128, bench_seq_lens=(1024, 4096, 8192), repeats=10),
    },
    "sparse_attention": {
        "ci": dict(seq_lens=(256, 512, 1024), window=32, repeats=2),
        "cpu": dict(seq_lens=(1024, 2048, 4096), window=128, repeats=3),
        "gpu": dict(seq_lens=(1024, 4096, 16384), window=128, repeats=5),
    },
    "moe": {
        # train_steps/tokens: the collapse toy (tokens per step); widget_*: the 18 next-token models of the widget;
        # bias_rate: DeepSeek-V3's gamma for these short runs (each bias moves at most gamma per step)
        "ci": dict(train_steps=60, tokens=512, d_model=32, d_hidden=64, widget_steps=40, widget_docs=200,
                   bias_rate=1e-2),
        "cpu": dict(train_steps=300, tokens=2048, d_model=64, d_hidden=128, widget_steps=150, widget_docs=2000,
                    bias_rate=1e-3),
        "gpu": dict(train_steps=500, tokens=8192, d_model=128, d_hidden=256, widget_steps=300, widget_docs=5000,
                    bias_rate=1e-3),
    },
    "model": {
        # chapter 6's measurements (a forward on real text, the memory estimate); the models: experiments/*.yaml
        "ci": dict(batch_size=4, seq_len=64),
        "cpu": dict(batch_size=8, seq_len=256),
        "gpu": dict(batch_size=24, seq_len=512),
    },
    "pretrain": {
        # the notebook's same-budget ablation; the training runs themselves: experiments/*.yaml (`train:`)
        "ci": dict(ablation_steps=40),
        "cpu": dict(ablation_steps=120),
        "gpu": dict(ablation_steps=1000),
    },
    "scaling": {
        # chapter 10: the ci model trained by one process and by torchrun with 2 ranks (CPU, gloo)
        "ci": dict(config="ci", demo_steps=6, batch_size=8, seq_len=64, grad_accum=2, world_size=2,
                   strategies=("ddp",)),
        "cpu": dict(config="ci", demo_steps=30, batch_size=16, seq_len=128, grad_accum=2, world_size=2,
                    strategies=("ddp", "fsdp")),
        "gpu": dict(config="ci", demo_steps=30, batch_size=16, seq_len=128, grad_accum=2, world_size=2,
                    strategies=("ddp", "fsdp")),
    },
    "inference": {
        # generation length/steps of the side-by-side; sentences embedded for the semantic-search measurement;
        # sweep_*: validation windows of the masked-accuracy-against-mask-rate comparison (two checkpoints)
        "ci": dict(max_new_tokens=12, steps=12, search_sentences=160, sentences_per_doc=4, sweep_windows=32,
                   sweep_seq_len=64, sweep_batch_size=16),
        "cpu": dict(max_new_tokens=24, steps=24, search_sentences=600, sentences_per_doc=4, sweep_windows=128,
                    sweep_seq_len=128, sweep_batch_size=32),
        "gpu": dict(max_new_tokens=48, steps=48, search_sentences=2000, sentences_per_doc=4, sweep_windows=512,
                    sweep_seq_len=512, sweep_batch_size=32),
    },
}


@dataclass(frozen=True)
class Profile:
    """A named set of sizes; `sizes(chapter)` returns that chapter's block as attributes."""

    name: str

    def sizes(self, chapter: str) -> SimpleNamespace:
        if chapter not in SIZES:
            raise KeyError(f"no sizes for chapter {chapter!r}; known: {sorted(SIZES)}")
        return SimpleNamespace(**MappingProxyType(SIZES[chapter][self.name]))

    def experiment_path(self) -> Path:
        """experiments/<file>.yaml: this profile's model and training run."""
        return EXPERIMENTS / PROFILE_EXPERIMENTS[self.name]

    def experiment(self) -> dict[str, Any]:
        """This profile's experiment file: {"name", "profile", "model": {...}, "train": {...}}."""
        return read_experiment(self.experiment_path())

    def __str__(self) -> str:
        return self.name


def read_experiment(path: str | os.PathLike) -> dict[str, Any]:
    """An experiment YAML file as {"name", "profile", "model", "train"}; any other key is an error.

    `model` holds DSMiniConfig fields and `train` TrainConfig fields (each class rejects unknown ones);
    both default to {} and `name` to the file's stem.
    """
    path = Path(path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    unknown = sorted(set(raw) - set(EXPERIMENT_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}; known: {list(EXPERIMENT_KEYS)}")
    for section in ("model", "train"):
        if not isinstance(raw.get(section) or {}, dict):
            raise ValueError(f"{path}: `{section}` must be a mapping")
    return {"name": str(raw.get("name") or path.stem), "profile": raw.get("profile"),
            "model": dict(raw.get("model") or {}), "train": dict(raw.get("train") or {})}


def default_profile_name() -> str:
    """`gpu` when CUDA is available, else `cpu`."""
    return "gpu" if torch.cuda.is_available() else "cpu"


def get_profile(name: str | None = None) -> Profile:
    """The profile named by `name`, else by $DSMINI_PROFILE, else the automatic default."""
    name = name or os.environ.get("DSMINI_PROFILE") or default_profile_name()
    name = name.strip().lower()
    if name not in PROFILE_NAMES:
        raise ValueError(f"DSMINI_PROFILE must be one of {PROFILE_NAMES}, got {name!r}")
    return Profile(name)
