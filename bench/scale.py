"""The pipeline with a million stored orders: ``python -m bench.scale -N 1000000``.

Two systems, one after the other, each a fresh stack of bench.load's (new vhost, DATA_DIR and,
with DATABASE_URL, a new PostgreSQL database on that server):

- *empty*: nothing stored;
- *stored*: N settled orders, with their inbox rows and notices, and the backlog's PENDING
  orders after them, written into the services' tables before the stack starts
  (bench/preload.py), with every item in stock.

On each, in this order:

1. bench.load's run: C threads POST -n orders (closed loop), a poller follows their
   confirmations; POST latency, e2e/s and the usual checks (each order confirmed exactly once;
   the listings are read from after the stored rows).
2. Page reads: --reads rounds of one request of each kind, one after the other on one
   keep-alive connection: GET /orders?limit=100 (the first page), /orders?limit=100&cursor=
   <stored//2> (a page halfway down), /orders/<id> (a random stored order), /processed?limit=100.
3. Stored only, the backlog drain: inventory is stopped, the backlog's OrderPlaced messages
   (one per PENDING order) are published straight to the exchange (persistent, confirmed), and
   inventory started again. Drained/s = backlog / (order_placed_queue empty - its consumer
   attached); settled/s = backlog / (last notice seen - consumer attached); peak RSS of each
   process from the restart on. Then each backlog order must be CONFIRMED, processed once and
   notified once.

Prints a table and one JSON line, and writes both, as scale.json and the chart scale.png
(latency against stored orders), to --out. Exit status 1 when a check fails (the targets are
reported, not enforced: they are timings).
"""
import argparse
import json
import os
import random
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from bench.hop import passive_depth
from bench.keepalive import HTTP_ERRORS, KeepAlive
from bench.load import (
    STOCK, ConfirmationPoller, ProcessMonitor, WorkDir, add_run_options, check_listing,
    check_notifications, drive, fmt, get_json, ids_in, latency_ms, log, our_stack, rate, ratio,
    terminate,
)
from bench.preload import ITEMS, preload
from nameko_topology.batch import BatchPublisher
from nameko_topology.messages import outgoing
from nameko_topology.model import load_topology
from nameko_topology.testing.broker import wait_for
from scripts.stack import REPO_ROOT

PAGE = 100
PUBLISH_BATCH = 1000
QUEUE = "order_placed_queue"
READS = {  # kind -> what it is, for the table
    "orders_first_page": f"GET /orders?limit={PAGE}",
    "orders_deep_page": f"GET /orders?limit={PAGE}&cursor=<stored/2>",
    "order_by_id": "GET /orders/<id>",
    "processed_first_page": f"GET /processed?limit={PAGE}",
}
TARGETS = {"slowdown": 0.2, "read_p99_ms": 50, "rss_mb": 250}


# -- the systems ------------------------------------------------------------------------------

@contextmanager
def fresh_database(args):
    """The DATABASE_URL of one system: None for SQLite files in its DATA_DIR, else a new
    database on the PostgreSQL server that DATABASE_URL names, dropped afterwards unless
    --keep."""
    server = os.environ.get("DATABASE_URL")
    if not server:
        yield None
        return
    # imported here: psycopg2 is the optional extra `postgres`
    from nameko_topology.testing.postgres import TestDatabase
    database = TestDatabase(server, prefix="nt_scale").create()
    try:
        yield database.url
    finally:
        if not args.keep:
            database.drop()


