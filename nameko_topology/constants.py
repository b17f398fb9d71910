"""Every nameko config key the framework reads, with its default.

As in nameko's own ``constants.py``: the keys are read from the container config, which
``config.yaml`` fills from the environment (``${VAR:default}``); a container's extensions read
no environment variable. The CLI and the test helpers, which have no container config, read
``AMQP_URI`` and ``RABBITMQ_MANAGEMENT_PORT`` from the environment.
"""
from nameko.constants import AMQP_URI_CONFIG_KEY  # noqa: F401 (the broker: nameko's key)

#: the broker of a config, a CLI or a test run that names none
DEFAULT_AMQP_URI = "amqp://guest:guest@localhost:5672/"

#: the topology file every topology-aware extension loads
TOPOLOGY_FILE_CONFIG_KEY = "TOPOLOGY_FILE"
DEFAULT_TOPOLOGY_FILE = "topology.yaml"

#: an SQLAlchemy URL for every service's tables; unset: a SQLite file per service in DATA_DIR
DATABASE_URL_CONFIG_KEY = "DATABASE_URL"
DATA_DIR_CONFIG_KEY = "DATA_DIR"
DEFAULT_DATA_DIR = "./data"

#: unacked deliveries per ``@handle`` consumer; unset: the container's ``max_workers``
PREFETCH_COUNT_CONFIG_KEY = "PREFETCH_COUNT"

#: the largest message body consumed or published, in bytes; a queue's ``max_message_bytes``
#: in topology.yaml takes precedence for what that queue consumes
MAX_MESSAGE_BYTES_CONFIG_KEY = "MAX_MESSAGE_BYTES"
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024

#: ``gc.freeze()`` once the container is set up (see gcfreeze.py)
GC_FREEZE_CONFIG_KEY = "GC_FREEZE_AT_START"
DEFAULT_GC_FREEZE = False

#: seconds after which a relay's claim on an outbox row it never deleted is void (it died, or
#: the broker would not take the message), and any relay may adopt the row
OUTBOX_CLAIM_LEASE_CONFIG_KEY = "OUTBOX_CLAIM_LEASE_SECONDS"
DEFAULT_OUTBOX_CLAIM_LEASE = 10
#: seconds between a relay's sweeps for rows to adopt, and its longest idle wait
OUTBOX_POLL_CONFIG_KEY = "OUTBOX_POLL_SECONDS"
DEFAULT_OUTBOX_POLL = 1.0
#: the most messages one relay batch publishes
OUTBOX_BATCH_SIZE_CONFIG_KEY = "OUTBOX_BATCH_SIZE"
DEFAULT_OUTBOX_BATCH_SIZE = 100

#: the port of RabbitMQ's management API on the broker's host
MANAGEMENT_PORT_CONFIG_KEY = "RABBITMQ_MANAGEMENT_PORT"
DEFAULT_MANAGEMENT_PORT = 15672
#: the management API's URL (http://host:15672), when it is not the AMQP host on that port. A
#: service whose config sets it applies the topology's policies at start-up
MANAGEMENT_URL_CONFIG_KEY = "RABBITMQ_MANAGEMENT_URL"

#: the type of a service's RPC queue (``rpc-<service>``): ``classic`` (nameko's, on the node that
#: declared it) or ``quorum`` (replicated, for a cluster: RPC goes on when a node dies). The type
#: of a live queue cannot change, so switching means deleting the queue first
RPC_QUEUE_TYPE_CONFIG_KEY = "RPC_QUEUE_TYPE"
DEFAULT_RPC_QUEUE_TYPE = "classic"
RPC_QUEUE_TYPES = ("classic", "quorum")

#: the port each service process serves its Prometheus metrics on (``GET /metrics``, on every
#: interface: Prometheus scrapes from elsewhere); unset: no server (see metrics.py)
METRICS_PORT_CONFIG_KEY = "METRICS_PORT"

#: ``console`` or ``file:PATH``: trace with OpenTelemetry (see tracing.py); unset: no tracing
TRACING_CONFIG_KEY = "TRACING"
#: set: trace with OpenTelemetry, exporting over OTLP/HTTP to this endpoint
OTLP_ENDPOINT_CONFIG_KEY = "OTEL_EXPORTER_OTLP_ENDPOINT"
