"""The recipe sweep and the cpu-run script run in their smoke modes (shape of the output, not the figures)."""

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=900, cwd=ROOT)


def test_recipe_sweep_quick():
    proc = run(str(ROOT / "benchmarks" / "run_recipe_sweep.py"), "--quick")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split()[:2] == ["variant", "steps"] and lines[1].startswith("base")
    assert re.fullmatch(r"ratio accuracy_lr3e-3_vs_base: \d+\.\d\d", lines[-1]), lines[-1]


def test_recipe_sweep_rejects_an_unknown_variant():
    proc = run(str(ROOT / "benchmarks" / "run_recipe_sweep.py"), "--only", "warp-drive")
    assert proc.returncode == 2 and "unknown variants ['warp-drive']" in proc.stderr


def test_pretrain_cpu_smoke(tmp_path):
    out = tmp_path / "run.json"
    proc = run(str(ROOT / "benchmarks" / "run_pretrain_cpu.py"), "--max-steps", "2", "--ablation-steps", "0",
               "--out", str(tmp_path / "ckpt"), "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["config"]["max_steps"] == 2 and data["final"]["step"] == 2
    assert {"top1", "top5", "by_kind"} <= set(data["probes"]) and data["probes_init"]["probes"] >= 30
    assert data["by_source"] and all("valid_loss" in r or "skipped" in r for r in data["by_source"].values())
    assert data["final"]["band_accuracy"] and data["final"]["word_class_accuracy"]
