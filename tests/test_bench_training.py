"""The chapter-7 training benchmark runs in --quick mode and prints its table and ratio lines (shape, not speed)."""

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_training_quick(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_training.py"), "--quick", "--json",
                           str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    ratio_lines = [x for x in lines if x.startswith("ratio ")]
    assert len(ratio_lines) == 3 and lines[-3:] == ratio_lines, "ratio lines must come last"
    for line in ratio_lines:
        assert re.fullmatch(r"ratio (bound )?ours/(bert|modernbert) tokens_per_s seq\d+( \(local attention free\))?: "
                            r"\d+\.\d{3}", line), line
    data = json.loads(out.read_text())
    assert data["quick"] is True and len(data["rows"]) == 5
    assert {r["model"] for r in data["rows"]} == {"ours", "hf bert", "hf modernbert", "ours, local attention free"}
    assert all(r["tokens_per_s"] > 0 and r["params_m"] > 0 for r in data["rows"])
    assert set(data["ratios"]) == {"ours/bert tokens_per_s seq64", "ours/modernbert tokens_per_s seq128",
                                   "bound ours/modernbert tokens_per_s seq128 (local attention free)"}
    free = next(r for r in data["rows"] if r["model"] == "ours, local attention free")
    assert free["params_m"] == next(r for r in data["rows"] if r["model"] == "ours" and r["seq_len"] == 128)["params_m"]
