"""The chapter-10 benchmark runs in --quick mode: exit 0, its table, ratio lines last, JSON keys (not speed)."""

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_distributed_quick(tmp_path):
    out = tmp_path / "bench_distributed.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_distributed.py"), "--quick", "--cpu",
                           "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    ratio_lines = [line for line in lines if line.startswith("ratio ")]
    assert len(ratio_lines) == 4 and lines[-4:] == ratio_lines, "ratio lines must come last"
    for line in ratio_lines:
        assert re.fullmatch(r"ratio .+: \d+\.\d+", line), line
    data = json.loads(out.read_text())
    assert [r["name"] for r in data["rows"]] == ["1 process, 1 thread", "1 process, 2 threads", "2 ranks DDP",
                                                 "2 ranks FSDP"]
    assert [r["world_size"] for r in data["rows"]] == [1, 1, 2, 2]
    assert all(r["tokens_per_s"] > 0 and r["seconds"] > 0 for r in data["rows"])
    assert set(data["ratios"]) == {line[len("ratio "):].rsplit(":", 1)[0] for line in ratio_lines}
    losses = [r["final_loss"] for r in data["rows"]]
    assert max(losses) - min(losses) < 1e-4  # the same run, however it is spread
