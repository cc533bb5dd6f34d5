"""The chapter-5 benchmark runs in --quick mode and prints its table, ratio lines and JSON (shape, not speed)."""

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_moe_quick(tmp_path):
    out = tmp_path / "bench_moe.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_moe.py"), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    ratio_lines = [line for line in lines if line.startswith("ratio ")]
    assert ratio_lines and lines[-len(ratio_lines):] == ratio_lines, "ratio lines must come last"
    for line in ratio_lines:
        assert re.fullmatch(r"ratio .+: \d+\.\d+", line), line
    # 2 expert counts x 2 top-k x 2 phases x 2 comparisons in --quick
    assert len(ratio_lines) == 16
    assert any(line.startswith("goal:") for line in lines)
    data = json.loads(out.read_text())
    assert {r["impl"] for r in data["rows"]} == {"grouped", "oracle", "dense_ffn"}
    assert len(data["rows"]) == 2 * 2 * 3
    assert all(r["fwd_ms"] > 0 and r["fwd_bwd_ms"] > 0 for r in data["rows"])
    assert set(data["ratios"]) == {line[len("ratio "):].rsplit(":", 1)[0] for line in ratio_lines}
