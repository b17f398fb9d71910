"""The gateway's health routes: ``/health`` (the broker and every service), ``/health/live``
(this process answers) and ``/health/ready`` (the pipeline can take work).

Readiness is what a load balancer or an orchestrator waits for before sending traffic: the
broker reachable, every service answering its ``health()`` RPC, every queue of the topology
declared, and every queue that names a ``consumer`` in the topology consumed by at least one
process. Liveness asks nothing of anyone else, so that a broker outage never gets a healthy
gateway restarted.
"""
from concurrent.futures import ThreadPoolExecutor

from flask import Blueprint, current_app, jsonify

from gateway.rpc import RemoteError
from nameko_topology.management import ManagementError

blueprint = Blueprint("health", __name__)


@blueprint.get("/health")
def health():
    rpc = current_app.extensions["rpc"]
    services = list(current_app.config["SERVICES"])
    timeout = current_app.config["HEALTH_TIMEOUT"]
    broker = _broker_health(rpc, timeout)
    statuses = _services_health(rpc, services, timeout, broker)
    ok = broker == "ok" and all(status == "ok" for status in statuses.values())
    body = {"status": "ok" if ok else "unavailable", "gateway": "ok", "broker": broker,
            "services": statuses}
    return jsonify(body), 200 if ok else 503


@blueprint.get("/health/live")
def live():
    return jsonify({"status": "live"})


@blueprint.get("/health/ready")
def ready():
    rpc = current_app.extensions["rpc"]
    services = list(current_app.config["SERVICES"])
    timeout = current_app.config["HEALTH_TIMEOUT"]
    broker = _broker_health(rpc, timeout)
    # the management API in parallel with the services: the check takes one timeout in all
    with ThreadPoolExecutor(max_workers=1) as pool:
        queues = pool.submit(_queues_readiness, current_app.extensions["management"],
                             current_app.extensions["topology"])
        statuses = _services_health(rpc, services, timeout, broker)
        queue_statuses = queues.result()
    ok = (broker == "ok" and all(status == "ok" for status in statuses.values())
          and all(status == "ok" for status in queue_statuses.values()))
    body = {"status": "ready" if ok else "not ready", "broker": broker, "services": statuses,
            "queues": queue_statuses}
    return jsonify(body), 200 if ok else 503


def _broker_health(rpc, timeout):
    try:
        rpc.check_broker(timeout=timeout)
    except Exception as exc:
        return "unavailable: {}".format(exc)
    return "ok"


def _services_health(rpc, services, timeout, broker):
    if broker != "ok":
        return {name: "unavailable: broker unavailable" for name in services}
    # In parallel, so that the check takes one timeout, however many services are down.
    with ThreadPoolExecutor(max_workers=max(len(services), 1)) as pool:
        checks = {name: pool.submit(_service_health, rpc, name, timeout) for name in services}
    return {name: check.result() for name, check in checks.items()}


def _service_health(rpc, service, timeout):
    try:
        result = rpc.call(service, "health", timeout=timeout)
    except RemoteError as exc:
        return "unavailable: {}: {}".format(exc.exc_type, exc.value)
    except Exception as exc:  # unavailable, timeout, or anything else: report, don't raise
        return "unavailable: {}".format(exc)
    if isinstance(result, dict) and result.get("status") == "ok":
        return "ok"
    return "unavailable: health() returned {!r}".format(result)


def _queues_readiness(management, topology):
    """Each declared queue's status: ``ok``, ``missing`` (not declared on the broker), or
    ``no consumer`` (its topology ``consumer`` is not consuming it); ``unknown: ...`` for all
    when the management API cannot say."""
    try:
        live = {queue["name"]: queue for queue in management.vhost_entities("queues")}
    except (ManagementError, OSError, ValueError) as exc:
        return {name: "unknown: {}".format(exc) for name in topology.declared_queues}
    statuses = {}
    for name, spec in topology.declared_queues.items():
        if name not in live:
            statuses[name] = "missing"
        elif spec.consumer and not live[name].get("consumers"):
            statuses[name] = f"no consumer ({spec.consumer})"
        else:
            statuses[name] = "ok"
    return statuses
