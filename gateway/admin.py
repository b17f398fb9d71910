"""The gateway's admin API: the dead-letter operations of ``nameko-topology dlq`` over HTTP.

Off unless ``ADMIN_TOKEN`` is set (the app config's, else the environment's): then every
``/admin`` route answers 404. With it, each request needs ``Authorization: Bearer <token>``
(compared in constant time), else 401 with ``WWW-Authenticate: Bearer``. Every answer is JSON;
every action is logged with its ids and count, never the token.

Routes::

    GET    /admin/dead-letters?limit=&reason=&queue=&since=   records, head first (limit 100)
    GET    /admin/dead-letters/<id>                          one record, every header, the body
    POST   /admin/dead-letters/replay   {"ids": [...]} | {"reason": "..."} | {"all": true},
                                        optional "to_queue", "dry_run"
    DELETE /admin/dead-letters/<id>
    GET    /admin/queues                                     depth, ready, unacked, consumers
"""
import hmac
import logging
import os

from flask import Blueprint, current_app, jsonify, request

from nameko_topology.dlq.operations import (
    DeadLetters, DlqError, NoSuchQueue, Selection, parse_since,
)
from nameko_topology.model import load_topology

log = logging.getLogger(__name__)

ADMIN_TOKEN_KEY = "ADMIN_TOKEN"
DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 10000
MAX_IDS = 1000
MAX_TEXT = 1000

blueprint = Blueprint("admin", __name__, url_prefix="/admin")


def _error(status, message, field=None, headers=None):
    body = {"error": message}
    if field is not None:
        body["field"] = field
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


class _BadRequest(Exception):
    def __init__(self, message, field):
        super().__init__(message)
        self.field = field


@blueprint.errorhandler(_BadRequest)
def _bad_request(exc):
    return _error(400, str(exc), exc.field)


@blueprint.errorhandler(NoSuchQueue)
def _no_such_queue(exc):
    return _error(404, str(exc), "queue")


@blueprint.errorhandler(DlqError)
def _unavailable(exc):
    log.warning("admin: %s", exc)
    return _error(503, str(exc), headers={"Retry-After": "1"})


@blueprint.before_request
def _authorize():
    token = current_app.config.get(ADMIN_TOKEN_KEY) or os.environ.get(ADMIN_TOKEN_KEY)
    if not token:
        return _error(404, "not found")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode("utf-8", "surrogateescape"), token.encode()):
        log.warning("admin: %s %s refused: missing or wrong token", request.method, request.path)
        return _error(401, "a valid 'Authorization: Bearer <ADMIN_TOKEN>' header is required",
                      headers={"WWW-Authenticate": 'Bearer realm="admin"'})
    return None


def _dead_letters():
    """The app's :class:`DeadLetters`, made on first use (the topology of ``TOPOLOGY_FILE``)."""
    dead_letters = current_app.extensions.get("dead_letters")
    if dead_letters is None:
        dead_letters = current_app.extensions["dead_letters"] = DeadLetters(
            current_app.config["AMQP_URI"], load_topology(current_app.config["TOPOLOGY_FILE"]))
    return dead_letters


@blueprint.get("/dead-letters")
def list_dead_letters():
    limit = _query_int("limit", DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)
    reason, queue = _query_text("reason"), _query_text("queue")
    since = _query_text("since")
    if since is not None:
        try:
            since = parse_since(since)
        except ValueError as exc:
            raise _BadRequest(f"since: {exc}", "since") from None
    records = _dead_letters().list(queue=queue, reason=reason, since=since, limit=limit)
    log.info("admin list: queue=%r reason=%r count=%d", queue, reason, len(records))
    return jsonify({"count": len(records), "dead_letters": records})


@blueprint.get("/dead-letters/<dead_letter_id>")
def show_dead_letter(dead_letter_id):
    record = _dead_letters().show(dead_letter_id, queue=_query_text("queue"))
    log.info("admin show: id=%r found=%s", dead_letter_id, record is not None)
    if record is None:
        return _error(404, "no such dead letter")
    return jsonify(record)


@blueprint.post("/dead-letters/replay")
def replay_dead_letters():
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise _BadRequest("the body must be a JSON object", "body")
    unknown = sorted(set(body) - {"ids", "reason", "all", "to_queue", "dry_run", "queue"})
    if unknown:
        raise _BadRequest(f"unknown field(s): {', '.join(unknown)}", unknown[0])
    chosen = [key for key in ("ids", "reason", "all") if key in body]
    if len(chosen) != 1:
        raise _BadRequest("give exactly one of ids, reason or all", "body")
    ids, reason = body.get("ids", ()), body.get("reason")
    if "ids" in body and not (isinstance(ids, list) and 0 < len(ids) <= MAX_IDS and all(
            isinstance(i, str) and 0 < len(i) <= MAX_TEXT for i in ids)):
        raise _BadRequest(f"ids must be a list of 1 to {MAX_IDS} strings", "ids")
    if "reason" in body and not (isinstance(reason, str) and 0 < len(reason) <= MAX_TEXT):
        raise _BadRequest(f"reason must be a string of 1 to {MAX_TEXT} characters", "reason")
    if "all" in body and body["all"] is not True:
        raise _BadRequest("all must be true", "all")
    for name in ("to_queue", "queue"):
        if name in body and not (isinstance(body[name], str) and 0 < len(body[name]) <= 255):
            raise _BadRequest(f"{name} must be a queue name", name)
    if not isinstance(body.get("dry_run", False), bool):
        raise _BadRequest("dry_run must be true or false", "dry_run")
    outcome = _dead_letters().replay(
        Selection(ids=ids, reason=reason, all=body.get("all", False)),
        to_queue=body.get("to_queue"), dry_run=body.get("dry_run", False),
        queue=body.get("queue"))
    log.info("admin replay%s: ids=%r count=%d failed=%r missing=%r",
             " (dry run)" if body.get("dry_run") else "",
             [item["id"] for item in outcome["replayed"]], len(outcome["replayed"]),
             [item["id"] for item in outcome["not_replayed"]], outcome["missing"])
    return jsonify(outcome)


@blueprint.delete("/dead-letters/<dead_letter_id>")
def delete_dead_letter(dead_letter_id):
    outcome = _dead_letters().purge(Selection(ids=[dead_letter_id]),
                                    queue=_query_text("queue"))
    log.info("admin delete: ids=%r count=%d", outcome["purged"], len(outcome["purged"]))
    if not outcome["purged"]:
        return _error(404, "no such dead letter")
    return jsonify(outcome)


@blueprint.get("/queues")
def queues():
    stats = _dead_letters().queue_stats()
    log.info("admin queues: count=%d", len(stats))
    return jsonify(stats)


def _query_int(name, default, maximum):
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 6 or not 1 <= int(raw) <= maximum:
        raise _BadRequest(f"{name} must be an integer from 1 to {maximum}", name)
    return int(raw)


def _query_text(name):
    raw = request.args.get(name)
    if raw is not None and not 0 < len(raw) <= MAX_TEXT:
        raise _BadRequest(f"{name} must be 1 to {MAX_TEXT} characters", name)
    return raw
