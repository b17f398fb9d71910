"""``nameko-topology dlq``: the dead-letter operations from the command line.

Exit codes: 0 done, 1 an error or nothing matched, 2 a usage error (argparse's).
"""
import argparse
import json
import os
import sys

from nameko_topology.constants import DEFAULT_AMQP_URI, DEFAULT_TOPOLOGY_FILE
from nameko_topology.dlq.operations import DeadLetters, DlqError, Selection, parse_since
from nameko_topology.model import load_topology

#: width of the reason and body columns of ``dlq list``
REASON_WIDTH = 40
BODY_WIDTH = 40
QUEUE_HELP = "the dead-letter queue (default: the one the topology's dead-letter exchanges feed)"


def add_parser(commands):
    """Add ``dlq`` and its subcommands to the ``nameko-topology`` subparsers ``commands``."""
    dlq = commands.add_parser("dlq", help="list, show, replay, purge and move dead letters")
    dlq.add_argument("--amqp-uri", default=os.environ.get("AMQP_URI", DEFAULT_AMQP_URI),
                     help="the broker and vhost (default: $AMQP_URI, else %(default)s)")
    dlq.add_argument("--management-url", help="RabbitMQ's management API, e.g. "
                     "http://host:15672 (default: the URI's host, $RABBITMQ_MANAGEMENT_PORT)")
    dlq.add_argument("--file", default=os.environ.get("TOPOLOGY_FILE", DEFAULT_TOPOLOGY_FILE),
                     help="the topology file (default: $TOPOLOGY_FILE, else %(default)s)")
    dlq.add_argument("--queue", help=QUEUE_HELP)
    actions = dlq.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="the dead letters, head first; removes nothing")
    listing.add_argument("--reason", help="only those whose reason contains TEXT")
    listing.add_argument("--since", type=_since, help="only those dead-lettered since TIME "
                         "(ISO-8601, or 30s / 15m / 2h / 7d ago)")
    listing.add_argument("--limit", type=_positive, help="at most N")
    listing.add_argument("--json", action="store_true", help="JSON records, not a table")
    listing.set_defaults(dlq_action=_list)

    show = actions.add_parser("show", help="one dead letter: every header, the body")
    show.add_argument("id", metavar="ID")
    show.set_defaults(dlq_action=_show)

    replay = actions.add_parser("replay", help="publish dead letters back, then remove them")
    replay.add_argument("ids", nargs="*", metavar="ID")
    replay.add_argument("--all", action="store_true", help="every dead letter")
    replay.add_argument("--reason", help="those whose reason contains TEXT")
    replay.add_argument("--to-queue", metavar="Q", help="to queue Q instead of the original "
                        "exchange and routing key")
    replay.add_argument("--dry-run", action="store_true", help="say what would be replayed")
    replay.add_argument("--rate", type=_positive_number, metavar="N",
                        help="at most N messages a second")
    replay.set_defaults(dlq_action=_replay, chooser=replay)

    purge = actions.add_parser("purge", help="delete dead letters")
    purge.add_argument("ids", nargs="*", metavar="ID")
    purge.add_argument("--all", action="store_true", help="every dead letter")
    purge.add_argument("--yes", action="store_true", help="do not ask")
    purge.set_defaults(dlq_action=_purge, chooser=purge)

    move = actions.add_parser("move", help="move dead letters, as they are, to another queue")
    move.add_argument("ids", nargs="+", metavar="ID")
    move.add_argument("--to-queue", metavar="Q", required=True)
    move.set_defaults(dlq_action=_move)
    for action in (listing, show, replay, purge, move):
        # SUPPRESS: given before the action or after it, neither default hides the other
        action.add_argument("--queue", default=argparse.SUPPRESS, help=QUEUE_HELP)
    return dlq


def _selection(args):
    chosen = [bool(args.ids), args.all, getattr(args, "reason", None) is not None]
    if sum(chosen) != 1:
        names = "ID..., --all or --reason" if hasattr(args, "reason") else "ID... or --all"
        args.chooser.error(f"give exactly one of {names}")
    return Selection(ids=args.ids, reason=getattr(args, "reason", None), all=args.all)


