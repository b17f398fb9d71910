"""Static checks of docker-compose.yml (no Docker engine needed)."""
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
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


def test_the_admin_token_comes_from_the_environment_with_no_default(compose):
    assert compose["services"]["gateway"]["environment"]["ADMIN_TOKEN"] == "${ADMIN_TOKEN:-}"


def test_no_hard_coded_guest_credentials():
    assert "guest" not in COMPOSE_FILE.read_text()


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_docker_compose_config_is_valid():
    result = subprocess.run(["docker-compose", "-f", str(COMPOSE_FILE), "config", "-q"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
