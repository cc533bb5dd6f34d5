"""The attention benchmark runs (--quick) and prints its table and ratio lines; no timing is asserted."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_attention_quick(tmp_path):
    out_json = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_attention.py"), "--quick", "--json", str(out_json)],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env={**os.environ, "DSMINI_DEVICE": "cpu"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert any("median time ms / peak memory MiB" in line for line in lines)
    ratio_lines = [line for line in lines if line.startswith("ratio ")]
    assert ratio_lines and lines[-len(ratio_lines):] == ratio_lines  # the ratios come last
    for line in ratio_lines:
        name, value = line[len("ratio "):].split(": ")
        assert float(value) > 0, line
    result = json.loads(out_json.read_text())
    assert set(result["ratios"]) == {line[len("ratio "):].split(": ")[0] for line in ratio_lines}
    rows = result["rows"]
    assert {r["impl"] for r in rows} >= {"dense mask", "SDPA + cached mask", "blocked"}
    assert {r["mode"] for r in rows} == {"fwd", "fwd+bwd"}
    measured = [r for r in rows if r["time_ms"] is not None]
    assert len(measured) == 12  # 2 lengths x 3 implementations x 2 modes
    assert all(r["time_ms"] > 0 and r["peak_mb"] >= 0 for r in measured)
    assert "blocked_time_T256_over_T128_fwdbwd" in result["ratios"]
