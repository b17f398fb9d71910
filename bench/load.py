"""Load benchmark of the order pipeline: ``python -m bench.load -n 2000 -c 1 8 32``.

One *run* = one system at one concurrency level C, on a fresh instance of that system (our
stack: the three nameko services and the gateway, in a new broker vhost with a new DATA_DIR;
with --compare-reference also the reference design, in a vhost of its own):

1. C worker threads, each with one persistent HTTP/1.1 connection (bench/keepalive.py),
   POST {"item": ITEM, "quantity": 1} to /order as fast as the answers come back (closed
   loop), N orders in all.
2. From the first POST on, a poller GETs /notifications every --poll-interval seconds and
   records for each order id when its confirmation was first seen.
3. The measurement ends when every accepted order was seen confirmed, or --timeout seconds
   after the last POST answer. Then the run is checked (below).

Definitions (every time is read from one monotonic clock in this process)
--------------------------------------------------------------------------
accepted/s    accepted POSTs (2xx with an order_id) / (last POST answer - first POST sent)
e2e/s         confirmed orders / (last confirmation seen - first POST sent). A confirmation
              counts as seen when the poll response that holds it has arrived, i.e. up to one
              poll interval (plus the GET) late: e2e/s slightly understates the system.
POST latency  round trip of each accepted POST, from sending to the end of the answer;
              p50/p95/p99 interpolate linearly between the closest ranks; max.
e2e latency   per order: first seen confirmed - its POST sent (same resolution as e2e/s).
cpu s         user+system CPU seconds a process (with its child processes: the gateway's
              server runs the app in one) used from just before the first POST to the
              end of the measurement (/proc/<pid>/stat; start-up and the checks excluded).
peak RSS MB   max of the resident set size sampled every 100 ms over the same window
              (/proc/<pid>/statm). The JSON also has rss_hwm_mb, the kernel's high-water mark
              (VmHWM), which includes start-up.

The poller's GETs are load on both systems. Where notices carry an integer id (ours) it
asks only for newer ones (?after=<id>); the reference's have none and are read in full each
time. The driver runs on the same machine and competes for CPU (JSON: driver_cpu_s).

Checks (any failure is printed as MISMATCH and makes the exit status 1)
-----------------------------------------------------------------------
accepted == N; the answers name N distinct order ids; /notifications has exactly one
confirmation for each and no other entry (no failure notice, no unknown order id);
/processed and /orders list each exactly once and nothing unknown; with our stack every
order reaches CONFIRMED in /orders (PENDING ones are waited for, up to --timeout). Entries
that were already there before the run (--url) are left out of the checks.
"""
import argparse
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from bench.keepalive import HTTP_ERRORS, KeepAlive
from scripts.stack import REPO_ROOT, Stack, tail
from nameko_topology.constants import DEFAULT_AMQP_URI
from nameko_topology.testing.broker import create_vhost, delete_vhost

STOCK = 100_000_000  # INITIAL_STOCK of --item: no order may fail for want of stock
DEFAULT_REFERENCE_DIR = REPO_ROOT.parent / "shared" / "reference"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
REFERENCE_PROCESSES = ("order", "inventory", "notification")  # its run.sh's names


def log(message):
    """Progress goes to stderr, so that stdout holds only the tables and the JSON lines."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- HTTP ------------------------------------------------------------------------------------

def get_json(base_url, path, timeout):
    """GET base_url+path on a connection of its own; the parsed JSON of a 200, else an error."""
    client = KeepAlive(base_url, timeout)
    try:
        status, data = client.request("GET", path)
    finally:
        client.close()
    if status != 200:
        raise RuntimeError(f"GET {base_url}{path} -> HTTP {status}: {data[:200]!r}")
    return json.loads(data)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- process metrics (Linux /proc) -----------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024


def process_tree(pid):
    """`pid` and its descendants: a server may run its work in child processes (the gateway's
    Granian runs the app in a worker process), and all of it is the process's cost."""
    pids, i = [pid], 0
    while i < len(pids):
        for task in os.listdir(f"/proc/{pids[i]}/task"):
            try:
                with open(f"/proc/{pids[i]}/task/{task}/children") as f:
                    pids.extend(int(child) for child in f.read().split())
            except OSError:  # the thread or the child is gone
                pass
        i += 1
    return pids


def _tree_sum(members, read_one):
    """read_one(pid) added up over `members` (a process and its descendants, the process
    first); a descendant that exited meanwhile counts 0, the process itself raises."""
    total = 0
    for member in members:
        try:
            total += read_one(member)
        except OSError:
            if member == members[0]:
                raise  # the process itself is gone
    return total


