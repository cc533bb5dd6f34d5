"""The API benchmark runs (--quick) against real servers and prints its table and ratio lines; no timing is
asserted, only the shape of the output and that no request failed."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RATIOS = {"health_goal_50ms_over_p99_mixed", "deadline_compliance", "overload_goal_50ms_over_429_p99",
          "embed_goal_50ms_over_p95_8_clients", "generate_batched_over_unbatched_req_per_s"}


def test_bench_api_quick(tmp_path):
    out_json = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_api.py"), "--quick", "--json", str(out_json)],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env={**os.environ, "DSMINI_DEVICE": "cpu"},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert any(line.startswith("case") and "p99 ms" in line and "req/s" in line for line in lines)
    ratio_lines = [line for line in lines if line.startswith("ratio ")]
    assert lines[-len(ratio_lines):] == ratio_lines  # the ratios come last
    assert {line[len("ratio "):].split(": ")[0] for line in ratio_lines} == RATIOS
    result = json.loads(out_json.read_text())
    assert set(result["ratios"]) == RATIOS and result["errors"] == 0 and result["quick"] is True
    rows = result["rows"]
    assert {(r["case"], r["server"], r["endpoint"]) for r in rows if r["case"] == "8 clients"} == {
        ("8 clients", "batching on", "/generate"), ("8 clients", "batching off", "/generate"),
        ("8 clients", "batching on", "/embed")}
    mixed = {r["endpoint"] for r in rows if r["case"].endswith("mixed clients")}
    assert mixed == {"/generate", "/predict", "/embed", "/summarize", "/health"}
    assert all(r["requests"] > 0 and r["errors"] == 0 for r in rows)
    assert all(r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] for r in rows if r["ok"])
