"""The routing graph as a diagram: Mermaid, Graphviz dot, and SVG rendered by Graphviz.

Publishing service -> exchange -> (routing key) -> queue -> consuming service. Dead-letter
edges are dashed; a queue's retry queues hang off it with bold edges there and back (a
retry queue has no binding: the handler publishes to it, and its messages return through the
default exchange once their TTL is up).
"""
import re
import shutil
import subprocess
from dataclasses import dataclass

from nameko_topology.retries import duration_text

GRAPHVIZ_HINT = "svg needs Graphviz's dot: install graphviz (apt-get install graphviz)"


@dataclass(frozen=True)
class Node:
    id: str
    label: str
    kind: str  # exchange, queue, retry_queue, service


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str
    kind: str  # publish, route, consume, dead_letter, retry, retry_back


def graph(topology):
    """``(nodes, edges)`` of ``topology``, in the file's order."""
    nodes, edges = {}, []

    def node(kind, name, label=None):
        key = (kind if kind != "retry_queue" else "queue", name)
        if key not in nodes:
            base = f"{key[0][0]}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"
            taken = {n.id for n in nodes.values()}
            identifier = next(candidate for n in range(1, len(nodes) + 2)
                              if (candidate := base if n == 1 else f"{base}_{n}") not in taken)
            nodes[key] = Node(identifier, label or name, kind)
        return nodes[key].id

    for exchange in topology.exchanges.values():
        node("exchange", exchange.name, f"{exchange.name} ({exchange.type})")
    for message in topology.messages.values():
        if message.publisher:
            edges.append(Edge(node("service", message.publisher),
                              node("exchange", message.exchange), message.name, "publish"))
    for spec in topology.declared_queues.values():
        if spec.retry_for:
            retry = node("retry_queue", spec.name,
                         f"{spec.name} (waits {duration_text(spec.message_ttl)})")
            edges.append(Edge(node("queue", spec.retry_for), retry, "retry", "retry"))
            edges.append(Edge(retry, node("queue", spec.retry_for),
                              f"after {duration_text(spec.message_ttl)}", "retry_back"))
            continue
        queue = node("queue", spec.name)
        for binding in topology.bindings_of(spec.name):
            for key in binding.routing_keys:
                edges.append(Edge(node("exchange", binding.exchange), queue,
                                  key or "(any)", "route"))
        if spec.consumer:
            edges.append(Edge(queue, node("service", spec.consumer), "", "consume"))
        if spec.dead_letter is not None:
            label = "dead-letter"
            if spec.dead_letter.routing_key is not None:
                label += f" [{spec.dead_letter.routing_key}]"
            edges.append(Edge(queue, node("exchange", spec.dead_letter.exchange), label,
                              "dead_letter"))
    return list(nodes.values()), edges


# -- Mermaid ---------------------------------------------------------------------------------

_MERMAID_SHAPES = {"exchange": '{{{{"{}"}}}}', "queue": '[("{}")]',
                   "retry_queue": '[("{}")]:::retry', "service": '(["{}"])'}
_MERMAID_ARROWS = {"publish": "-->", "route": "-->", "consume": "-->",
                   "dead_letter": "-.->", "retry": "==>", "retry_back": "==>"}


def mermaid(topology):
    """A Mermaid flowchart of ``topology``."""
    nodes, edges = graph(topology)
    lines = ["flowchart LR"]
    lines += [f"  {n.id}{_MERMAID_SHAPES[n.kind].format(_mermaid_text(n.label))}" for n in nodes]
    for edge in edges:
        label = f'|"{_mermaid_text(edge.label)}"|' if edge.label else ""
        lines.append(f"  {edge.source} {_MERMAID_ARROWS[edge.kind]}{label} {edge.target}")
    lines.append("  classDef retry stroke-dasharray: 4 3")
    return "\n".join(lines) + "\n"


def _mermaid_text(text):
    # Mermaid reads "#...;" as an entity code and a quote as the end of the label
    return text.replace("#", "#35;").replace('"', "#quot;")


# -- Graphviz --------------------------------------------------------------------------------

_DOT_NODES = {"exchange": 'shape=hexagon', "queue": 'shape=cylinder',
              "retry_queue": 'shape=cylinder, style=dashed',
              "service": 'shape=box, style=rounded'}
_DOT_EDGES = {"publish": "", "route": "", "consume": "",
              "dead_letter": ", style=dashed, color=firebrick",
              "retry": ", style=bold, color=darkorange", "retry_back": ", style=bold, color=darkorange"}


def dot(topology):
    """A Graphviz digraph of ``topology``."""
    nodes, edges = graph(topology)
    lines = ["digraph topology {", "  rankdir=LR;", '  node [fontname="Helvetica"];',
             '  edge [fontname="Helvetica"];']
    lines += [f"  {n.id} [label={_dot_text(n.label)}, {_DOT_NODES[n.kind]}];" for n in nodes]
    lines += [f"  {e.source} -> {e.target} [label={_dot_text(e.label)}{_DOT_EDGES[e.kind]}];"
              for e in edges]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_text(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def svg(topology):
    """``topology`` rendered as SVG by Graphviz's ``dot``.

    :raises ExportError: ``dot`` is not installed, or fails.
    """
    from nameko_topology.export import ExportError

    program = shutil.which("dot")
    if program is None:
        raise ExportError(GRAPHVIZ_HINT)
    result = subprocess.run([program, "-Tsvg"], input=dot(topology), capture_output=True,
                            text=True, timeout=60)
    if result.returncode != 0:
        raise ExportError(f"dot failed: {result.stderr.strip()}")
    return result.stdout
