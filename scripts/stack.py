"""Run the order pipeline's processes locally: the three Nameko services and the gateway.

Used by `make run` (`python -m scripts.stack`), the integration tests and the benchmark::

    with Stack(amqp_uri, data_dir) as stack:
        stack.start()
        requests.post(stack.url + "/order", json={"item": "widget-A", "quantity": 1})
        stack.kill_service("inventory")
        stack.start_service("inventory")
        stack.wait_service_ready("inventory")
"""
import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path

from nameko_topology.constants import DEFAULT_AMQP_URI
from nameko_topology.uris import redact


REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("orders", "inventory", "notifications")
GATEWAY = "gateway"

# Everything here talks to this machine's (or the broker's) ports directly, never via a proxy
# that http_proxy in the environment may name.
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# Stacks not yet stopped; stopped at interpreter exit so a crashed test run leaves no orphans.
_live_stacks = weakref.WeakSet()


NAMEKO_CLI_WARNINGS = "ignore::Warning:nameko.cli.commands"


def banner(env, text):
    """The line the stack writes to a process's log before starting it: JSON when the process
    writes JSON lines (``LOG_FORMAT=json``), so that every line of the file parses."""
    if (env.get("LOG_FORMAT") or "").strip().lower() == "json":
        return json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "level": "INFO",
                           "logger": "scripts.stack", "message": text}) + "\n"
    return f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n"


