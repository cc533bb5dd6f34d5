"""Benchmark: the HTTP API of chapter 9 under load, /embed and /predict with 64-token inputs (chapter 9).

The server is the real thing: `uvicorn dsmini_helpers.api:app` in a subprocess on 127.0.0.1, serving a chapter-7
checkpoint (default: the `ci` one). For each endpoint, 1 and then 8 client threads send requests back to back for a
fixed time after a warm-up; we report p50/p95/p99 latency, requests per second and errors. The clients use the
standard library's `http.client` with keep-alive, the lightest Python client, because on a 2-core machine every
cycle a client spends is taken from the server. Side by side, in the same run:
- the same call in-process (`Model.embed` / `Model.fill_mask`, one caller, no HTTP): what HTTP, JSON and
  queueing add;
- the server with PyTorch's default number of threads (one per core) and with DSMINI_TORCH_THREADS=1.
/embed goes through the server's MicroBatcher (concurrent requests share a forward pass); /predict does not, so
the two endpoints also show what batching buys.
Figures are noisy when other work shares the machine.

Goal on CPU (chapter 9): p95 < 50 ms for /embed with 8 concurrent clients, zero errors.

    python benchmarks/bench_api.py                 # full size (about two minutes)
    python benchmarks/bench_api.py --quick         # seconds (for the tests)
    python benchmarks/bench_api.py --json benchmarks/results/bench_api.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

GOAL_P95_MS = 50.0
INPUT_TOKENS = 64


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between order statistics."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def make_inputs(model, n_tokens: int = INPUT_TOKENS) -> tuple[str, str, int, int]:
    """A validation-corpus text of exactly `n_tokens` tokens, and the same with its middle token as [MASK]."""
    from dsmini_helpers.data import load_texts

    ids: list[int] = []
    for doc in load_texts("valid"):
        ids += model.tokens(doc)
        if len(ids) >= 4 * n_tokens:
            break
    ids = ids[:n_tokens]
    text = model.decode(ids)
    half = n_tokens // 2
    masked = model.decode(ids[:half]) + "[MASK]" + model.decode(ids[half + 1:])
    return text, masked, len(model.tokens(text)), len(model.tokens(masked))


def load(url: str, path: str, body: dict, clients: int, seconds: float, warmup: int) -> dict:
    """`clients` threads post `body` to `url + path` back to back for `seconds`; latencies in ms and errors."""
    host, port = url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode("utf-8")
    headers = {"content-type": "application/json"}
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    clock = {}

    def set_clock() -> None:  # runs once, when every client has warmed up, before any is released
        clock["t0"] = time.perf_counter()
        clock["stop"] = clock["t0"] + seconds

    start = threading.Barrier(clients + 1, action=set_clock)

    def post(conn: http.client.HTTPConnection) -> tuple[int, bytes]:
        conn.request("POST", path, body=payload, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()

    def worker() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)  # one keep-alive connection per client
        for _ in range(warmup):
            post(conn)
        start.wait()
        mine, bad = [], []
        while time.perf_counter() < clock["stop"]:
            t0 = time.perf_counter()
            try:
                status, data = post(conn)
                ok = status == 200 and data.startswith(b"{")
                if not ok:
                    bad.append(f"{status}: {data[:100]!r}")
            except (OSError, http.client.HTTPException) as e:
                ok = False
                bad.append(type(e).__name__)
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
            if ok:
                mine.append((time.perf_counter() - t0) * 1000)
        conn.close()
        with lock:
            latencies.extend(mine)
            errors.extend(bad)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - clock["t0"]
    return {"latencies": latencies, "errors": errors, "elapsed_s": elapsed}


def in_process(fn, seconds: float, warmup: int) -> list[float]:
    """Call fn() back to back for `seconds` after `warmup` calls; latencies in ms."""
    for _ in range(warmup):
        fn()
    out, stop_at = [], time.perf_counter() + seconds
    while time.perf_counter() < stop_at:
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def row(endpoint: str, how: str, threads: str, clients: int, latencies: list[float], errors: int, elapsed: float,
        tokens: int) -> dict:
    return {"endpoint": endpoint, "how": how, "torch_threads": threads, "clients": clients, "input_tokens": tokens,
            "requests": len(latencies), "errors": errors,
            "p50_ms": round(percentile(latencies, 50), 2), "p95_ms": round(percentile(latencies, 95), 2),
            "p99_ms": round(percentile(latencies, 99), 2), "mean_ms": round(statistics.fmean(latencies), 2),
            "req_per_s": round(len(latencies) / elapsed, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about a second per case (for the tests)")
    parser.add_argument("--json", help="write rows and ratios to this file")
    parser.add_argument("--checkpoint", help="checkpoint folder (default: chapter 7's `ci` checkpoint)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per case (default 10)")
    args = parser.parse_args(argv)
    seconds = args.seconds or (1.0 if args.quick else 10.0)
    warmup = 2 if args.quick else 10

    import torch

    from dsmini_helpers.api import running_server
    from dsmini_helpers.inference import Model
    from dsmini_helpers.runs import get_checkpoint

    checkpoint = Path(args.checkpoint) if args.checkpoint else get_checkpoint("ci")
    model = Model.load(checkpoint, device="cpu")
    text, masked, n_text, n_masked = make_inputs(model)
    n_parameters = model.n_parameters
    print(f"checkpoint {checkpoint} ({model.n_parameters:,} parameters) | inputs: {n_text} tokens (/embed), "
          f"{n_masked} tokens with one [MASK] (/predict) | {args.clients} clients, {seconds:.0f} s per case | "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    rows = []
    default_threads = str(torch.get_num_threads())
    for endpoint, fn, tokens in [("/embed", lambda: model.embed([text]), n_text),
                                 ("/predict", lambda: model.fill_mask(masked, 5), n_masked)]:
        lat = in_process(fn, seconds, warmup)
        rows.append(row(endpoint, "in-process, no HTTP", default_threads, 1, lat, 0, seconds, tokens))

    for threads in (default_threads, "1"):
        with running_server(checkpoint, env={"DSMINI_TORCH_THREADS": threads}) as url:
            for endpoint, body, tokens in [("/embed", {"texts": [text]}, n_text),
                                           ("/predict", {"text": masked, "top_k": 5}, n_masked)]:
                for clients in (1, args.clients):
                    res = load(url, endpoint, body, clients, seconds, warmup)
                    rows.append(row(endpoint, "HTTP on loopback", threads, clients, res["latencies"],
                                    len(res["errors"]), res["elapsed_s"], tokens))
                    if res["errors"]:
                        print(f"  {endpoint}: {len(res['errors'])} errors, e.g. {res['errors'][0]}")

    header = f"{'endpoint':10s} {'how':20s} {'threads':>7s} {'clients':>7s} {'tokens':>6s} {'requests':>8s} " \
             f"{'errors':>6s} {'p50 ms':>7s} {'p95 ms':>7s} {'p99 ms':>7s} {'req/s':>7s}"
    print("latency per request (ms) and throughput; threads = PyTorch threads of the process that runs the model")
    print(header)
    for r in rows:
        print(f"{r['endpoint']:10s} {r['how']:20s} {r['torch_threads']:>7s} {r['clients']:7d} {r['input_tokens']:6d} "
              f"{r['requests']:8d} {r['errors']:6d} {r['p50_ms']:7.1f} {r['p95_ms']:7.1f} {r['p99_ms']:7.1f} "
              f"{r['req_per_s']:7.1f}")

    def find(endpoint: str, how: str, clients: int, threads: str) -> dict:
        return next(r for r in rows if r["endpoint"] == endpoint and r["how"].startswith(how)
                    and r["clients"] == clients and r["torch_threads"] == threads)

    n = args.clients
    ratios = {}
    for ep, name in (("/embed", "embed"), ("/predict", "predict")):
        for threads, label in ((default_threads, "default_threads"), ("1", "1_thread")):
            ratios[f"{name}_goal_50ms_over_p95_{n}_clients_{label}"] = round(
                GOAL_P95_MS / find(ep, "HTTP", n, threads)["p95_ms"], 3)
    for ep, name in (("/embed", "embed"), ("/predict", "predict")):
        ratios[f"{name}_http_{n}_clients_1_thread_over_in_process_req_per_s"] = round(
            find(ep, "HTTP", n, "1")["req_per_s"] / find(ep, "in-process", 1, default_threads)["req_per_s"], 3)
    total_errors = sum(r["errors"] for r in rows)
    best = min(find("/embed", "HTTP", n, t)["p95_ms"] for t in (default_threads, "1"))
    print(f"errors: {total_errors} | goal: /embed p95 < {GOAL_P95_MS:.0f} ms with {n} clients: "
          f"{'met' if best < GOAL_P95_MS else 'NOT met'} (best p95 {best:.1f} ms)")
    for k, v in ratios.items():
        print(f"ratio {k}: {v}")

    if args.json:
        result = {"rows": rows, "ratios": ratios, "errors": total_errors, "goal": f"/embed p95 < {GOAL_P95_MS} ms "
                  f"with {args.clients} clients on CPU, zero errors", "checkpoint": checkpoint.name,
                  "profile": checkpoint.parent.name, "parameters": n_parameters,
                  "seconds_per_case": seconds, "quick": args.quick,
                  "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
                             f"torch {torch.__version__}",
                  "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 1 if total_errors else 0


if __name__ == "__main__":
    sys.exit(main())
