"""Per-message cost of the service metrics: ``python -m bench.metrics [-n 200000]``.

Times, in this process and without a broker, what ``@handle`` adds to each message
(``QueueMetrics``: the handler-time start and finish, one observation, one counter increment)
and what ``@rpc`` adds to each call (``RpcMetrics``), against the label lookup that
pre-bound children avoid. Prints nanoseconds per call (best of 5 repetitions).
"""
import argparse
import timeit

from nameko_topology import metrics


class Worker:
    """Stands for a nameko WorkerContext (hashable)."""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200_000, help="calls per repetition")
    number = parser.parse_args(argv).n

    queue = metrics.QueueMetrics("bench", "bench_queue")
    method = metrics.RpcMetrics("bench", "bench_method")
    worker = Worker()
    messages = iter(range(10 ** 12))

    def handled():  # what @handle records for one message that is acked
        queue.started(worker)
        queue.finished(worker)
        queue.acked.inc()

    def called():  # what @rpc records for one call
        message = next(messages)
        method.started(message)
        method.finished(message)

    def labelled():  # the label lookup + inc, per message, that pre-bound children avoid
        metrics.MESSAGES.labels("bench", "bench_queue", metrics.ACKED).inc()

    for name, fn in (("@handle, one acked message", handled), ("@rpc, one call", called),
                     ("counter .labels(...).inc() (avoided)", labelled),
                     ("bound counter .inc() alone", queue.acked.inc)):
        best = min(timeit.repeat(fn, number=number, repeat=5)) / number
        print(f"{name:40s} {best * 1e9:8.0f} ns")


if __name__ == "__main__":
    main()
