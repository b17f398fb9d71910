"""Stack's process handling, on fake services and a fake gateway (no broker needed).

The fakes live in a temporary directory used as the processes' working directory, which
`python -m` puts first on sys.path, so they shadow the real packages.
"""
import os
import shutil
import textwrap
import time
from pathlib import Path

import pytest

from scripts.stack import REPO_ROOT, Stack, StackError

FAKE_SERVICE = textwrap.dedent("""
    import os
    from nameko.timer import timer  # an entrypoint that needs no broker

    if os.environ.get("CRASH_{upper}"):
        raise SystemExit("{name} crashed on purpose")
    with open(os.path.join(os.environ["DATA_DIR"], "{name}.pid"), "w") as f:
        f.write(str(os.getpid()))
    with open(os.path.join(os.environ["DATA_DIR"], "{name}.metrics_port"), "w") as f:
        f.write(os.environ.get("METRICS_PORT", ""))

    class Service:
        name = "{name}"

        # short: nameko handles SIGTERM only when its event loop wakes up
        @timer(interval=0.2)
        def tick(self):
            pass
""")

# Reports a service as "ok" while the pid it wrote to DATA_DIR is alive.
FAKE_GATEWAY = textwrap.dedent("""
    import json, os
    from http.server import HTTPServer, BaseHTTPRequestHandler

    def state(name):
        try:
            with open(os.path.join(os.environ["DATA_DIR"], name + ".pid")) as f:
                os.kill(int(f.read()), 0)
        except (OSError, ValueError):
            return "down"
        return "ok"

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            services = {n: state(n) for n in ("orders", "inventory", "notifications")}
            body = json.dumps({"services": services}).encode()
            self.send_response(200 if set(services.values()) == {"ok"} else 503)
            self.end_headers()
            self.wfile.write(body)

    HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Health).serve_forever()
""")


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def fake_root(tmp_path):
    root = tmp_path / "root"
    (root / "nameko_services").mkdir(parents=True)
    (root / "gateway").mkdir()
    (root / "nameko_services" / "__init__.py").write_text("")
    for name in ("orders", "inventory", "notifications"):
        (root / "nameko_services" / f"{name}.py").write_text(
            FAKE_SERVICE.format(name=name, upper=name.upper()))
    (root / "gateway" / "__init__.py").write_text("")
    (root / "gateway" / "__main__.py").write_text(FAKE_GATEWAY)
    shutil.copy(REPO_ROOT / "config.yaml", root / "config.yaml")
    return root


def make_stack(root, tmp_path, **kwargs):
    return Stack("amqp://guest:guest@127.0.0.1:1/", tmp_path / "data", cwd=root, **kwargs)


def test_start_kill_restart_stop(fake_root, tmp_path):
    with make_stack(fake_root, tmp_path) as stack:
        stack.start(timeout=30)
        pids = stack.pids()
        assert set(pids) == {"orders", "inventory", "notifications", "gateway"}
        assert all(os.getsid(pid) == pid for pid in pids.values())  # own sessions

        stack.kill_service("inventory")
        assert not alive(pids["inventory"]) and "inventory" not in stack.pids()
        status, body = stack.health()
        assert status == 503 and body["services"]["inventory"] == "down"
        stack.start_service("inventory")
        assert stack.pid("inventory") != pids["inventory"]
        stack.wait_service_ready("inventory", timeout=10)
        assert stack.health()[0] == 200

        stack.stop_service("orders")
        assert "orders" not in stack.pids()
    assert stack.pids() == {}
    assert not any(alive(pid) for pid in pids.values())
    stack.stop()  # idempotent

    log = (tmp_path / "data" / "logs" / "inventory.log").read_text()
    assert log.count("=== ") == 2  # append mode: both starts are in the log


def test_start_fails_fast_with_log_tail(fake_root, tmp_path):
    stack = make_stack(fake_root, tmp_path, env={"CRASH_ORDERS": "1"})
    started = time.monotonic()
    with pytest.raises(StackError, match="orders crashed on purpose"):
        stack.start(timeout=60)
    assert time.monotonic() - started < 30
    assert stack.pids() == {}  # a failed start leaves nothing running


def test_paths_and_url(tmp_path):
    stack = Stack("amqp://x/", tmp_path / "d", gateway_port=18999)
    assert stack.url == "http://127.0.0.1:18999"
    assert stack.config == str(Path(REPO_ROOT, "config.yaml"))
    assert stack.log_dir == (tmp_path / "d" / "logs").resolve()


def test_each_service_gets_a_metrics_port_of_its_own_kept_across_restarts(fake_root, tmp_path):
    def port_seen(name):
        return (tmp_path / "data" / f"{name}.metrics_port").read_text()

    with make_stack(fake_root, tmp_path) as stack:
        stack.start(timeout=30)
        ports = dict(stack.metrics_ports)
        assert set(ports) == {"orders", "inventory", "notifications"}
        assert len(set(ports.values())) == 3
        assert {name: port_seen(name) for name in ports} == {
            name: str(port) for name, port in ports.items()}
        assert stack.metrics_url("inventory") == f"http://127.0.0.1:{ports['inventory']}/metrics"
        stack.kill_service("inventory")
        stack.start_service("inventory")
        stack.wait_service_ready("inventory", timeout=10)
        assert port_seen("inventory") == str(ports["inventory"])


def test_a_metrics_port_of_the_callers_is_left_as_it_is(fake_root, tmp_path):
    with make_stack(fake_root, tmp_path, env={"METRICS_PORT": "9999"},
                    services=("orders",)) as stack:
        stack.start(timeout=30)
        assert stack.metrics_ports == {}
        assert (tmp_path / "data" / "orders.metrics_port").read_text() == "9999"
