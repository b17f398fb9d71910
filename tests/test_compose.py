"""Static checks of docker-compose.yml and docker-compose.cluster.yml (no Docker engine needed)."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
CLUSTER_FILE = ROOT / "docker-compose.cluster.yml"
NODES = ("rabbitmq1", "rabbitmq2", "rabbitmq3")
SERVICES = ("orders", "inventory", "notifications")


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_required_services(compose):
    assert set(compose["services"]) >= {"rabbitmq", "gateway", *SERVICES}


def test_rabbitmq_healthcheck_and_credentials(compose):
    rabbitmq = compose["services"]["rabbitmq"]
    assert rabbitmq["image"].startswith("rabbitmq:") and "management" in rabbitmq["image"]
    assert rabbitmq["healthcheck"]["test"][1:] == ["rabbitmq-diagnostics", "-q", "ping"]
    env = rabbitmq["environment"]
    assert "${RABBITMQ_USER" in env["RABBITMQ_DEFAULT_USER"]
    assert "${RABBITMQ_PASSWORD" in env["RABBITMQ_DEFAULT_PASS"]
    assert any(":/var/lib/rabbitmq" in v for v in rabbitmq["volumes"])


@pytest.mark.parametrize("name", SERVICES)
def test_nameko_services(compose, name):
    service = compose["services"][name]
    assert service["build"] == "."
    assert service["command"] == ["nameko", "run", "--config", "config.yaml",
                                  f"nameko_services.{name}"]
    assert service["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    assert service["restart"] == "unless-stopped"
    env = service["environment"]
    assert "${RABBITMQ_USER" in env["AMQP_URI"] and "${RABBITMQ_PASSWORD" in env["AMQP_URI"]
    # each service keeps its data on a named volume of its own
    (volume,) = [v for v in service["volumes"] if v.endswith(":" + env["DATA_DIR"])]
    assert volume.split(":")[0] in compose["volumes"]


def test_data_volumes_are_not_shared(compose):
    volumes = [v.split(":")[0] for name in SERVICES for v in compose["services"][name]["volumes"]]
    assert len(volumes) == len(set(volumes))


def test_gateway(compose):
    gateway = compose["services"]["gateway"]
    assert gateway["command"] == ["python", "-m", "gateway"]
    assert "8080:8080" in gateway["ports"]
    assert gateway["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    assert set(gateway["depends_on"]) >= set(SERVICES)
    assert "${RABBITMQ_USER" in gateway["environment"]["AMQP_URI"]
    # liveness, not readiness: a stopped service must not get the gateway marked unhealthy
    assert "http://127.0.0.1:8080/health/live" in " ".join(gateway["healthcheck"]["test"])


def test_the_admin_token_comes_from_the_environment_with_no_default(compose):
    assert compose["services"]["gateway"]["environment"]["ADMIN_TOKEN"] == "${ADMIN_TOKEN:-}"


def test_no_hard_coded_guest_credentials():
    assert "guest" not in COMPOSE_FILE.read_text()


@pytest.fixture(scope="module")
def cluster():
    return yaml.safe_load(CLUSTER_FILE.read_text())


def test_cluster_nodes_share_a_required_cookie_and_discover_each_other(cluster):
    conf = (ROOT / "deploy" / "rabbitmq-cluster.conf").read_text()
    assert "cluster_formation.peer_discovery_backend = classic_config" in conf
    for index, node in enumerate(NODES, 1):
        service = cluster["services"][node]
        assert service["hostname"] == node
        assert f"cluster_formation.classic_config.nodes.{index} = rabbit@{node}" in conf
        assert "./deploy/rabbitmq-cluster.conf:/etc/rabbitmq/conf.d/20-cluster.conf:ro" in \
            service["volumes"]
        # required, with no default: a cookie in the file would be a secret in the repository
        assert service["environment"]["RABBITMQ_ERLANG_COOKIE"].startswith(
            "${RABBITMQ_ERLANG_COOKIE:?")
    data = [v.split(":")[0] for node in NODES for v in cluster["services"][node]["volumes"]
            if v.endswith(":/var/lib/rabbitmq")]
    assert len(set(data)) == 3


@pytest.mark.parametrize("name", SERVICES)
def test_cluster_services_run_twice_on_postgres_through_every_node(cluster, name):
    service = cluster["services"][name]
    assert service["deploy"]["replicas"] == 2
    assert service["command"][-1] == f"nameko_services.{name}"
    env = service["environment"]
    assert env["TOPOLOGY_FILE"] == "topology.quorum.yaml"
    assert env["RPC_QUEUE_TYPE"] == "quorum"
    assert env["DATABASE_URL"].startswith("postgresql://")
    uris = env["AMQP_URI"].split(";")
    assert [uri.split("@")[1].split(":")[0] for uri in uris] == list(NODES)
    assert all("${RABBITMQ_PASSWORD" in uri for uri in uris)
    assert set(service["depends_on"]) == {*NODES, "postgres"}


def test_cluster_gateway_uses_every_node(cluster):
    gateway = cluster["services"]["gateway"]
    assert gateway["environment"]["AMQP_URI"].count(";") == 2
    assert gateway["environment"]["TOPOLOGY_FILE"] == "topology.quorum.yaml"
    assert gateway["environment"]["ADMIN_TOKEN"] == "${ADMIN_TOKEN:-}"


def test_no_hard_coded_guest_credentials_in_the_cluster_file():
    assert "guest" not in CLUSTER_FILE.read_text()


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
@pytest.mark.parametrize("path", [COMPOSE_FILE, CLUSTER_FILE], ids=lambda p: p.name)
def test_docker_compose_config_is_valid(path):
    env = {**os.environ, "RABBITMQ_ERLANG_COOKIE": "a-cookie-for-the-check"}
    result = subprocess.run(["docker-compose", "-f", str(path), "config", "-q"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_the_cluster_file_refuses_to_start_without_a_cookie():
    env = {k: v for k, v in os.environ.items() if k != "RABBITMQ_ERLANG_COOKIE"}
    result = subprocess.run(["docker-compose", "-f", str(CLUSTER_FILE), "config", "-q"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode != 0 and "set RABBITMQ_ERLANG_COOKIE" in result.stderr