class StackError(RuntimeError):
    pass


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nameko_cmd(python):
    """`python -m nameko` when it works (nameko 2.14 has a __main__), else the venv's script."""
    probe = subprocess.run([python, "-c", "import importlib.util as u, sys; "
                            "sys.exit(u.find_spec('nameko.__main__') is None)"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if probe.returncode == 0:
        return [python, "-m", "nameko"]
    script = Path(python).with_name("nameko")
    if script.exists():
        return [str(script)]
    raise StackError(f"cannot run nameko with {python}: no `python -m nameko` and no {script}")


def tail(path, lines=40):
    """The last `lines` lines of a (log) file, or a note that it does not exist."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(data.splitlines()[-lines:])


class Stack:
    def __init__(self, amqp_uri, data_dir, *, gateway_port=None, env=None, services=SERVICES,
                 log_dir=None, python=sys.executable, config="config.yaml", cwd=REPO_ROOT):
        self.amqp_uri = amqp_uri
        self.cwd = Path(cwd).resolve()
        self.data_dir = Path(data_dir).resolve()
        self.log_dir = Path(log_dir).resolve() if log_dir else self.data_dir / "logs"
        self.gateway_port = gateway_port or _free_port()
        self.env = dict(env or {})
        self.services = tuple(services)
        self.python = python
        self.config = str((self.cwd / config).resolve())
        self._procs = {}          # name -> Popen, the latest process started under that name
        #: name -> the port the process of that name serves its Prometheus metrics on (kept
        #: across restarts, so a scrape config stays right)
        self.metrics_ports = {}
        self._gateway_ports = {GATEWAY: self.gateway_port}  # gateway process name -> port
        self._nameko = None

    # -- process plumbing -------------------------------------------------------------------

    @property
    def url(self):
        return f"http://127.0.0.1:{self.gateway_port}"

    def log_path(self, name):
        return self.log_dir / f"{name}.log"

    def _env(self, extra=None):
        env = dict(os.environ)
        env.update(AMQP_URI=self.amqp_uri, DATA_DIR=str(self.data_dir), PYTHONUNBUFFERED="1")
        # nameko's CLI imports eventlet, which warns, before any logging is configured: a bare
        # line in what may be a JSON log (the Dockerfile sets the same)
        env.setdefault("PYTHONWARNINGS", NAMEKO_CLI_WARNINGS)
        env.update(self.env)
        env.update(extra or {})
        return env

    def _spawn(self, name, cmd, env):
        self._stop_proc(name)  # a restart replaces the old process
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path(name), "ab") as log:  # append: restarts keep the history
            log.write(banner(env, f"starting: {' '.join(cmd)}").encode())
            log.flush()
            # A session of its own: a Ctrl-C meant for the parent does not reach the child
            # (stop() shuts it down in order instead) and killpg() reaches all its children.
            proc = subprocess.Popen(cmd, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self._procs[name] = proc
        _live_stacks.add(self)
        return proc

    def _signal(self, proc, sig):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    def _stop_proc(self, name, timeout=15):
        proc = self._procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        self._signal(proc, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal(proc, signal.SIGKILL)
            proc.wait()

    def _alive(self, name):
        proc = self._procs.get(name)
        return proc is not None and proc.poll() is None

    def _dead_error(self, name, what):
        proc = self._procs.get(name)
        if proc is None:
            return StackError(f"{name} was never started ({what})")
        return StackError(f"{name} exited with code {proc.returncode} while {what}; "
                          f"last lines of {self.log_path(name)}:\n{tail(self.log_path(name))}")

    # -- public API -------------------------------------------------------------------------

    def start_service(self, name, instance=None, env=None):
        """(Re)start one service process.

        ``instance`` (e.g. ``"inventory-2"``) runs a further process of service ``name`` with
        the same environment, under a name of its own: its own log file and process entry, so
        ``kill_service(instance)`` / ``stop_service(instance)`` reach only it. ``env`` adds to
        this process's environment only: e.g. an ``AMQP_URI`` listing a cluster's nodes in
        another order, so that it connects to another node first.
        """
        if self._nameko is None:
            self._nameko = _nameko_cmd(self.python)
        cmd = self._nameko + ["run", "--config", self.config, f"nameko_services.{name}"]
        # a port of the caller's own is theirs to manage
        if "METRICS_PORT" not in {**self.env, **(env or {})}:
            port = self.metrics_ports.setdefault(instance or name, _free_port())
            env = {**(env or {}), "METRICS_PORT": str(port)}
        return self._spawn(instance or name, cmd, self._env(env))

    def metrics_url(self, name):
        """The URL of the metrics of the service process ``name``."""
        return f"http://127.0.0.1:{self.metrics_ports[name]}/metrics"

    def stop_service(self, name, timeout=15):
        """SIGTERM (nameko stops gracefully), then SIGKILL after `timeout` seconds."""
        self._stop_proc(name, timeout)

    def kill_service(self, name):
        """SIGKILL: simulate a crash."""
        proc = self._procs.get(name)
        if proc is not None:
            self._signal(proc, signal.SIGKILL)
            proc.wait()

    def start_gateway(self, instance=None, env=None):
        """(Re)start the gateway on ``gateway_port``; or, given ``instance`` (e.g.
        ``"gateway-2"``), a further gateway process on a port of its own (``url_of(instance)``).
        ``env`` as for :meth:`start_service`."""
        name = instance or GATEWAY
        port = self._gateway_ports.setdefault(name, _free_port())
        return self._spawn(name, [self.python, "-m", "gateway"],
                           self._env({**(env or {}), "PORT": str(port)}))

    def stop_gateway(self, timeout=15):
        self._stop_proc(GATEWAY, timeout)

    def url_of(self, gateway):
        """The base URL of gateway process ``gateway`` (the name given to start_gateway)."""
        return f"http://127.0.0.1:{self._gateway_ports[gateway]}"

    def pid(self, name):
        return self._procs[name].pid

    def pids(self):
        """{name: pid} of the processes now running."""
        return {name: p.pid for name, p in self._procs.items() if p.poll() is None}

    def health(self, timeout=5, gateway=GATEWAY):
        """(status, body) of GET /health of ``gateway``; (None, None) when it does not answer."""
        try:
            with _http.open(self.url_of(gateway) + "/health", timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:  # 503 still carries the per-service report
            status, raw = e.code, e.read()
        except (OSError, ValueError):  # refused, reset, timed out
            return None, None
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        return status, body

    def _services_ok(self, names, gateway):
        status, body = self.health(gateway=gateway)
        services = body.get("services") if isinstance(body, dict) else None
        services = services if isinstance(services, dict) else {}
        return status, [n for n in names if services.get(n) != "ok"]

    def _wait(self, names, procs, timeout, whole, gateway=GATEWAY):
        """Poll /health of `gateway` until `names` all answer (and it is 200, if `whole`).
        Fails early when one of `procs` exits."""
        url = self.url_of(gateway)
        deadline = time.monotonic() + timeout
        while True:
            for name in procs:
                if not self._alive(name):
                    raise self._dead_error(name, f"waiting for {url}/health")
            status, missing = self._services_ok(names, gateway)
            if not missing and (status == 200 or not whole):
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.25)
        # Blame the services that did not answer, or the gateway when it did not answer at all.
        culprits = missing if status is not None and missing else [gateway]
        logs = "\n".join(f"--- last lines of {self.log_path(n)}:\n{tail(self.log_path(n))}"
                         for n in culprits)
        raise StackError(f"not healthy after {timeout}s (GET {url}/health -> {status}, "
                         f"not ok: {', '.join(missing) or '-'})\n{logs}")

    def wait_service_ready(self, name, timeout=30):
        """Wait until the gateway reports that `name` answers RPC."""
        self._wait([name], [name, GATEWAY], timeout, whole=False)

    def wait_gateway_ready(self, gateway, timeout=60):
        """Wait until gateway process `gateway` answers /health with 200 (every service)."""
        self._wait(list(SERVICES), [gateway], timeout, whole=True, gateway=gateway)

    def start(self, timeout=60):
        """Start every service and the gateway; wait until they all answer."""
        try:
            for name in self.services:
                self.start_service(name)
            self.start_gateway()
            # A 200 needs all three services; with a subset, wait for those only.
            whole = set(SERVICES) <= set(self.services)
            self._wait(list(self.services), list(self.services) + [GATEWAY], timeout, whole)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        """Stop everything, gateway first; idempotent."""
        names = [GATEWAY] + [n for n in self._procs if n != GATEWAY]
        procs = [self._procs[n] for n in names if n in self._procs]
        for proc in procs:  # signal all first so they shut down in parallel
            if proc.poll() is None:
                self._signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._signal(proc, signal.SIGKILL)
                proc.wait()
        _live_stacks.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


@atexit.register
def _stop_live_stacks():
    for stack in list(_live_stacks):
        stack.stop()


# -- broker vhosts (management HTTP API) ------------------------------------------------------

# -- `python -m scripts.stack` --------------------------------------------------------

class _Terminated(Exception):
    pass


def _on_sigterm(signum, frame):
    raise _Terminated()


def main():
    amqp_uri = os.environ.get("AMQP_URI", DEFAULT_AMQP_URI)
    data_dir = os.environ.get("DATA_DIR", "./data")
    log_dir = os.environ.get("LOG_DIR")  # default: DATA_DIR/logs
    port = int(os.environ.get("PORT", "8080"))
    timeout = float(os.environ.get("STACK_START_TIMEOUT", "60"))
    signal.signal(signal.SIGTERM, _on_sigterm)

    stack = Stack(amqp_uri, data_dir, gateway_port=port, log_dir=log_dir)
    print(f"starting {', '.join(stack.services)} and the gateway (broker {redact(amqp_uri)})\n"
          f"logs: {stack.log_dir}/<name>.log   data: {stack.data_dir}", flush=True)
    try:
        stack.start(timeout)
        print(f"ready: {stack.url}  (GET {stack.url}/health) -- Ctrl-C to stop", flush=True)
        print(f"metrics: gateway {stack.url}/metrics; " + ", ".join(
            f"{name} :{port}" for name, port in stack.metrics_ports.items()), flush=True)
        while True:
            for name, proc in list(stack._procs.items()):
                if proc.poll() is not None:
                    raise stack._dead_error(name, "running")
            time.sleep(0.5)
    except StackError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    except (KeyboardInterrupt, _Terminated):
        print("stopping...", flush=True)
        return 0
    finally:
        # Ignore further Ctrl-C / SIGTERM so the clean shutdown is not cut short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