def measure_system(args, work_dir, stored):
    """One system with `stored` orders preloaded (0: empty): its load record, page reads,
    backlog drain (stored only) and preload."""
    name = "stored" if stored else "empty"
    preloaded = None

    def fill(stack):
        nonlocal preloaded
        log(f"preloading {stored} orders and a backlog of {args.backlog}")
        preloaded = preload(stack.data_dir, stored, args.backlog,
                            server_url=stack.env.get("DATABASE_URL"), sample=args.reads)
        log(f"preloaded {sum(preloaded.rows.values())} rows in {preloaded.seconds} s "
            f"({preloaded.rows_per_s} rows/s)")

    with fresh_database(args) as database_url:
        env = {"INITIAL_STOCK": json.dumps({**dict.fromkeys(ITEMS, STOCK), args.item: STOCK})}
        if database_url:
            env["DATABASE_URL"] = database_url
        with our_stack(args, work_dir / name, env=env,
                       prepare=fill if stored else None) as target:
            if preloaded is not None:
                target.after = preloaded.after
            run, load = drive(target, args.concurrency, args)
            accepted = [load.order_ids[i] for i in load.accepted()]
            ids = preloaded.sample_ids if preloaded else random.sample(
                accepted, min(args.reads, len(accepted)))
            # the middle of what is stored: the settled orders, or this run's on an empty one
            reads = page_reads(target.stack.url, ids, (stored or len(accepted)) // 2, args)
            backlog = None
            if preloaded is not None and preloaded.backlog:
                backlog = drain(target, preloaded, set(accepted), args)
    return {"system": name, "stored_orders": stored, "run": run, "page_reads": reads,
            "backlog": backlog, "preload": None if preloaded is None else {
                "orders": preloaded.orders, "backlog_orders": len(preloaded.backlog),
                "rows": preloaded.rows, "seconds": preloaded.seconds,
                "rows_per_s": preloaded.rows_per_s}}


# -- page reads -------------------------------------------------------------------------------

def page_reads(url, ids, middle, args):
    """{kind: {latency_ms, requests, errors, rows_mean}}: --reads rounds of one request of each
    kind in READS, one at a time."""
    paths = {"orders_first_page": lambda: f"/orders?limit={PAGE}",
             "orders_deep_page": lambda: f"/orders?limit={PAGE}&cursor={middle}",
             "order_by_id": lambda: f"/orders/{random.choice(ids)}",
             "processed_first_page": lambda: f"/processed?limit={PAGE}"}
    seconds = {kind: [] for kind in paths}
    rows = {kind: 0 for kind in paths}
    errors = {kind: [] for kind in paths}
    client = KeepAlive(url, args.http_timeout)
    try:
        for _ in range(args.reads):
            for kind, path in paths.items():
                began = time.perf_counter()
                try:
                    status, data = client.request("GET", path())
                except HTTP_ERRORS as exc:
                    errors[kind].append(f"{type(exc).__name__}: {exc}")
                    continue
                elapsed = time.perf_counter() - began
                if status != 200:
                    errors[kind].append(f"HTTP {status}: {data[:200]!r}")
                    continue
                seconds[kind].append(elapsed)
                body = json.loads(data)
                rows[kind] += len(body) if isinstance(body, list) else 1
    finally:
        client.close()
    return {kind: {"path": READS[kind], "requests": args.reads,
                   "latency_ms": latency_ms(seconds[kind]), "errors": len(errors[kind]),
                   "error_samples": errors[kind][:3],
                   "rows_mean": round(rows[kind] / len(seconds[kind]), 1) if seconds[kind]
                   else None}
            for kind in paths}


# -- the backlog ------------------------------------------------------------------------------

def publish_backlog(amqp_uri, backlog):
    """Publish each order of `backlog` as its OrderPlaced, persistent and confirmed, as the
    orders service's outbox would; the seconds it took."""
    spec = load_topology(REPO_ROOT / "topology.yaml").message("OrderPlaced")
    publisher = BatchPublisher(amqp_uri)
    began = time.perf_counter()
    try:
        for start in range(0, len(backlog), PUBLISH_BATCH):
            batch = [outgoing(spec, {k: order[k] for k in ("order_id", "item", "quantity")},
                              correlation_id=order["correlation_id"])
                     for order in backlog[start:start + PUBLISH_BATCH]]
            outcome = publisher.publish(batch)
            if len(outcome.confirmed) != len(batch):
                raise RuntimeError(f"only {len(outcome.confirmed)} of {len(batch)} confirmed")
    finally:
        publisher.close()
    return time.perf_counter() - began


def drain(target, preloaded, earlier, args):
    """Stop inventory, queue the backlog, start inventory and time the drain; then check that
    each backlog order was handled exactly once (`earlier`: the ids of the run's own orders,
    which the listings hold too)."""
    stack, count = target.stack, len(preloaded.backlog)
    expected = {order["order_id"] for order in preloaded.backlog}
    stack.stop_service("inventory")
    log(f"inventory stopped; publishing {count} OrderPlaced")
    publish_s = publish_backlog(stack.amqp_uri, preloaded.backlog)
    wait_for(lambda: passive_depth(stack.amqp_uri, QUEUE) == count, 60,
             description=f"{count} messages in {QUEUE}")
    stack.start_service("inventory")
    monitor = ProcessMonitor(stack.pids())
    poller = ConfirmationPoller(stack.url, args.poll_interval, args.http_timeout,
                                cursor=preloaded.after["/notifications"])
    monitor.start()
    poller.start()
    try:
        # the depth drops once the new consumer is attached and fetching
        wait_for(lambda: passive_depth(stack.amqp_uri, QUEUE) < count, 120,
                 description="inventory's consumer")
        began = time.perf_counter()
        log(f"inventory is draining {count} messages")
        wait_for(lambda: passive_depth(stack.amqp_uri, QUEUE) == 0, args.drain_timeout,
                 interval=0.1, description=f"{QUEUE} to drain")
        drained = time.perf_counter()
        settled = poller.wait_for(expected, drained + args.timeout)
    finally:
        poller.stop()
        usage = monitor.stop()
    last_seen = max((poller.first_seen[i] for i in expected if i in poller.first_seen),
                    default=None)
    problems = [] if settled else [f"backlog: {len(expected - poller.notified)} of {count} "
                                   f"orders not notified {args.timeout}s after the drain"]
    problems += check_backlog(target, expected, earlier, args)
    return {"orders": count, "publish_s": round(publish_s, 2),
            "publish_per_s": rate(count, publish_s),
            "drain_s": round(drained - began, 2), "drained_per_s": rate(count, drained - began),
            "settle_s": None if last_seen is None else round(last_seen - began, 2),
            "settled_per_s": None if last_seen is None else rate(len(expected & poller.notified),
                                                                 last_seen - began),
            "processes": usage, "ok": not problems, "problems": problems}


def check_backlog(target, expected, earlier, args):
    """Each backlog order CONFIRMED in /orders, once in /processed, one confirmation."""
    after = target.after
    stored = {"/orders": f"/orders?cursor={after['/orders'] - len(expected)}",
              "/processed": f"/processed?cursor={after['/processed']}",
              "/notifications": f"/notifications?after={after['/notifications']}"}
    orders = get_json(target.stack.url, stored["/orders"], args.http_timeout)
    problems = check_listing("/orders", ids_in(orders), expected, earlier)
    unsettled = [o["order_id"] for o in orders
                 if o["order_id"] in expected and o["status"] != "CONFIRMED"]
    if unsettled:
        problems.append(f"/orders: {len(unsettled)} backlog order(s) not CONFIRMED, "
                        f"e.g. {unsettled[0]}")
    processed = get_json(target.stack.url, stored["/processed"], args.http_timeout)
    problems += check_listing("/processed", ids_in(processed), expected, earlier)
    notices = get_json(target.stack.url, stored["/notifications"], args.http_timeout)
    return problems + check_notifications(notices, expected, earlier)


# -- the report -------------------------------------------------------------------------------

def latencies(system):
    """kind -> {p50, p99} of one system's POSTs and page reads."""
    kinds = {"post": system["run"].get("post_latency_ms") or {}}
    kinds.update((kind, r["latency_ms"] or {}) for kind, r in system["page_reads"].items())
    return {kind: {p: lat.get(p) for p in ("p50", "p99")} for kind, lat in kinds.items()}


def assess(empty, stored):
    """The ratios stored/empty and each target: {name: {value, limit, met}}."""
    runs = empty["run"], stored["run"]
    post = [(r.get("post_latency_ms") or {}) for r in runs]
    ratios = {"post_p50": ratio(post[1].get("p50"), post[0].get("p50")),
              "post_p99": ratio(post[1].get("p99"), post[0].get("p99")),
              "e2e_per_s": ratio(runs[1].get("e2e_per_s"), runs[0].get("e2e_per_s"))}
    targets = {
        "post_p99_ratio": _target(ratios["post_p99"], 1 + TARGETS["slowdown"], "<="),
        "e2e_ratio": _target(ratios["e2e_per_s"], 1 - TARGETS["slowdown"], ">="),
    }
    for system in (empty, stored):
        for kind, reads in system["page_reads"].items():
            targets[f"{kind}_p99_ms_{system['system']}"] = _target(
                (reads["latency_ms"] or {}).get("p99"), TARGETS["read_p99_ms"], "<")
    backlog = stored["backlog"]
    if backlog is not None:
        targets["drained_over_e2e"] = _target(
            ratio(backlog["drained_per_s"], runs[1].get("e2e_per_s")), 1, ">=")
    for label, usage in (("run", runs[1]["processes"]),
                         ("drain", backlog["processes"] if backlog else {})):
        for name, u in (usage or {}).items():
            targets[f"{name}_peak_rss_mb_{label}"] = _target(u["peak_rss_mb"],
                                                             TARGETS["rss_mb"], "<=")
    return ratios, targets


def _target(value, limit, op):
    met = None if value is None else {"<": value < limit, "<=": value <= limit,
                                      ">=": value >= limit}[op]
    return {"value": value, "limit": f"{op} {limit}", "met": met}


def summarize(args, systems):
    """The JSON record of the whole bench: both systems, the ratios, the targets, the checks."""
    ratios, targets = assess(systems["empty"], systems["stored"])
    problems = [f"{name}: {problem}" for name, system in systems.items()
                for part in (system["run"], system["backlog"] or {})
                for problem in part.get("problems", [])]
    problems += [f"{name}: {kind}: {reads['errors']} failed request(s), e.g. "
                 f"{reads['error_samples'][0]}"
                 for name, system in systems.items()
                 for kind, reads in system["page_reads"].items() if reads["errors"]]
    return {"kind": "scale", "stored_orders": args.stored, "backlog": args.backlog,
            "orders": args.orders, "concurrency": args.concurrency, "reads": args.reads,
            "database": "postgresql" if os.environ.get("DATABASE_URL") else "sqlite",
            "systems": systems, "ratios": ratios, "targets": targets,
            "ok": not problems, "problems": problems}


def print_report(record):
    """The human table of `record` (the JSON line's content)."""
    empty, stored = record["systems"]["empty"], record["systems"]["stored"]
    n = stored["stored_orders"]
    pre = stored["preload"]
    print(f"\n== bench.scale: {n} stored orders vs empty, c={record['concurrency']}, "
          f"n={record['orders']} " + "=" * 20)
    print(f"preload       {sum(pre['rows'].values())} rows ({pre['orders']} orders, their "
          f"inbox rows and notices, {pre['backlog_orders']} PENDING) in {pre['seconds']} s "
          f"-> {pre['rows_per_s']} rows/s")
    print(f"\n{'':<44}{'empty':>10}{'stored':>10}{'ratio':>8}")
    rows = [("e2e/s", empty["run"].get("e2e_per_s"), stored["run"].get("e2e_per_s"))]
    lat = latencies(empty), latencies(stored)
    labels = {"post": "POST /order", **READS}
    for kind, label in labels.items():
        for p in ("p50", "p99"):
            rows.append((f"{label} {p} ms", lat[0][kind][p], lat[1][kind][p]))
    for label, a, b in rows:
        print(f"{label:<44}{fmt(a):>10}{fmt(b):>10}{fmt(ratio(b, a), '.2f'):>8}")
    backlog = stored["backlog"]
    if backlog:
        print(f"\nbacklog       {backlog['orders']} OrderPlaced published in "
              f"{backlog['publish_s']} s ({fmt(backlog['publish_per_s'])}/s); drained in "
              f"{backlog['drain_s']} s -> {fmt(backlog['drained_per_s'])} messages/s; all "
              f"notified in {fmt(backlog['settle_s'], '.2f')} s -> "
              f"{fmt(backlog['settled_per_s'])}/s")
    print(f"\n{'peak RSS MB':<16}{'empty run':>11}{'stored run':>12}{'drain':>8}")
    for name in stored["run"].get("processes") or {}:
        values = [(s.get("processes") or {}).get(name, {}).get("peak_rss_mb")
                  for s in (empty["run"], stored["run"], backlog or {})]
        print(f"{name:<16}{fmt(values[0]):>11}{fmt(values[1]):>12}{fmt(values[2]):>8}")
    print("\ntargets")
    for name, t in record["targets"].items():
        verdict = {True: "met", False: "MISSED", None: "-"}[t["met"]]
        print(f"  {name:<44}{fmt(t['value'], '.2f'):>10} {t['limit']:<8} {verdict}")
    print("checks: OK" if record["ok"] else "checks: MISMATCH")
    for problem in record["problems"]:
        print(f"  !! {problem}")


def chart(record, path):
    """A PNG of each request kind's p50 and p99 against the stored orders."""
    # imported here: matplotlib is the extra `bench`, and slow to import
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    systems = record["systems"]["empty"], record["systems"]["stored"]
    x = [s["stored_orders"] for s in systems]
    lat = [latencies(s) for s in systems]
    figure, axes = pyplot.subplots(figsize=(8, 5))
    for k, (kind, label) in enumerate({"post": "POST /order", **READS}.items()):
        color = f"C{k}"
        for p, style in (("p50", "-"), ("p99", "--")):
            y = [lat[i][kind][p] for i in range(2)]
            if None not in y:
                axes.plot(x, y, style, marker="o", color=color, label=f"{label} {p}")
    axes.axhline(TARGETS["read_p99_ms"], color="grey", linestyle=":",
                 label=f"page read target: p99 < {TARGETS['read_p99_ms']} ms")
    axes.set_xlabel("stored orders")
    axes.set_ylabel("latency (ms)")
    axes.set_yscale("log")
    axes.set_xticks(x, [f"{v:,}" for v in x])
    axes.set_title(f"bench.scale: latency against stored orders "
                   f"(c={record['concurrency']}, n={record['orders']})")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    figure.savefig(path, dpi=100, bbox_inches="tight")
    pyplot.close(figure)


# -- command line -----------------------------------------------------------------------------

def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(ap, orders=5000)
    ap.add_argument("-N", "--stored", type=int, default=1_000_000,
                    help="settled orders stored before the stack starts (1000000)")
    ap.add_argument("--backlog", type=int, default=100_000,
                    help="orders queued while inventory is stopped (100000; 0: no drain)")
    ap.add_argument("-c", "--concurrency", type=int, default=32, help="POST threads (32)")
    ap.add_argument("--reads", type=int, default=200, help="requests of each page read (200)")
    ap.add_argument("--drain-timeout", type=float, default=1800.0,
                    help="seconds the backlog may take to drain (1800)")
    # the first system of an invocation has run slower (a cold broker and page cache): this
    # shows how much of a difference is that
    ap.add_argument("--stored-first", action="store_true",
                    help="measure the stored system before the empty one")
    ap.add_argument("--out", type=Path, default=Path("."),
                    help="directory of scale.json and scale.png (the current one)")
    args = ap.parse_args(argv)
    if min(args.orders, args.stored, args.concurrency, args.reads) < 1 or args.backlog < 0:
        ap.error("-n, -N, -c and --reads must be at least 1, --backlog at least 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, terminate)
    with WorkDir("nt-scale-", args.keep) as work:
        order = [("empty", 0), ("stored", args.stored)]
        if args.stored_first:
            order.reverse()
        systems = {name: measure_system(args, work.path, stored) for name, stored in order}
        record = summarize(args, systems)
        work.ok = record["ok"]
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "scale.json").write_text(json.dumps(record) + "\n")
        chart(record, args.out / "scale.png")
        if not args.json_only:
            print_report(record)
            print(f"(written: {args.out / 'scale.json'}, {args.out / 'scale.png'})")
        print(json.dumps(record), flush=True)
    return work.exit_status()


if __name__ == "__main__":
    sys.exit(main())
