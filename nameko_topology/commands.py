"""The ``plan`` and ``export`` subcommands of ``nameko-topology`` (registered by cli.py)."""
import json
import os
import sys

from nameko_topology.constants import (
    DEFAULT_AMQP_URI, DEFAULT_TOPOLOGY_FILE, MANAGEMENT_URL_CONFIG_KEY,
)
from nameko_topology.model import load_topology
from nameko_topology.uris import redact

MANAGEMENT_URL_HELP = (f"the management API (default: ${MANAGEMENT_URL_CONFIG_KEY}, else "
                       "http://<the AMQP host>:$RABBITMQ_MANAGEMENT_PORT, port 15672)")
EXPORT_FORMATS = ("definitions", "asyncapi", "mermaid", "dot", "svg")
#: exit codes of plan
IN_SYNC, ERROR, DRIFT = 0, 1, 2


def _common(command, amqp_uri=True):
    command.add_argument("file", nargs="?", default=DEFAULT_TOPOLOGY_FILE, metavar="FILE",
                         help=f"the topology file (default: {DEFAULT_TOPOLOGY_FILE})")
    if amqp_uri:
        command.add_argument(
            "--amqp-uri", default=os.environ.get("AMQP_URI", DEFAULT_AMQP_URI),
            help="the broker; its vhost is the one compared (default: $AMQP_URI, else "
                 "%(default)s)")


def register_plan(commands):
    plan = commands.add_parser(
        "plan", help="compare the file with the live vhost (exit 0 in sync, 2 drift, 1 error)")
    _common(plan)
    plan.add_argument("--management-url", help=MANAGEMENT_URL_HELP)
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.add_argument("--strict", action="store_true",
                      help="entities on the broker that the file does not declare are drift")
    plan.set_defaults(run=run_plan)


def register_export(commands):
    export = commands.add_parser(
        "export", help="write the topology as RabbitMQ definitions, AsyncAPI 3.0 or a diagram")
    _common(export)
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    export.add_argument("-o", "--output", metavar="OUT", help="the file to write (default: "
                        "standard output)")
    export.add_argument("--vhost", help="definitions, asyncapi: the vhost (default: the one "
                        "of --amqp-uri)")
    export.set_defaults(run=run_export)


def run_plan(args):
    """``plan``: read the vhost, print what differs; the exit code says whether it does."""
    from nameko_topology.management import ManagementApi, ManagementError
    from nameko_topology.plan import plan, read_vhost, render

    topology = load_topology(args.file)
    api = ManagementApi(args.amqp_uri, url=args.management_url
                        or os.environ.get(MANAGEMENT_URL_CONFIG_KEY))
    try:
        broker = read_vhost(api)
    except ManagementError as exc:
        # the API's URL in the error carries no credentials: they go in a header
        print(f"cannot read vhost {api.vhost!r} of {redact(args.amqp_uri)}: {exc}",
              file=sys.stderr)
        return ERROR
    result = plan(topology, broker, vhost=api.vhost)
    if args.json:
        print(json.dumps(result.as_json(args.strict), indent=2, sort_keys=True))
    else:
        print(render(result, args.file, args.strict))
    return DRIFT if result.drifted(args.strict) else IN_SYNC


def run_export(args):
    """``export``: the topology in another format, to ``-o`` or standard output."""
    from nameko_topology.export import ExportError, export

    topology = load_topology(args.file)
    try:
        data = export(topology, args.format, amqp_uri=args.amqp_uri, vhost=args.vhost)
    except ExportError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.output:
        try:
            with open(args.output, "w") as out:
                out.write(data)
        except OSError as exc:
            print(f"cannot write {args.output}: {exc.strerror}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(data)
    return 0
