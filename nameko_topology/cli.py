"""The ``nameko-topology`` command: validate, show and apply a ``topology.yaml``; ``dlq``
(:mod:`nameko_topology.dlq.cli`)."""
import argparse
import os
import sys

import kombu
from amqp.exceptions import AccessRefused
from kombu.exceptions import OperationalError

from nameko_topology.constants import DEFAULT_AMQP_URI, DEFAULT_TOPOLOGY_FILE
from nameko_topology.dlq import cli as dlq_cli
from nameko_topology.commands import MANAGEMENT_URL_HELP, register_export, register_plan
from nameko_topology.exceptions import TopologyError, TopologyMismatch
from nameko_topology.model import load_topology
from nameko_topology.retries import duration_text, jitter_range
from nameko_topology.uris import connect, redact, redact_text

DEFAULT_FILE = DEFAULT_TOPOLOGY_FILE


def main(argv=None):
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.run(args)
    except (TopologyError, TopologyMismatch) as exc:
        print(exc, file=sys.stderr)
        return 1


def _parser():
    parser = argparse.ArgumentParser(
        prog="nameko-topology",
        description="Validate, show and apply the broker topology declared in topology.yaml.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    validate = commands.add_parser("validate", help="check the file and report every problem")
    validate.set_defaults(run=_validate)

    show = commands.add_parser("show", help="print the routing graph and the message types")
    show.set_defaults(run=_show)

    apply = commands.add_parser("apply", help="declare the exchanges, queues and bindings")
    apply.add_argument(
        "--amqp-uri",
        default=os.environ.get("AMQP_URI", DEFAULT_AMQP_URI),
        help="the broker (default: $AMQP_URI, else %(default)s)",
    )
    apply.set_defaults(run=_apply)

    shell = commands.add_parser(
        "shell", help="nameko's shell, with n.topology, n.publish, n.queues, n.dead_letters")
    shell.add_argument("--config", default="config.yaml",
                       help="the nameko config file (default: %(default)s)")
    shell.add_argument("--interface", choices=("bpython", "ipython", "plain"),
                       help="the interpreter (default: the first one installed)")
    shell.set_defaults(run=_shell)

    dlq_cli.add_parser(commands).set_defaults(run=dlq_cli.run)
    apply.add_argument("--management-url", help=MANAGEMENT_URL_HELP)
    register_plan(commands)
    register_export(commands)

    for command in (validate, show, apply):
        command.add_argument(
            "file", nargs="?", default=DEFAULT_FILE, metavar="FILE",
            help=f"the topology file (default: {DEFAULT_FILE})",
        )
    return parser


def _validate(args):
    """``validate``: load the file, say what it declares."""
    topology = load_topology(args.file)
    print(f"{args.file}: valid ({_summary(topology)})")
    return 0


def _show(args):
    """``show``: print each exchange with the queues it routes to, then the message types."""
    topology = load_topology(args.file)
    for exchange in topology.exchanges.values():
        print(f"{exchange.name} ({exchange.type}, {_durability(exchange)})")
        bindings = [b for b in topology.bindings if b.exchange == exchange.name]
        for binding in bindings:
            queue = topology.queue(binding.queue)
            for key in binding.routing_keys:
                print(f"  --{_binding_label(binding, key)}--> {_describe_queue(queue)}")
        if not bindings:
            print("  (no bindings)")
    unbound = [name for name in topology.queues if not topology.bindings_of(name)]
    if unbound:
        print(f"queues without bindings: {', '.join(unbound)}")
    _show_retry_queues(topology)
    print()
    print("message types:")
    for message in topology.messages.values():
        fields = ", ".join(
            f"{f.name}{'' if f.required else '?'}: {f.type}" for f in message.fields
        )
        print(f"  {message.name}: {message.exchange} / {message.routing_key} ({fields})")
    return 0


def _apply(args):
    """``apply``: declare the topology on the broker at ``--amqp-uri``."""
    # imported here so that validate and show work without the declarer's dependencies
    from nameko_topology.declarer import declare_topology

    topology = load_topology(args.file)
    uri = redact(args.amqp_uri)
    with kombu.Connection(args.amqp_uri, connect_timeout=5) as connection:
        # connect first, so that an unreachable broker fails at once whatever retrying the
        # declaration might do; py-amqp raises a refused login as AccessRefused, a channel error
        try:
            connect(connection)  # each node of a failover URI in turn
            declare_topology(connection, topology)
        except (OperationalError, AccessRefused, *connection.connection_errors) as exc:
            print(f"cannot reach the broker at {uri}: {redact_text(str(exc))}", file=sys.stderr)
            return 1
    print(f"declared {_summary(topology, with_messages=False)} on {uri}")
    return _apply_policies(args, topology)


def _apply_policies(args, topology):
    from nameko_topology.declarer import declare_policies
    from nameko_topology.management import ManagementError

    try:
        changed = declare_policies(args.amqp_uri, topology, args.management_url)
    except ManagementError as exc:
        print(f"cannot set the policies: {exc}", file=sys.stderr)
        return 1
    if topology.policies:
        print(f"policies: {len(changed)} of {len(topology.policies)} set"
              f"{': ' + ', '.join(changed) if changed else ' (all as declared)'}")
    return 0


def _shell(args):
    """``shell``: nameko's interactive shell with the topology's helpers."""
    from nameko_topology.shell import run  # imports nameko and eventlet

    try:
        run(args.config, args.interface)
    except OSError as exc:  # the config file
        print(f"cannot read {args.config}: {exc}", file=sys.stderr)
        return 1
    except (OperationalError, AccessRefused, *kombu.Connection().connection_errors,
            *kombu.Connection().channel_errors) as exc:
        print(f"cannot reach the broker: {exc}", file=sys.stderr)
        return 1
    return 0


def _show_retry_queues(topology):
    """Each retry queue: how long its messages wait, where they return, after which
    attempts."""
    if not topology.retry_queues:
        return
    print()
    print("retry queues:")
    for spec in topology.retry_queues.values():
        retry = topology.queue(spec.retry_for).retry
        wait = duration_text(spec.message_ttl)
        if retry.jitter:
            shortest, _ = jitter_range(spec.message_ttl, retry.jitter)
            wait = f"{duration_text(shortest)}-{wait}"
        attempts = ", ".join(map(str, retry.attempts_at(spec.message_ttl)))
        print(f"  {spec.name} ({spec.type}, {_durability(spec)}): waits {wait}, then back to "
              f"{spec.retry_for}; after attempt{'s' if ',' in attempts else ''} {attempts} "
              f"of {retry.max_attempts}")


def _summary(topology, with_messages=True):
    counts = [
        _count(len(topology.exchanges), "exchange"),
        _count(len(topology.queues), "queue"),
        _count(len(topology.bindings), "binding"),
    ]
    if topology.retry_queues:
        counts.append(_count(len(topology.retry_queues), "retry queue"))
    if with_messages:
        counts.append(_count(len(topology.messages), "message type"))
    return ", ".join(counts)


def _count(number, noun):
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _durability(entity):
    return "durable" if entity.durable else "transient"


def _binding_label(binding, key):
    arguments = ", ".join(f"{name}={value}" for name, value in binding.arguments.items())
    return " ".join(part for part in (key, arguments) if part) or "(any)"


def _describe_queue(queue):
    # the queue type and dead-letter target are shown in words, the other arguments as is
    arguments = {
        name: value for name, value in queue.broker_arguments.items()
        if name != "x-queue-type" and not name.startswith("x-dead-letter-")
    }
    details = [queue.type, _durability(queue)]
    details += [f"{name}={value}" for name, value in arguments.items()]
    text = f"{queue.name} ({', '.join(details)})"
    if queue.dead_letter is not None:
        target = queue.dead_letter.exchange
        if queue.dead_letter.routing_key is not None:
            target += f" [{queue.dead_letter.routing_key}]"
        text += f" (DLX -> {target})"
    return text


if __name__ == "__main__":
    sys.exit(main())