def run(args):
    """Run a parsed ``dlq`` command line; the exit code."""
    selection = _selection(args) if hasattr(args, "chooser") else None
    try:
        dead_letters = DeadLetters(args.amqp_uri, load_topology(args.file), queue=args.queue,
                                   management_url=args.management_url)
        return args.dlq_action(dead_letters, args, selection)
    except DlqError as exc:
        print(f"dlq: {exc}", file=sys.stderr)
        return 1


def _list(dead_letters, args, _):
    records = dead_letters.list(reason=args.reason, since=args.since, limit=args.limit)
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        _print_table(records)
    if not records:
        print(f"dlq: no dead letters matched in {dead_letters.dead_letter_queue()}",
              file=sys.stderr)
        return 1
    return 0


def _print_table(records):
    rows = [("ID", "DEAD-LETTERED", "QUEUE", "REASON", "ATTEMPTS", "TYPE", "REPLAYS", "BODY")]
    for rec in records:
        rows.append((rec["id"], (rec["dead_lettered_at"] or "-")[:19], rec["queue"] or "-",
                     _cut(rec["reason"] or "-", REASON_WIDTH),
                     "-" if rec["attempts"] is None else str(rec["attempts"]),
                     rec["message_type"] or "-", str(rec["replay_count"]),
                     _cut(rec["body_preview"], BODY_WIDTH)))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])


def _cut(text, width):
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."


def _show(dead_letters, args, _):
    rec = dead_letters.show(args.id)
    if rec is None:
        print(f"dlq: no dead letter {args.id} in {dead_letters.dead_letter_queue()}",
              file=sys.stderr)
        return 1
    body = rec.pop("body")
    for key in ("id", "source", "dead_lettered_at", "queue", "reason", "attempts",
                "message_type", "exchange", "routing_key", "exception_type", "service",
                "handler", "replay_count", "body_bytes"):
        print(f"{key}: {rec[key]}")
    print("properties:")
    for name, value in rec["properties"].items():
        print(f"  {name}: {json.dumps(value)}")
    print("headers:")
    for name, value in rec["headers"].items():
        shown = value if isinstance(value, str) else json.dumps(value, indent=2)
        print(f"  {name}: " + shown.replace("\n", "\n    "))
    print("body:")
    print(body)
    return 0


def _replay(dead_letters, args, selection):
    outcome = dead_letters.replay(selection, to_queue=args.to_queue, dry_run=args.dry_run,
                                  rate=args.rate)
    verb = "would replay" if args.dry_run else "replayed"
    for item in outcome["replayed"]:
        print(f"{verb} {item['id']} -> exchange {item['exchange']!r} routing key "
              f"{item['routing_key']!r}")
    return _report(outcome, "replayed", verb)


def _move(dead_letters, args, _):
    outcome = dead_letters.move(Selection(ids=args.ids), args.to_queue)
    for item in outcome["moved"]:
        print(f"moved {item['id']} -> queue {item['routing_key']!r}")
    return _report(outcome, "moved", "moved")


def _report(outcome, key, verb):
    for item in outcome["not_" + key]:
        print(f"not {key} {item['id']}: {item['error']} (it stays in the dead-letter queue)",
              file=sys.stderr)
    for missing in outcome["missing"]:
        print(f"no dead letter {missing}", file=sys.stderr)
    print(f"{verb} {len(outcome[key])}, failed {len(outcome['not_' + key])}, "
          f"not found {len(outcome['missing'])}")
    failed = outcome["not_" + key] or outcome["missing"] or not outcome[key]
    return 1 if failed else 0


def _purge(dead_letters, args, selection):
    queue = dead_letters.dead_letter_queue()
    what = "every dead letter" if args.all else f"{len(selection.ids)} dead letter(s)"
    if not args.yes:
        if not sys.stdin.isatty():
            print(f"dlq: refusing to purge {what} of {queue}: no terminal to ask on; "
                  f"give --yes", file=sys.stderr)
            return 1
        answer = input(f"delete {what} of {queue}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("dlq: nothing deleted", file=sys.stderr)
            return 1
    outcome = dead_letters.purge(selection)
    for missing in outcome["missing"]:
        print(f"no dead letter {missing}", file=sys.stderr)
    print(f"purged {len(outcome['purged'])}, not found {len(outcome['missing'])}")
    return 1 if outcome["missing"] or not outcome["purged"] else 0


def _since(text):
    try:
        return parse_since(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def _positive_number(text):
    try:
        value = float(text)
    except ValueError:
        value = 0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number > 0")
    return value
