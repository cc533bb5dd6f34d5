"""Benchmark: chapter 9's server under load on the loopback: /health, deadlines, 429s, /embed, batched /generate.

The server is the real thing: `uvicorn dsmini_helpers.api:app` with chapter 9's transport limits, in a subprocess on
127.0.0.1, serving a chapter-7 checkpoint (default: the `ci` one), with DSMINI_TORCH_THREADS=1 (on 2 cores, one for
the model and one for HTTP and the clients). Two servers side by side: batching on (the chapter's lanes) and
batching off (DSMINI_MAX_BATCH_ITEMS=1, every request its own forward passes). Cases, each for a fixed time after a
warm-up, every client loop bounded in requests and time:
- 8 clients: /embed (batching on), /generate (16 new tokens, greedy) on both servers;
- 100 mixed clients on the batching server: 60 ask /generate with a 5 s deadline (X-Request-Timeout), more than
  its queue holds, so some are refused with 429 (and pause 0.25 s); 10 /predict, 10 /embed and 5 /summarize back
  to back; 15 probe /health every 50 ms. Three client processes (/generate; /health; the rest), so that no
  client's measured time includes waiting for the GIL behind another group's threads.
The clients use the standard library's `http.client` with keep-alive (the lightest Python client: on 2 cores every
cycle a client spends is taken from the server). Figures are noisy when other work shares the machine, and the
tail (p99) varies from run to run even on a quiet one.

Goals on CPU (issue 18): /health p99 < 50 ms under the mixed load; no accepted request answered after its deadline;
429s within 50 ms; /embed p95 < 50 ms at 8 clients; /generate throughput with batching >= 3x "today's" at 8 clients,
where today's is the server as it was when the issue was filed (--before-ref 4e06ca2). The same server with batching
off is measured too: its ratio is the share of the gain that batching alone brings. /generate batches continuously
(a request joins the running generations at the next step); --static-ref runs the package as of a commit whose
/generate lane still batched statically (388337a), to measure what continuous batching adds.

    python benchmarks/bench_api.py                 # full size (about two minutes)
    python benchmarks/bench_api.py --quick         # seconds (for the tests)
    python benchmarks/bench_api.py --before-ref 4e06ca2 --static-ref 388337a \
        --json benchmarks/results/bench_api_load.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import write_json  # noqa: E402

GOAL_MS = 50.0
DEADLINE_SLACK_S = 0.1  # HTTP and client scheduling on top of the server's deadline
MAX_REQUESTS_PER_CLIENT = 10_000
RETRY_PAUSE_S = 0.25  # a client pauses after a 429 (a polite one would wait Retry-After; this keeps the pressure on)
HEALTH_EVERY_S = 0.05  # the /health clients probe every 50 ms, as a (very eager) load balancer would


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between order statistics (nan if empty)."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


class Client:
    """One keep-alive connection; `call` returns (status, ms), status 0 for a transport error."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        self.host, port = url.removeprefix("http://").split(":")
        self.port, self.timeout = int(port), timeout
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def call(self, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, float]:
        t0 = time.perf_counter()
        try:
            self.conn.request(method, path, body=body, headers=headers)
            r = self.conn.getresponse()
            r.read()
            status = r.status
            if r.getheader("connection", "").lower() == "close":
                self.reconnect()
        except (OSError, http.client.HTTPException):
            status = 0
            self.reconnect()
        return status, (time.perf_counter() - t0) * 1000

    def reconnect(self) -> None:
        self.conn.close()
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)


def run_clients(url: str, plans: list[tuple], seconds: float, warmup: int,
                on_start: Callable[[], None] = lambda: None) -> list[list[tuple]]:
    """One thread per plan (method, path, body, headers, pause_s); all start together after their warm-up and send
    for `seconds` (and at most MAX_REQUESTS_PER_CLIENT), pausing `pause_s` after each answer and RETRY_PAUSE_S
    after a 429. Per client: [(status, ms), ...]."""
    clock: dict[str, float] = {}
    def release() -> None:  # once, when every client has warmed up
        clock["stop"] = time.perf_counter() + seconds
        on_start()

    start = threading.Barrier(len(plans) + 1, action=release)
    results: list[list[tuple]] = [[] for _ in plans]

    def worker(i: int) -> None:
        method, path, body, headers, pause_s = plans[i]
        payload = json.dumps(body).encode() if body is not None else None
        hdrs = {"content-type": "application/json", **headers} if payload else dict(headers)
        client = Client(url)
        for _ in range(warmup):
            client.call(method, path, payload, hdrs)
        start.wait()
        client.reconnect()  # the warm-up connection may have idled past the keep-alive timeout
        mine = results[i]
        while time.perf_counter() < clock["stop"] and len(mine) < MAX_REQUESTS_PER_CLIENT:
            mine.append(client.call(method, path, payload, hdrs))
            time.sleep(RETRY_PAUSE_S if mine[-1][0] == 429 else pause_s)
        client.conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(plans))]
    for t in threads:
        t.start()
    start.wait()
    for t in threads:
        t.join()
    return results


