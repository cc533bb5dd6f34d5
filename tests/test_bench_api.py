"""The API benchmark runs (--quick) against a real server and prints its table and ratio lines; no timing is
asserted, only the shape of the output and that no request failed."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_api_quick(tmp_path):
    out_json = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_api.py"), "--quick", "--clients", "4",
         "--json", str(out_json)],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env={**os.environ, "DSMINI_DEVICE": "cpu"},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert any(line.startswith("endpoint") and "p95 ms" in line and "req/s" in line for line in lines)
    ratio_lines = [line for line in lines if line.startswith("ratio ")]
    assert len(ratio_lines) == 6 and lines[-len(ratio_lines):] == ratio_lines  # the ratios come last
    for line in ratio_lines:
        name, value = line[len("ratio "):].split(": ")
        assert float(value) > 0, line
    result = json.loads(out_json.read_text())
    assert set(result["ratios"]) == {line[len("ratio "):].split(": ")[0] for line in ratio_lines}
    assert result["errors"] == 0
    rows = result["rows"]
    http_rows = [r for r in rows if r["how"].startswith("HTTP")]
    assert len(http_rows) == 8 and {r["torch_threads"] for r in http_rows} >= {"1"}
    assert {(r["endpoint"], r["clients"]) for r in http_rows} == {("/embed", 1), ("/embed", 4), ("/predict", 1),
                                                                  ("/predict", 4)}
    assert {r["endpoint"] for r in rows if r["how"].startswith("in-process")} == {"/embed", "/predict"}
    assert all(r["requests"] > 0 and 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] for r in rows)
    assert all(60 <= r["input_tokens"] <= 68 for r in rows)  # 64-token inputs (a [MASK] may re-split a word)
