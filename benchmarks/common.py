"""What every benchmark script shares: the standard flags, size selection and writing the results as JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def bench_parser(doc: str) -> argparse.ArgumentParser:
    """A parser with --quick, --json and --repeats; `doc` is the script's docstring (its first line describes it)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: runs in seconds (tests)")
    parser.add_argument("--json", type=Path, help="write rows, ratios and settings as JSON here")
    parser.add_argument("--repeats", type=int, help="timed rounds (best of)")
    return parser


def pick_settings(args: argparse.Namespace, quick: dict, full: dict) -> dict:
    """A copy of the quick or full settings, with --repeats applied."""
    cfg = dict(quick if args.quick else full)
    if args.repeats:
        cfg["repeats"] = args.repeats
    return cfg


def write_json(path: Path, payload: dict, indent: int = 2) -> None:
    """Write `payload` to `path` (parent folders created), ending with a newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=indent) + "\n", encoding="utf-8")