def summarize(case: str, server: str, endpoint: str, clients: int, calls: list[tuple], seconds: float,
              deadline_s: float | None = None) -> dict:
    ok = [ms for status, ms in calls if status == 200]
    refused = [ms for status, ms in calls if status == 429]
    late = [ms for status, ms in calls if status == 504]
    accepted = [ms for status, ms in calls if status in (200, 504)]
    row = {"case": case, "server": server, "endpoint": endpoint, "clients": clients, "requests": len(calls),
           "ok": len(ok), "status_429": len(refused), "status_504": len(late),
           "errors": sum(1 for status, _ in calls if status not in (200, 429, 504)),
           "p50_ms": round(percentile(ok, 50), 2), "p95_ms": round(percentile(ok, 95), 2),
           "p99_ms": round(percentile(ok, 99), 2), "req_per_s": round(len(ok) / seconds, 2),
           "p99_429_ms": round(percentile(refused, 99), 2)}
    if deadline_s is not None:
        row["deadline_s"] = deadline_s
        row["over_deadline"] = sum(1 for ms in accepted if ms > (deadline_s + DEADLINE_SLACK_S) * 1000)
        row["accepted"] = len(accepted)
    return row


HEALTH_PLAN = ("GET", "/health", None, {}, HEALTH_EVERY_S)


def run_group(url: str, seconds: float, warmup: int) -> None:
    """--group mode: the plans given as JSON on stdin, for `seconds`; prints [[[status, ms], ...], ...] as JSON."""
    plans = [tuple(p) for p in json.loads(sys.stdin.read())]
    print(json.dumps(run_clients(url, plans, seconds, warmup)))


def start_group(url: str, plans: list[tuple], seconds: float, warmup: int) -> subprocess.Popen:
    """A group of clients in a process of its own, as separate clients would be: the GIL of the other groups'
    threads does not delay their reading of an answer."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--group", url, "--seconds", str(seconds),
           "--warmup", str(warmup)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    proc.stdin.write(json.dumps(plans))
    proc.stdin.close()
    return proc


def run_mixed(url: str, mixed: list[tuple[str, tuple]], seconds: float, warmup: int) -> dict[str, list[tuple]]:
    """The mixed case: the /generate clients here; once they have warmed up, the /health probers and the other
    endpoints' clients each in a process of their own (for 90 % of the time). Calls by endpoint."""
    groups = [[(e, plan) for e, plan in mixed if e == "/health"],
              [(e, plan) for e, plan in mixed if e not in ("/generate", "/health")]]
    groups = [g for g in groups if g]  # a small --clients may leave one empty
    here = [(e, plan) for e, plan in mixed if e == "/generate"]
    procs: list[subprocess.Popen] = []

    def start() -> None:
        procs.extend(start_group(url, [plan for _, plan in g], seconds * 0.9, warmup) for g in groups)

    calls = run_clients(url, [plan for _, plan in here], seconds, warmup, on_start=start)
    for group, proc in zip(groups, procs):
        calls += json.loads(proc.stdout.read())
        proc.wait(timeout=60)
        here += group
    by_endpoint: dict[str, list[tuple]] = {}
    for (endpoint, _), mine in zip(here, calls):
        by_endpoint.setdefault(endpoint, []).extend(tuple(c) for c in mine)
    return by_endpoint