def cpu_seconds(members):
    """user + system CPU seconds of every thread of `members` so far."""
    def one(member):
        with open(f"/proc/{member}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)": field 3 is [0]
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    return _tree_sum(members, one)


def rss_bytes(members):
    """Resident set size of `members`, added up."""
    def one(member):
        with open(f"/proc/{member}/statm") as f:
            return int(f.read().split()[1]) * PAGE_SIZE
    return _tree_sum(members, one)


def rss_high_water_mb(members):
    """The kernel's RSS high-water marks (VmHWM) of `members`, added up."""
    def one(member):
        with open(f"/proc/{member}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
        return 0
    return _tree_sum(members, one)


class ProcessMonitor:
    """CPU used and peak RSS of named processes between start() and stop(); RSS is sampled
    every `interval` seconds in a thread of its own."""

    def __init__(self, pids, interval=0.1):
        self.pids = dict(pids)
        self.interval = interval
        self._cpu_start, self._cpu_last, self._peak_rss, self._hwm = {}, {}, {}, {}
        self.exited = set()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self):
        for name, pid in self.pids.items():
            try:
                self._cpu_start[name] = cpu_seconds(process_tree(pid))
            except OSError:
                self.exited.add(name)
        self._sample()
        self._thread.start()

    def _run(self):
        while not self._stopping.wait(self.interval):
            self._sample()

    def _sample(self):
        for name, pid in self.pids.items():
            if name in self.exited:
                continue
            try:
                members = process_tree(pid)  # once a sample: it reads a file per thread
                rss = rss_bytes(members)
                self._cpu_last[name] = cpu_seconds(members)
                self._hwm[name] = rss_high_water_mb(members)
            except OSError:  # it exited: keep what was read last
                self.exited.add(name)
                continue
            self._peak_rss[name] = max(rss, self._peak_rss.get(name, 0))

    def stop(self):
        """{name: {pid, cpu_s, peak_rss_mb, rss_hwm_mb, exited}} over the window."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._sample()
        usage = {}
        for name, pid in self.pids.items():
            cpu = None
            if name in self._cpu_start and name in self._cpu_last:
                cpu = round(self._cpu_last[name] - self._cpu_start[name], 2)
            peak = self._peak_rss.get(name)
            hwm = self._hwm.get(name)
            usage[name] = {"pid": pid, "cpu_s": cpu,
                           "peak_rss_mb": None if peak is None else round(peak / MB, 1),
                           "rss_hwm_mb": None if hwm is None else round(hwm, 1),
                           "exited": name in self.exited}
        return usage


# -- the systems under test ------------------------------------------------------------------

@dataclass
class Target:
    """Where a running system answers, and what it is."""
    system: str                 # "ours" or "reference"
    orders_url: str             # POST /order, GET /orders
    notifications_url: str      # GET /notifications
    inventory_url: str          # GET /processed
    pids: dict = field(default_factory=dict)   # name -> pid; empty: no process metrics
    final_status: str = None    # the status every order reaches in /orders; None: not checked
    logs: str = ""              # where its logs are, for messages
    stack: Stack = None         # ours when we started it: its services can be stopped, restarted
    #: route -> the page key (cursor) of the last row that listing held before the run, on a
    #: database preloaded with more rows than a run should fetch: its listings start after it
    after: dict = field(default_factory=dict)

    def listing(self, route):
        """The path that lists `route` (/orders, /processed, /notifications) from `after` on."""
        if route not in self.after:
            return route
        return f"{route}?{LISTING_CURSORS.get(route, 'cursor')}={self.after[route]}"


LISTING_CURSORS = {"/notifications": "after"}  # the query parameter each listing starts at


@contextmanager
def our_stack(args, run_dir, env=None, prepare=None):
    """Our services and gateway in a new vhost and DATA_DIR; stopped (and the vhost deleted
    unless --keep) on the way out. `env` adds to the services' environment; `prepare(stack)`,
    if given, runs before the stack starts (to fill its database, say)."""
    vhost = f"nt_bench_{uuid.uuid4().hex[:10]}"
    stack = None
    try:
        amqp_uri = create_vhost(args.amqp_uri, vhost)
        stack = Stack(amqp_uri, run_dir / "data",
                      env={"INITIAL_STOCK": json.dumps({args.item: STOCK}), **(env or {})})
        if prepare is not None:
            prepare(stack)
        log(f"starting our stack (vhost {vhost}, data {stack.data_dir})")
        stack.start(timeout=90)
        yield Target("ours", stack.url, stack.url, stack.url, pids=stack.pids(),
                     final_status="CONFIRMED", logs=str(stack.log_dir), stack=stack)
    finally:
        if stack is not None:
            stack.stop()
        drop_vhost(args, vhost)


@contextmanager
def running_gateway(url):
    """A gateway someone else runs (--url): nothing to start or stop, no process metrics."""
    yield Target("ours", url, url, url, final_status="CONFIRMED", logs="(not ours: --url)")


def drop_vhost(args, vhost):
    """Delete a vhost of ours unless --keep; a failure is reported, not raised."""
    if args.keep:
        return
    try:
        delete_vhost(args.amqp_uri, vhost)
    except Exception as exc:
        log(f"could not delete vhost {vhost}: {exc}")


def copy_reference(src, dst):
    """A writable copy of the reference's files (run.sh writes run/ and logs/ beside itself)."""
    dst.mkdir(parents=True)
    for path in Path(src).iterdir():
        if path.is_file():
            shutil.copyfile(path, dst / path.name)
            os.chmod(dst / path.name, 0o755 if os.access(path, os.X_OK) else 0o644)
    return dst


def reference_env(args, python, vhost, ports):
    u = urlsplit(args.amqp_uri)
    env = dict(os.environ, PYTHON=python, RABBITMQ_VHOST=vhost,
               RABBITMQ_HOST=u.hostname or "127.0.0.1", RABBITMQ_PORT=str(u.port or 5672),
               RABBITMQ_USER=unquote(u.username or "guest"),
               RABBITMQ_PASSWORD=unquote(u.password or "guest"),
               INITIAL_STOCK=json.dumps({args.item: STOCK}),
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
               **{f"{name.upper()}_PORT": str(port) for name, port in ports.items()})
    env.setdefault("QUIET_HTTP", "1")  # no werkzeug line per request; our gateway logs none
    return env


def run_script(script, env, timeout):
    """Run one of the reference's scripts; (returncode, its output)."""
    out_path = script.with_suffix(".out")
    with open(out_path, "wb") as out:  # a file, not a pipe the services could inherit
        try:
            code = subprocess.run(["bash", str(script)], cwd=script.parent, env=env,
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout, start_new_session=True).returncode
        except subprocess.TimeoutExpired:
            code = f"timeout after {timeout}s"
    return code, out_path.read_text(errors="replace")


def reference_pids(home):
    pids = {}
    for name in REFERENCE_PROCESSES:
        try:
            pids[name] = int((home / "run" / f"{name}.pid").read_text())
        except (OSError, ValueError):
            pass
    return pids


def kill_leftovers(pids):
    """SIGKILL any reference process stop.sh left alive (by pid, ours only)."""
    for name, pid in pids.items():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f"{name}_service.py".encode() not in f.read():
                    continue  # gone, and the pid reused by something else
            os.kill(pid, signal.SIGKILL)
            log(f"reference {name} (pid {pid}) survived stop.sh: killed")
        except OSError:
            pass


@contextmanager
def reference_system(args, python, run_dir):
    """The reference design from a copy of its directory, in a new vhost, on free ports;
    stopped with its stop.sh (and the vhost deleted unless --keep) on the way out."""
    home = copy_reference(args.reference_dir, run_dir / "reference")
    vhost = f"nt_bench_ref_{uuid.uuid4().hex[:10]}"
    ports = {name: free_port() for name in REFERENCE_PROCESSES}
    env = reference_env(args, python, vhost, ports)
    pids = {}
    try:
        create_vhost(args.amqp_uri, vhost)
        log(f"starting the reference (vhost {vhost}, ports {ports}, in {home})")
        code, output = run_script(home / "run.sh", env, timeout=120)
        pids = reference_pids(home)
        if code != 0:
            logs = "\n".join(f"--- {home}/logs/{n}.log:\n{tail(home / 'logs' / f'{n}.log', 15)}"
                             for n in REFERENCE_PROCESSES)
            raise RuntimeError(f"reference run.sh failed ({code}):\n{output}\n{logs}")
        url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        yield Target("reference", url["order"], url["notification"], url["inventory"],
                     pids=pids, logs=str(home / "logs"))
    finally:
        code, output = run_script(home / "stop.sh", env, timeout=60)
        if code != 0:
            log(f"reference stop.sh failed ({code}): {output}")
        kill_leftovers(pids or reference_pids(home))
        drop_vhost(args, vhost)


def reference_python(args, work_dir):
    """--reference-python, else a throwaway venv with flask and pika under the work dir."""
    python = args.reference_python
    if python is None:
        venv = work_dir / "reference-venv"
        log(f"creating a venv with flask and pika for the reference: {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        python = str(venv / "bin" / "python")
        subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "flask", "pika"], check=True, timeout=600)
    probe = subprocess.run([python, "-c", "import flask, pika"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise SystemExit(f"--reference-python {python} cannot import flask and pika:\n"
                         f"{probe.stderr}")
    return python


# -- the load ---------------------------------------------------------------------------------

class Load:
    """The POST side: n orders from `concurrency` threads, each on its own keep-alive
    connection, each sending its next order as soon as its last one is answered."""

    def __init__(self, url, n, concurrency, item, http_timeout):
        self.url, self.n, self.concurrency, self.http_timeout = url, n, concurrency, http_timeout
        self.body = json.dumps({"item": item, "quantity": 1}).encode()
        self.sent = [None] * n        # perf_counter() when POST i was sent
        self.answered = [None] * n    # ... when its answer (or error) was complete
        self.order_ids = [None] * n   # order id of an accepted POST, else None
        self.errors = []
        self.connects = 0
        self._next = iter(range(n))
        self._lock = threading.Lock()

    def run(self):
        workers = [threading.Thread(target=self._worker, name=f"post-{k}", daemon=True)
                   for k in range(self.concurrency)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    def _take(self):
        with self._lock:
            return next(self._next, None)

    def _worker(self):
        client = KeepAlive(self.url, self.http_timeout)
        try:
            while (i := self._take()) is not None:
                self._post(client, i)
        finally:
            client.close()
            with self._lock:
                self.connects += client.connects

    def _post(self, client, i):
        self.sent[i] = time.perf_counter()
        try:
            status, data = client.request("POST", "/order", self.body)
        except HTTP_ERRORS as exc:
            self.answered[i] = time.perf_counter()
            self.errors.append(f"POST #{i}: {type(exc).__name__}: {exc}")
            return
        self.answered[i] = time.perf_counter()
        order_id = order_id_of(data) if 200 <= status < 300 else None
        if order_id is None:
            self.errors.append(f"POST #{i}: HTTP {status}: {data[:200]!r}")
        self.order_ids[i] = order_id

    def accepted(self):
        """Indexes of the accepted POSTs."""
        return [i for i in range(self.n) if self.order_ids[i] is not None]


def order_id_of(data):
    try:
        body = json.loads(data)
    except ValueError:
        return None
    order_id = body.get("order_id") if isinstance(body, dict) else None
    return str(order_id) if isinstance(order_id, (str, int)) and order_id != "" else None


def is_confirmation(entry):
    """Our notifications have a kind; the reference records confirmations only."""
    return entry.get("kind", "confirmation") == "confirmation"


class ConfirmationPoller:
    """GETs /notifications every `interval` seconds in a thread; first_seen[order_id] is when
    the first response holding that order's confirmation arrived. `notified` holds every order
    id with a notification of any kind (a failure notice too: that order is done, unconfirmed)."""

    def __init__(self, url, interval, http_timeout, cursor=None):
        self.url, self.interval, self.http_timeout = url, interval, http_timeout
        self.first_seen = {}
        self.notified = set()
        self.polls = self.poll_errors = 0
        self.poll_seconds = 0.0  # time spent waiting for GET /notifications answers
        # the highest notification id seen, where ids are given: only newer ones are fetched
        self.cursor = cursor
        self.last_error = None
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="poller", daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stopping.set()
        self._thread.join(self.http_timeout + 5)

    def wait_for(self, order_ids, deadline):
        """Block until every one of `order_ids` has a notification (True) or perf_counter()
        passes `deadline` (False)."""
        with self._changed:
            while not order_ids <= self.notified:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def _run(self):
        client = KeepAlive(self.url, self.http_timeout)
        try:
            while not self._stopping.is_set():
                began = time.perf_counter()
                self._poll(client)
                self._stopping.wait(max(0.0, self.interval - (time.perf_counter() - began)))
        finally:
            client.close()

    def _poll(self, client):
        self.polls += 1
        began = time.perf_counter()
        # With ids on the entries (ours) only the new ones are fetched; the reference's
        # notices have none, so it is read in full every time (from memory, cheap).
        path = "/notifications" if self.cursor is None else f"/notifications?after={self.cursor}"
        try:
            status, data = client.request("GET", path)
            arrived = time.perf_counter()
            self.poll_seconds += arrived - began
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {data[:200]!r}")
            entries = json.loads(data)
        except (*HTTP_ERRORS, ValueError, RuntimeError) as exc:
            self.poll_errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            return
        with self._changed:
            for entry in entries:
                if not isinstance(entry, dict):
                    continue
                if isinstance(entry.get("id"), int):
                    self.cursor = max(self.cursor or 0, entry["id"])
                order_id = str(entry.get("order_id"))
                self.notified.add(order_id)
                if is_confirmation(entry):
                    self.first_seen.setdefault(order_id, arrived)
            self._changed.notify_all()


# -- checks -----------------------------------------------------------------------------------

def ids_in(listing):
    """Order ids of a /processed (ids), /orders or /notifications (objects) listing."""
    return [str(x.get("order_id")) if isinstance(x, dict) else str(x) for x in listing]


def examples(ids, k=3):
    ids = sorted(ids)
    return ", ".join(ids[:k]) + (f" ... ({len(ids)} in all)" if len(ids) > k else "")


def check_listing(what, listed, expected, before):
    """Every expected id exactly once, nothing else (ids there `before` the run aside)."""
    counts = Counter(i for i in listed if i not in before)
    problems = []
    missing = expected - counts.keys()
    duplicated = [i for i, count in counts.items() if count > 1]
    unknown = counts.keys() - expected
    if missing:
        problems.append(f"{what}: {len(missing)} order(s) missing: {examples(missing)}")
    if duplicated:
        problems.append(f"{what}: {len(duplicated)} order(s) listed more than once: "
                        f"{examples(duplicated)}")
    if unknown:
        problems.append(f"{what}: {len(unknown)} unknown order id(s): {examples(unknown)}")
    return problems


def check_notifications(notices, expected, before):
    """Exactly one confirmation per expected order, and no other (new) entry."""
    confirmations, others = [], []
    for entry in notices:
        ok = isinstance(entry, dict) and is_confirmation(entry)
        (confirmations if ok else others).append(entry)
    others = [e for e, i in zip(others, ids_in(others)) if i not in before]
    problems = check_listing("/notifications", ids_in(confirmations), expected, before)
    if others:
        problems.append(f"/notifications: {len(others)} entr(ies) other than confirmations, "
                        f"e.g. {describe(others[0])}")
    return problems


def describe(entry):
    if not isinstance(entry, dict):
        return repr(entry)[:120]
    return (f"{entry.get('kind')} for {entry.get('order_id')}: "
            f"{str(entry.get('message'))[:100]!r}")


def snapshot(target, http_timeout):
    """Order ids each listing holds before the run (none on a fresh system)."""
    return {
        "notifications": set(ids_in(get_json(
            target.notifications_url, target.listing("/notifications"), http_timeout))),
        "processed": set(ids_in(get_json(target.inventory_url, target.listing("/processed"),
                                         http_timeout))),
        "orders": set(ids_in(get_json(target.orders_url, target.listing("/orders"),
                                      http_timeout))),
    }


def settled_orders(target, expected, before, timeout, http_timeout):
    """GET /orders, again every 0.2 s while one of ours has not reached the final status
    (bounded by `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        orders = get_json(target.orders_url, target.listing("/orders"), http_timeout)
        if target.final_status is None or time.monotonic() > deadline or all(
                o.get("status") == target.final_status
                for o in orders if isinstance(o, dict) and o.get("order_id") in expected):
            return orders
        time.sleep(0.2)


def check_run(target, load, before, args):
    """The problems found once the measurement is over (empty list: all good)."""
    problems = []
    accepted = [load.order_ids[i] for i in load.accepted()]
    if len(accepted) != load.n:
        problems.append(f"accepted {len(accepted)} of {load.n} POSTs; first errors: "
                        f"{load.errors[:3]}")
    expected = set(accepted)
    if len(expected) != len(accepted):
        dups = [i for i, count in Counter(accepted).items() if count > 1]
        problems.append(f"POST answers: {len(dups)} order id(s) given more than once: "
                        f"{examples(dups)}")

    notices = get_json(target.notifications_url, target.listing("/notifications"),
                       args.http_timeout)
    problems += check_notifications(notices, expected, before["notifications"])

    processed = get_json(target.inventory_url, target.listing("/processed"), args.http_timeout)
    problems += check_listing("/processed", ids_in(processed), expected, before["processed"])

    orders = settled_orders(target, expected, before["orders"], args.timeout, args.http_timeout)
    problems += check_listing("/orders", ids_in(orders), expected, before["orders"])
    if target.final_status is not None:
        statuses = Counter(o.get("status") for o in orders
                           if isinstance(o, dict) and o.get("order_id") in expected)
        if set(statuses) - {target.final_status}:
            problems.append(f"/orders: statuses {dict(statuses)}, expected all "
                            f"{target.final_status}")
    return problems


# -- one run ----------------------------------------------------------------------------------

def percentile(sorted_values, p):
    """Linear interpolation between the closest ranks."""
    k = (len(sorted_values) - 1) * p / 100
    lo = math.floor(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def latency_ms(seconds):
    if not seconds:
        return None
    ms = sorted(s * 1000 for s in seconds)
    summary = {f"p{p}": percentile(ms, p) for p in (50, 95, 99)}
    summary.update(max=ms[-1], mean=sum(ms) / len(ms))
    return {k: round(v, 2) for k, v in summary.items()}


def rate(count, seconds):
    return round(count / seconds, 2) if seconds and seconds > 0 else None


def measure(target, concurrency, args):
    """Drive one run; return (load, poller, process usage, timed_out, driver CPU seconds)."""
    load = Load(target.orders_url, args.orders, concurrency, args.item, args.http_timeout)
    poller = ConfirmationPoller(target.notifications_url, args.poll_interval, args.http_timeout,
                                cursor=target.after.get("/notifications"))
    monitor = ProcessMonitor(target.pids)
    driver_cpu = sum(os.times()[:2])
    monitor.start()
    poller.start()
    try:
        load.run()
        accepted = {load.order_ids[i] for i in load.accepted()}
        deadline = time.perf_counter() + args.timeout
        timed_out = not poller.wait_for(accepted, deadline)
    finally:
        poller.stop()
        usage = monitor.stop()
    return load, poller, usage, timed_out, sum(os.times()[:2]) - driver_cpu


def summarize(target, concurrency, load, poller, usage, timed_out, driver_cpu, problems):
    """The JSON record of one run."""
    accepted = load.accepted()
    first_sent = min((t for t in load.sent if t is not None), default=None)
    last_answer = max((t for t in load.answered if t is not None), default=None)
    seen = {i: poller.first_seen[load.order_ids[i]] for i in accepted
            if load.order_ids[i] in poller.first_seen}
    last_seen = max(seen.values(), default=None)
    post_phase = last_answer - first_sent if first_sent is not None else None
    e2e_phase = last_seen - first_sent if last_seen is not None else None
    cpu = [u["cpu_s"] for u in usage.values() if u["cpu_s"] is not None]
    return {
        "kind": "run", "system": target.system, "concurrency": concurrency,
        "orders": load.n, "accepted": len(accepted), "confirmed": len(seen),
        "errors": len(load.errors), "timed_out": timed_out,
        "accepted_per_s": rate(len(accepted), post_phase),
        "e2e_per_s": rate(len(seen), e2e_phase),
        "post_phase_s": None if post_phase is None else round(post_phase, 3),
        "e2e_completion_s": None if e2e_phase is None else round(e2e_phase, 3),
        "post_latency_ms": latency_ms([load.answered[i] - load.sent[i] for i in accepted]),
        "e2e_latency_ms": latency_ms([seen[i] - load.sent[i] for i in seen]),
        "processes": usage,
        "cpu_total_s": round(sum(cpu), 2) if cpu else None,
        "driver_cpu_s": round(driver_cpu, 2),
        "http_connects": load.connects,
        "poll_interval_s": poller.interval, "polls": poller.polls,
        "poll_errors": poller.poll_errors,
        "poll_ms_mean": round(1000 * poller.poll_seconds / poller.polls, 1) if poller.polls
        else None,
        "ok": not problems, "problems": problems, "error_samples": load.errors[:5],
    }


def failed_run(system, concurrency, n, exc):
    return {"kind": "run", "system": system, "concurrency": concurrency, "orders": n,
            "ok": False, "problems": [f"run failed: {type(exc).__name__}: {exc}"]}


def drive(target, concurrency, args):
    """Drive one run of `args.orders` orders at `concurrency` on the running `target` and
    check it; (the run's record, its Load)."""
    before = snapshot(target, args.http_timeout)
    log(f"{target.system}: {args.orders} orders at concurrency {concurrency}")
    load, poller, usage, timed_out, driver_cpu = measure(target, concurrency, args)
    problems = check_run(target, load, before, args)
    if timed_out:
        notified = {load.order_ids[i] for i in load.accepted()} & poller.notified
        problems.insert(0, f"timed out: {args.timeout}s after the last POST, "
                           f"{len(notified)} of the accepted orders notified "
                           f"(last poll error: {poller.last_error})")
    problems += [f"process {name} exited during the run (logs: {target.logs})"
                 for name, u in usage.items() if u["exited"]]
    return summarize(target, concurrency, load, poller, usage, timed_out, driver_cpu,
                     problems), load


def run_once(system, concurrency, args, work_dir, ref_python):
    """Start a fresh `system` (unless --url), drive and check it; the run's record."""
    run_dir = work_dir / f"{system}-c{concurrency}"
    if system == "reference":
        context = reference_system(args, ref_python, run_dir)
    elif args.url:
        context = running_gateway(args.url)
    else:
        context = our_stack(args, run_dir)
    try:
        with context as target:
            return drive(target, concurrency, args)[0]
    except Exception as exc:  # a system that does not start or answer fails this run only
        log(traceback.format_exc())
        return failed_run(system, concurrency, args.orders, exc)


# -- output -----------------------------------------------------------------------------------

def fmt(value, spec=".1f"):
    return "-" if value is None else format(value, spec)


def print_run(r):
    print(f"\n== {r['system']}  c={r['concurrency']}  n={r['orders']} " + "=" * 40)
    if "accepted" in r:
        lat = r["post_latency_ms"] or {}
        e2e = r["e2e_latency_ms"] or {}
        print(f"accepted      {r['accepted']}/{r['orders']} in {fmt(r['post_phase_s'], '.2f')} s"
              f"  ->  {fmt(r['accepted_per_s'])} orders/s")
        print(f"end-to-end    {r['confirmed']}/{r['orders']} in "
              f"{fmt(r['e2e_completion_s'], '.2f')} s  ->  {fmt(r['e2e_per_s'])} orders/s")
        print("POST latency  " + "  ".join(f"{k} {fmt(lat.get(k))}"
                                           for k in ("p50", "p95", "p99", "max")) + " ms")
        print("e2e latency   " + "  ".join(f"{k} {fmt(e2e.get(k))}"
                                           for k in ("p50", "p95", "p99", "max")) + " ms")
        print_processes(r)
    print("checks: OK" if r["ok"] else "checks: MISMATCH")
    for problem in r["problems"]:
        print(f"  !! {problem}")


def print_processes(r):
    if not r["processes"]:
        print("processes     (not measured: --url)")
        return
    print(f"{'process':<14}{'pid':>8}{'cpu s':>9}{'peak RSS MB':>13}")
    for name, u in r["processes"].items():
        print(f"{name:<14}{u['pid']:>8}{fmt(u['cpu_s'], '.2f'):>9}{fmt(u['peak_rss_mb']):>13}")
    print(f"{'total':<14}{'':>8}{fmt(r['cpu_total_s'], '.2f'):>9}"
          f"      (driver {fmt(r['driver_cpu_s'], '.2f')} s)")


def print_summary(results):
    print(f"\n{'system':<10}{'c':>4}{'n':>7}{'acc/s':>9}{'e2e/s':>9}{'p50':>8}{'p95':>8}"
          f"{'p99':>8}{'max':>8}{'cpu s':>8}  checks")
    for r in results:
        lat = r.get("post_latency_ms") or {}
        print(f"{r['system']:<10}{r['concurrency']:>4}{r['orders']:>7}"
              f"{fmt(r.get('accepted_per_s')):>9}{fmt(r.get('e2e_per_s')):>9}"
              + "".join(f"{fmt(lat.get(k)):>8}" for k in ("p50", "p95", "p99", "max"))
              + f"{fmt(r.get('cpu_total_s')):>8}  {'OK' if r['ok'] else 'MISMATCH'}")
    print("(latencies: POST round trip in ms; cpu s: all processes of the system)")


def ratio(a, b):
    return round(a / b, 2) if a is not None and b else None


def comparisons(results):
    """One record per concurrency that has both an ours and a reference run."""
    by_key = {(r["system"], r["concurrency"]): r for r in results}
    records = []
    for (system, c), ours in by_key.items():
        ref = by_key.get(("reference", c))
        if system != "ours" or ref is None:
            continue
        p99 = {name: (r.get("post_latency_ms") or {}).get("p99")
               for name, r in (("ours", ours), ("reference", ref))}
        records.append({
            "kind": "comparison", "concurrency": c, "orders": ours["orders"],
            "ours_e2e_per_s": ours.get("e2e_per_s"),
            "reference_e2e_per_s": ref.get("e2e_per_s"),
            "e2e_ratio_ours_over_reference": ratio(ours.get("e2e_per_s"),
                                                   ref.get("e2e_per_s")),
            "ours_post_p99_ms": p99["ours"], "reference_post_p99_ms": p99["reference"],
            "p99_ratio_reference_over_ours": ratio(p99["reference"], p99["ours"]),
            "ours_cpu_total_s": ours.get("cpu_total_s"),
            "reference_cpu_total_s": ref.get("cpu_total_s"),
            "ok": ours["ok"] and ref["ok"],
        })
    return records


def print_comparisons(records):
    print(f"\n{'c':>4}{'e2e/s ours':>12}{'e2e/s ref':>11}{'ours/ref':>10}"
          f"{'p99 ours':>10}{'p99 ref':>9}{'ref/ours':>10}{'cpu ours':>10}{'cpu ref':>9}")
    for x in records:
        print(f"{x['concurrency']:>4}{fmt(x['ours_e2e_per_s']):>12}"
              f"{fmt(x['reference_e2e_per_s']):>11}"
              f"{fmt(x['e2e_ratio_ours_over_reference'], '.2f'):>10}"
              f"{fmt(x['ours_post_p99_ms']):>10}{fmt(x['reference_post_p99_ms']):>9}"
              f"{fmt(x['p99_ratio_reference_over_ours'], '.2f'):>10}"
              f"{fmt(x['ours_cpu_total_s']):>10}{fmt(x['reference_cpu_total_s']):>9}")
    print("(ours/ref: end-to-end throughput ratio, >1 = ours faster; "
          "ref/ours: POST p99 ratio, >1 = ours lower)")


def emit(record, human, args):
    if not args.json_only:
        human(record)
    print(json.dumps(record), flush=True)


# -- command line -----------------------------------------------------------------------------

def add_run_options(ap, orders):
    """The options of a run on our stack (also bench.scale's): -n (default `orders`), the
    timeouts, the poll interval, the item, the broker, --keep and --json-only."""
    ap.add_argument("-n", "--orders", type=int, default=orders,
                    help=f"orders per run ({orders})")
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="seconds to wait for confirmations after the last POST (120)")
    ap.add_argument("--poll-interval", type=float, default=0.2,
                    help="seconds between GET /notifications polls (0.2)")
    ap.add_argument("--http-timeout", type=float, default=30.0,
                    help="socket timeout of each HTTP request (30)")
    ap.add_argument("--item", default="widget-A", help="the item ordered (widget-A)")
    ap.add_argument("--amqp-uri", default=os.environ.get("AMQP_URI") or DEFAULT_AMQP_URI,
                    help="broker whose vhosts the runs use (AMQP_URI, else local guest)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the vhosts and the work dir (data, logs)")
    ap.add_argument("--json-only", action="store_true", help="print only the JSON lines")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(ap, orders=2000)
    ap.add_argument("-c", "--concurrency", type=int, nargs="+", default=[1, 8, 32],
                    help="one or more concurrency levels, each run on a fresh system (1 8 32)")
    ap.add_argument("--url", help="drive this running gateway instead of starting our stack "
                                  "(no process metrics)")
    ap.add_argument("--compare-reference", action="store_true",
                    help="also run the reference design at each concurrency and compare")
    ap.add_argument("--reference-python",
                    help="python with flask+pika for the reference (default: a throwaway venv)")
    ap.add_argument("--reference-dir", type=Path, default=DEFAULT_REFERENCE_DIR,
                    help=f"the reference design ({DEFAULT_REFERENCE_DIR})")
    args = ap.parse_args(argv)
    if args.orders < 1 or min(args.concurrency) < 1:
        ap.error("-n and -c must be at least 1")
    if args.url and urlsplit(args.url).hostname not in LOCAL_HOSTS:
        ap.error("--url must be on this machine (127.0.0.1 or localhost)")
    if args.compare_reference and not (args.reference_dir / "run.sh").is_file():
        ap.error(f"no run.sh in --reference-dir {args.reference_dir}")
    return args


def terminate(signum, frame):
    """The SIGTERM handler: unwinds the finally blocks that stop what was started."""
    raise SystemExit(128 + signum)


def run_all(args, work_dir):
    """Every run, in order: for each concurrency ours, then (--compare-reference) the
    reference; each run's table and JSON line are printed as soon as it is over."""
    ref_python = reference_python(args, work_dir) if args.compare_reference else None
    systems = ("ours", "reference") if args.compare_reference else ("ours",)
    results = []
    for concurrency in args.concurrency:
        for system in systems:
            result = run_once(system, concurrency, args, work_dir, ref_python)
            results.append(result)
            for problem in result["problems"]:
                log(f"MISMATCH ({system} c={concurrency}): {problem}")
            emit(result, print_run, args)
    return results


def report(results, args):
    if not args.json_only:
        print_summary(results)
    records = comparisons(results)
    for record in records:
        print(json.dumps(record), flush=True)
    if records and not args.json_only:
        print_comparisons(records)


class WorkDir:
    """A temporary directory for the runs' data and logs, removed on the way out unless --keep
    or the runs did not end `ok` (set it when they pass): then its path is printed."""

    def __init__(self, prefix, keep):
        self.path = Path(tempfile.mkdtemp(prefix=prefix))
        self.keep = keep
        self.ok = False  # stays False when interrupted

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if (self.keep or not self.ok) and any(self.path.iterdir()):
            log(f"work dir kept (data, logs): {self.path}")
        else:
            shutil.rmtree(self.path, ignore_errors=True)

    def exit_status(self):
        """0 if the runs were ok, else 1 (said on stderr)."""
        if not self.ok:
            log("FAILED: see the MISMATCH lines above")
        return 0 if self.ok else 1


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, terminate)
    with WorkDir("nt-bench-", args.keep) as work:
        results = run_all(args, work.path)
        report(results, args)
        work.ok = all(r["ok"] for r in results)
    return work.exit_status()


if __name__ == "__main__":
    sys.exit(main())
