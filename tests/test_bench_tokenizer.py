"""The tokenizer benchmark runs (--quick) and prints its table and ratio lines; no timing is asserted."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_tokenizer_quick(tmp_path):
    out_json = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_tokenizer.py"), "--quick", "--json", str(out_json)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split() == ["comparison", "trainer", "data", "seconds", "same", "merges"]
    ratio_lines = [line for line in lines if line.startswith("ratio ")]
    assert len(ratio_lines) == 2 and lines[-2:] == ratio_lines  # the ratios come last
    result = json.loads(out_json.read_text())
    assert set(result["ratios"]) == {"fast_speedup_vs_naive", "fast_speed_vs_tokenizers"}
    for line in ratio_lines:
        name, value = line[len("ratio "):].split(": ")
        assert float(value) > 0 and result["ratios"][name] == float(value)
    rows = result["rows"]
    assert [r["trainer"] for r in rows] == ["naive (ours)", "fast (ours)", "fast (ours, Python)", "tokenizers (Rust)"]
    assert all(r["seconds"] > 0 and r["same_merges"] is True for r in rows)
    assert result["quick"] is True
