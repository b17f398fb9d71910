"""The cluster tests' pieces: the local 3-node cluster (scripts/rabbitmq-cluster.sh), a vhost on
it, and stacks whose processes each list the nodes in an order of their own.

The cluster is started once per session and always removed at its end (also when a test fails
or the run is interrupted: pytest tears session fixtures down on Ctrl-C too, and an atexit
hook covers a run that dies in between). Before each test every node is brought back up, so a
test that killed or stopped one leaves the next a whole cluster.
"""
import atexit
import os
import subprocess
from urllib.parse import quote

import pytest

from nameko_topology.management import ManagementApi
from nameko_topology.testing.broker import TestVhost, wait_for
from scripts.stack import GATEWAY, REPO_ROOT, SERVICES, Stack, tail
from tests.conftest import FAILED

SCRIPT = REPO_ROOT / "scripts" / "rabbitmq-cluster.sh"
NODES = ("c1", "c2", "c3")
USER = PASSWORD = "guest"  # the script's default user on its nodes
NODE_WAIT = 120  # seconds: the longest a node's start, stop or rejoin may take
#: each service's RPC queue (RPC_QUEUE_TYPE=quorum makes them quorum queues)
RPC_QUEUES = tuple(f"rpc-{service}" for service in SERVICES)


def node_name(node):
    return f"rabbit-{node}@localhost"


def amqp_port(node):
    return 5672 + int(node[1:])


def management_port(node):
    return 15672 + int(node[1:])


def rotated(first):
    """The nodes in the order a process of ``first`` tries them: ``first``, then the rest."""
    start = NODES.index(first)
    return NODES[start:] + NODES[:start]


class Cluster:
    """The three local nodes, as scripts/rabbitmq-cluster.sh runs them."""

    def run(self, *args, timeout=NODE_WAIT * 2):
        result = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True,
                                timeout=timeout)
        if result.returncode:
            raise AssertionError(f"rabbitmq-cluster.sh {' '.join(args)} exited with "
                                 f"{result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def start(self):
        self.run("start")

    def remove(self):
        self.run("stop")

    def kill(self, node):
        self.run("kill", node)

    def stop(self, node):
        self.run("stop", node)

    def restart(self, node):
        self.run("restart", node)

    def uri(self, vhost="", first="c1"):
        """The failover AMQP_URI of ``vhost``, ``first`` node first."""
        return ";".join(f"amqp://{USER}:{PASSWORD}@127.0.0.1:{amqp_port(node)}/"
                        f"{quote(vhost, safe='')}" for node in rotated(first))

    def management_ports(self, first="c1"):
        """RABBITMQ_MANAGEMENT_PORT for :meth:`uri` with the same ``first``: one per node."""
        return ";".join(str(management_port(node)) for node in rotated(first))

    def env(self, vhost, first):
        """The environment of a process that connects to ``first`` while it is up."""
        return {"AMQP_URI": self.uri(vhost, first),
                "RABBITMQ_MANAGEMENT_PORT": self.management_ports(first)}

    def api(self, vhost=""):
        """The management API, asked on the first node that answers."""
        return ManagementApi(self.uri(vhost), port=self.management_ports())

    def running_nodes(self):
        """The short names of the nodes the cluster reports running (empty if none answers)."""
        try:
            listed = self.api().get("/nodes")
        except Exception:
            return set()
        return {node["name"].removeprefix("rabbit-").removesuffix("@localhost")
                for node in listed if node.get("running")}

    def ensure_whole(self):
        """Bring every node that is down back, and wait until all three run in the cluster."""
        for node in sorted(set(NODES) - self.running_nodes()):
            self.restart(node)
        wait_for(lambda: self.running_nodes() == set(NODES), timeout=NODE_WAIT, interval=0.5,
                 description="all three cluster nodes running")


@pytest.fixture(scope="session")
def rabbit_cluster():
    """The local 3-node cluster, started for the session and always removed afterwards."""
    if os.geteuid() != 0:
        message = ("the cluster tests start RabbitMQ nodes, which needs root "
                   "(scripts/rabbitmq-cluster.sh)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    cluster = Cluster()
    # registered before starting: a run killed mid-start still removes what had started
    atexit.register(cluster.run, "stop")
    try:
        cluster.start()
        yield cluster
    finally:
        atexit.unregister(cluster.run)
        cluster.remove()


@pytest.fixture
def cluster(rabbit_cluster):
    """The cluster with its three nodes running (a previous test may have killed one)."""
    rabbit_cluster.ensure_whole()
    return rabbit_cluster


@pytest.fixture
def cluster_vhost(cluster):
    """A vhost of its own on the cluster (a TestVhost: depth, consumers, queues, ...)."""
    vhost = TestVhost(cluster.uri(), management_port=cluster.management_ports()).create()
    yield vhost
    cluster.ensure_whole()  # deleting a vhost needs its queues' nodes
    vhost.delete()


@pytest.fixture
def cluster_stack(request, cluster, cluster_vhost, tmp_path):
    """A Stack on the cluster vhost, on the quorum topology with quorum RPC queues; not
    started (the test starts its processes, each with ``cluster.env(vhost, first)``). Stopped
    at teardown; if the test failed, the tail of every log is printed."""
    stack = Stack(cluster.uri(cluster_vhost.name), tmp_path / "data",
                  env={"MAX_WORKERS": "10", "TOPOLOGY_FILE": "topology.quorum.yaml",
                       "RPC_QUEUE_TYPE": "quorum",
                       "RABBITMQ_MANAGEMENT_PORT": cluster.management_ports()})
    yield stack
    stack.stop()
    if request.node.stash.get(FAILED, False):
        for log in sorted(stack.log_dir.glob("*.log")):
            print(f"--- last lines of {log}:\n{tail(log, 30)}")


# -- what the tests do on it -----------------------------------------------------------

def start_placed(stack, cluster, vhost, placement, timeout=90):
    """Start each process of ``placement`` ({name: (service or GATEWAY, first node)}) with
    the nodes listed ``first`` first; wait until every gateway reports every service."""
    for name, (kind, first) in placement.items():
        env = cluster.env(vhost.name, first)
        if kind == GATEWAY:
            stack.start_gateway(None if name == GATEWAY else name, env=env)
        else:
            stack.start_service(kind, None if name == kind else name, env=env)
    for name, (kind, _) in placement.items():
        if kind == GATEWAY:
            stack.wait_gateway_ready(name, timeout)


def wait_consumers(vhost, queues, each=1, timeout=30):
    """Wait until every one of ``queues`` has ``each`` consumers (a passive declare: no
    statistics lag); fail naming the counts."""
    counts = {}

    def settled():
        try:
            counts.update((queue, vhost.consumers(queue)) for queue in queues)
        except Exception as exc:  # a queue whose leader is being elected does not answer yet
            counts["error"] = repr(exc)
            return False
        counts.pop("error", None)
        return all(counts[queue] == each for queue in queues)
    try:
        wait_for(settled, timeout=timeout, interval=0.5,
                 description=f"{each} consumer(s) on every queue")
    except AssertionError:
        raise AssertionError(f"not {each} consumer(s) on every queue: {counts}") from None