def mixed_plans(n: int, text: str, masked: str, deadline_s: float, new_tokens: int) -> list[tuple[str, tuple]]:
    """(endpoint, plan) for n clients in the proportions 60/10/10/5/15 (generate/predict/embed/summarize/health);
    run_mixed gives each group of clients its process."""
    timeout = {"X-Request-Timeout": str(deadline_s)}
    generate = {"prompt": text[:60], "max_new_tokens": new_tokens}
    kinds = [("/generate", ("POST", "/generate", generate, timeout, 0.0))] * 60
    kinds += [("/predict", ("POST", "/predict", {"text": masked}, timeout, 0.0))] * 10
    kinds += [("/embed", ("POST", "/embed", {"texts": [text]}, timeout, 0.0))] * 10
    kinds += [("/summarize", ("POST", "/summarize", {"text": (text + ". ") * 3}, timeout, 0.0))] * 5
    kinds += [("/health", HEALTH_PLAN)] * 15
    return [kinds[(i * 100) // n] for i in range(n)]


def before_server(ref: str) -> tuple[str, dict, str]:
    """(name, env, app) for the server of `git show <ref>:dsmini_helpers/api.py`, run from a temporary folder."""
    source = subprocess.run(["git", "show", f"{ref}:dsmini_helpers/api.py"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout
    folder = Path(tempfile.mkdtemp(prefix="dsmini-before-"))
    (folder / "dsmini_before_api.py").write_text(source, encoding="utf-8")
    return f"before ({ref[:7]})", {"PYTHONPATH": path_first(folder)}, "dsmini_before_api:app"


def static_server(ref: str) -> tuple[str, dict, str]:
    """(name, env, app) for the whole package as of `ref` (`git archive`), first on the server's PYTHONPATH."""
    folder = Path(tempfile.mkdtemp(prefix="dsmini-static-"))
    archive = subprocess.run(["git", "archive", ref, "dsmini_helpers"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return f"static ({ref[:7]})", {"PYTHONPATH": path_first(folder)}, "dsmini_helpers.api:app"


def path_first(folder: Path) -> str:
    """A PYTHONPATH with `folder` first, then the repository and the caller's own."""
    return os.pathsep.join(p for p in (str(folder), str(ROOT), os.environ.get("PYTHONPATH", "")) if p)


def make_inputs(checkpoint: Path, n_tokens: int = 48) -> tuple[str, str]:
    """A validation-corpus text of `n_tokens` tokens, and the same with its middle token as [MASK]."""
    from dsmini_helpers.data import load_texts
    from dsmini_helpers.inference import Model

    model = Model.load(checkpoint, device="cpu")
    ids: list[int] = []
    for doc in load_texts("valid"):
        ids += model.tokens(doc)
        if len(ids) >= 4 * n_tokens:
            break
    ids = ids[:n_tokens]
    half = n_tokens // 2
    return model.decode(ids), model.decode(ids[:half]) + "[MASK]" + model.decode(ids[half + 1:])


def print_table(rows: list[dict]) -> None:
    print("latency of answered requests (ms), answers per second, and how many got 429 / 504 / errors")
    print(f"{'case':18s} {'server':17s} {'endpoint':10s} {'clients':>7s} {'requests':>8s} {'p50 ms':>7s} "
          f"{'p95 ms':>7s} {'p99 ms':>7s} {'req/s':>7s} {'429':>5s} {'429 p99':>7s} {'504':>4s} {'errors':>6s}")
    for r in rows:
        print(f"{r['case']:18s} {r['server']:17s} {r['endpoint']:10s} {r['clients']:7d} {r['requests']:8d} "
              f"{r['p50_ms']:7.1f} {r['p95_ms']:7.1f} {r['p99_ms']:7.1f} {r['req_per_s']:7.1f} "
              f"{r['status_429']:5d} {r['p99_429_ms']:7.1f} {r['status_504']:4d} {r['errors']:6d}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a second per case, 20 mixed clients (for the tests)")
    parser.add_argument("--json", type=Path, help="write rows and ratios to this file")
    parser.add_argument("--checkpoint", help="checkpoint folder (default: chapter 7's `ci` checkpoint)")
    parser.add_argument("--clients", type=int, default=None, help="mixed clients (default 100; 20 with --quick)")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per case (default 15)")
    parser.add_argument("--static-ref", help="also run /generate with 8 clients on the package as of this git commit, "
                                             "whose /generate lane batched statically (388337a)")
    parser.add_argument("--before-ref", help="also run /generate with 8 clients on chapter 9's server as of this git "
                                             "commit (its dsmini_helpers/api.py), e.g. the commit before issue 18")
    parser.add_argument("--group", metavar="URL", help=argparse.SUPPRESS)  # a client group's own process
    parser.add_argument("--warmup", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.group:
        run_group(args.group, args.seconds, args.warmup)
        return 0
    seconds = args.seconds or (1.0 if args.quick else 15.0)
    mixed_n = args.clients or (20 if args.quick else 100)
    warmup = 1 if args.quick else 3
    deadline_s = 5.0
    new_tokens = 4 if args.quick else 16

    import torch

    from dsmini_helpers.runs import get_checkpoint
    from dsmini_helpers.server_transport import running_server

    checkpoint = Path(args.checkpoint) if args.checkpoint else get_checkpoint("ci")
    text, masked = make_inputs(checkpoint)
    print(f"checkpoint {checkpoint} | {seconds:.0f} s per case, {mixed_n} mixed clients, /generate "
          f"{new_tokens} new tokens | torch {torch.__version__}, DSMINI_TORCH_THREADS=1")
    generate = ("POST", "/generate", {"prompt": text[:60], "max_new_tokens": new_tokens}, {}, 0.0)
    embed = ("POST", "/embed", {"texts": [text]}, {}, 0.0)
    rows = []
    servers = [("batching on", {}, "dsmini_helpers.api:app"),
               ("batching off", {"DSMINI_MAX_BATCH_ITEMS": "1"}, "dsmini_helpers.api:app")]
    if args.static_ref:
        servers.append(static_server(args.static_ref))
    if args.before_ref:
        servers.append(before_server(args.before_ref))
    for server, env, app in servers:
        with running_server(checkpoint, env={"DSMINI_TORCH_THREADS": "1", **env}, app=app) as url:
            plans = [("/generate", generate)] + ([("/embed", embed)] if server == "batching on" else [])
            for endpoint, plan in plans:
                calls = run_clients(url, [plan] * 8, seconds, warmup)
                rows.append(summarize("8 clients", server, endpoint, 8, sum(calls, []), seconds))
            if server == "batching on":
                mixed = mixed_plans(mixed_n, text, masked, deadline_s, new_tokens)
                by_endpoint = run_mixed(url, mixed, seconds, warmup)
                for endpoint, mine in by_endpoint.items():
                    n = sum(1 for e, _ in mixed if e == endpoint)
                    rows.append(summarize(f"{mixed_n} mixed clients", server, endpoint, n, mine, seconds,
                                          None if endpoint == "/health" else deadline_s))
    print_table(rows)

    def find(case: str, server: str, endpoint: str) -> dict:
        return next(r for r in rows if r["case"] == case and r["server"] == server and r["endpoint"] == endpoint)

    mixed_rows = [r for r in rows if r["case"].endswith("mixed clients")]
    accepted = sum(r.get("accepted", 0) for r in mixed_rows)
    over = sum(r.get("over_deadline", 0) for r in mixed_rows)
    refusals = [r["p99_429_ms"] for r in mixed_rows if r["status_429"]]
    health = find(f"{mixed_n} mixed clients", "batching on", "/health")
    on, off = (find("8 clients", s, "/generate") for s in ("batching on", "batching off"))
    ratios = {
        "health_goal_50ms_over_p99_mixed": round(GOAL_MS / health["p99_ms"], 3),
        "deadline_compliance": round(1 - over / accepted, 4) if accepted else None,
        "overload_goal_50ms_over_429_p99": round(GOAL_MS / max(refusals), 3) if refusals else None,
        "embed_goal_50ms_over_p95_8_clients": round(GOAL_MS / find("8 clients", "batching on", "/embed")["p95_ms"],
                                                    3),
        "generate_batched_over_unbatched_req_per_s": round(on["req_per_s"] / off["req_per_s"], 3),
    }
    if args.static_ref:
        static = find("8 clients", f"static ({args.static_ref[:7]})", "/generate")
        ratios["generate_continuous_over_static_req_per_s"] = round(on["req_per_s"] / static["req_per_s"], 3)
    if args.before_ref:
        before = find("8 clients", f"before ({args.before_ref[:7]})", "/generate")
        ratios["generate_batched_over_before_req_per_s"] = round(on["req_per_s"] / before["req_per_s"], 3)
    errors = sum(r["errors"] for r in rows)
    print(f"errors: {errors} | accepted mixed requests: {accepted}, answered after deadline + "
          f"{DEADLINE_SLACK_S * 1000:.0f} ms: {over} | 429s: {sum(r['status_429'] for r in mixed_rows)}")
    for k, v in ratios.items():
        print(f"ratio {k}: {'n/a (none happened)' if v is None else v}")
    if args.json:
        write_json(args.json, {
            "rows": rows, "ratios": ratios, "errors": errors, "seconds_per_case": seconds, "quick": args.quick,
            "mixed_clients": mixed_n, "checkpoint": checkpoint.name, "profile": checkpoint.parent.name,
            "goals": "health p99 < 50 ms; deadlines kept; 429 p99 < 50 ms; embed p95 < 50 ms at 8 clients; "
                     "generate batched >= 3x the server before issue 18 (--before-ref) req/s at 8 clients",
            "machine": f"{platform.machine()}, torch {torch.__version__}, DSMINI_TORCH_THREADS=1",
            "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])})
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
