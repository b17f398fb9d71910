"""Retry policies: the durations of a ``retry:`` block, the delay before each retry, and the
names of the retry queues where a message waits meanwhile.

A policy gives its delays either as a list (``delays: [1s, 5s, 30s]``, the last one repeating)
or as a back-off (``initial`` times ``multiplier`` per retry, capped at ``max``); ``delay_ms:
N`` is shorthand for ``delays: [N]``. Each distinct delay is one retry queue,
``<queue>.retry.<delay>``: a message waits there until its TTL dead-letters it back to its
queue. The delay is in the name so that a changed policy declares new queues instead of
clashing with the arguments of the old ones, whose waiting messages still come back.

This module knows nothing of the rest of the topology: validation and the model both read
a block through it, so the queues validated are the queues declared.
"""
import math
import random
import re

DURATION_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
_DURATION = re.compile(r"([0-9]+)(ms|s|m|h)")
#: handler attempts in all, the first included, when a block does not say
DEFAULT_MAX_ATTEMPTS = 3
#: the delay when a block gives none (``delay_ms``' old default)
DEFAULT_DELAY_MS = 100
#: the back-off's factor when a block gives ``initial`` but no ``multiplier``
DEFAULT_MULTIPLIER = 2
#: the most retry queues (distinct delays) one queue's policy may need
MAX_RETRY_QUEUES = 20
#: the longest delay: a message that should wait longer wants parking, not a retry
MAX_DELAY_MS = 7 * 24 * DURATION_UNITS["h"]
RETRY_QUEUE_INFIX = ".retry."
#: the delivery_limit RabbitMQ 4 gives a quorum queue that declares none
DEFAULT_QUORUM_DELIVERY_LIMIT = 20
#: what gives the delays: the keys of each form
LIST_KEYS = ("delays",)
BACKOFF_KEYS = ("initial", "multiplier", "max")
SHORTHAND_KEYS = ("delay_ms",)


class DurationError(ValueError):
    """A duration in a ``retry:`` block that is no duration, or not a positive one."""


def parse_duration(value):
    """Milliseconds of a duration: an int (milliseconds) or a string such as ``250ms``, ``5s``,
    ``2m``, ``1h``.

    :raises DurationError: saying what is wrong with ``value``.
    """
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if match is None:
            raise DurationError(
                f"{value!r} is not a duration: give whole milliseconds (250) or a whole number "
                f"with a unit of ms, s, m or h (250ms, 5s, 2m, 1h)")
        milliseconds = int(match.group(1)) * DURATION_UNITS[match.group(2)]
    else:
        milliseconds = value
    if milliseconds <= 0:
        raise DurationError(f"a delay must be positive, not {value!r}")
    if milliseconds > MAX_DELAY_MS:
        raise DurationError(f"{value!r} is longer than the longest delay, 7 days "
                            f"({MAX_DELAY_MS} ms): a message that must wait longer should be "
                            f"parked, not retried")
    return milliseconds


def duration_text(milliseconds):
    """``milliseconds`` in the largest unit that holds it whole: ``100ms``, ``5s``, ``2m``."""
    for unit in ("h", "m", "s"):
        if milliseconds % DURATION_UNITS[unit] == 0:
            return f"{milliseconds // DURATION_UNITS[unit]}{unit}"
    return f"{milliseconds}ms"


def retry_queue_name(queue_name, delay_ms):
    """The retry queue of ``queue_name`` where messages wait ``delay_ms`` milliseconds."""
    return f"{queue_name}{RETRY_QUEUE_INFIX}{duration_text(delay_ms)}"


def queue_retry_problems(queue):
    """What is wrong with the retry policy of a queue entry that the schema accepted, as
    ``(path, message)`` pairs, ``path`` a tuple of keys and indexes inside the entry."""
    block = queue.get("retry", {})
    problems = [(("retry", *path), problem) for path, problem in policy_problems(block)]
    return problems or list(_delivery_limit_problems(queue, block_max_attempts(block)))


def _delivery_limit_problems(queue, max_attempts):
    """A quorum queue's ``delivery_limit`` (RabbitMQ 4: 20 if none) that ``max_attempts`` can
    reach: the broker would end the message before its retries do."""
    if queue.get("type") != "quorum":
        return
    path = (("retry", "max_attempts") if "max_attempts" in queue.get("retry", {})
            else ("retry",) if "retry" in queue
            else ("delivery_limit",) if "delivery_limit" in queue
            else ())
    limit = queue.get("delivery_limit")
    if limit is None and max_attempts >= DEFAULT_QUORUM_DELIVERY_LIMIT:
        yield path, (
            f"max_attempts {max_attempts} can reach the delivery_limit of "
            f"{DEFAULT_QUORUM_DELIVERY_LIMIT} that RabbitMQ 4 gives a quorum queue declaring "
            f"none: the broker would dead-letter (without a dead_letter: drop) a message "
            f"delivered that often before its retries finish; declare a delivery_limit "
            f"greater than max_attempts")
    elif limit is not None and max_attempts >= limit:
        yield path, (
            f"max_attempts {max_attempts} can reach the queue's delivery_limit {limit}: the "
            f"broker would dead-letter (without a dead_letter: drop) a message delivered that "
            f"often before its retries finish; make delivery_limit greater than max_attempts, "
            f"or lower max_attempts")


def retry_queues_of_entry(queue):
    """``(path, name)`` of each retry queue of a queue entry whose policy is valid, ``path``
    the place in the entry of the delay that makes it: its first ``delays`` item, the
    ``retry`` block, or (the default policy) the queue's name."""
    block = queue.get("retry", {})
    if policy_problems(block):
        return []  # reported by queue_retry_problems
    listed = {}
    for k, value in enumerate(block.get("delays", ())):
        listed.setdefault(parse_duration(value), ("retry", "delays", k))
    path = ("retry",) if "retry" in queue else ("name",)
    return [(listed.get(delay, path), retry_queue_name(queue["name"], delay))
            for delay in retry_levels(block)]


def policy_problems(block):
    """What is wrong with a ``retry:`` block that the schema accepted, as ``(path, message)``
    pairs, ``path`` a tuple of keys and indexes inside the block; empty when it is valid."""
    problems = []
    for path, value in _durations(block):
        try:
            parse_duration(value)
        except DurationError as exc:
            problems.append((path, str(exc)))
    forms = [keys for keys in (LIST_KEYS, BACKOFF_KEYS, SHORTHAND_KEYS)
             if any(key in block for key in keys)]
    if len(forms) > 1:
        given = " and ".join("/".join(k for k in keys if k in block) for keys in forms)
        problems.append(((), f"{given} both give the delays; use one of delays (a list), "
                             f"initial/multiplier/max (a back-off) or delay_ms (one delay)"))
    if problems:
        return problems  # what follows reads the delays
    if ("multiplier" in block or "max" in block) and "initial" not in block:
        return [((), "missing key 'initial': multiplier and max shape the back-off from it")]
    if "max" in block and parse_duration(block["max"]) < parse_duration(block["initial"]):
        return [(("max",), f"max {block['max']!r} is less than initial {block['initial']!r}")]
    max_attempts = block_max_attempts(block)
    if "initial" in block and "max" not in block and _backoff_exceeds(block, max_attempts - 1):
        return [((), f"without a max, the back-off would wait over 7 days ({MAX_DELAY_MS} ms) "
                     f"before retry {max_attempts - 1}; set a max")]
    if "delays" in block and len(block["delays"]) > max_attempts - 1:
        retries = max_attempts - 1
        problems.append((("delays",), (
            f"{len(block['delays'])} delays, but max_attempts {max_attempts} makes "
            f"{retries} retr{'y' if retries == 1 else 'ies'}: delays[{retries}] and after "
            f"would never be used")))
    levels = retry_levels(block, limit=MAX_RETRY_QUEUES + 1)
    if len(levels) > MAX_RETRY_QUEUES:
        problems.append(((), (
            f"this policy needs more than {MAX_RETRY_QUEUES} retry queues (one per distinct "
            f"delay); set a max, or fewer max_attempts")))
    return problems


def _backoff_exceeds(block, retries):
    """Whether the uncapped back-off of ``block`` waits over the longest delay before its last
    retry (in logarithms: the delay itself could overflow a float)."""
    if retries < 1:
        return False
    multiplier = block.get("multiplier", DEFAULT_MULTIPLIER)
    last = (math.log(parse_duration(block["initial"]))
            + (retries - 1) * math.log(multiplier))
    return last > math.log(MAX_DELAY_MS)


def _durations(block):
    for key in ("initial", "max", "delay_ms"):
        if key in block:
            yield (key,), block[key]
    for k, value in enumerate(block.get("delays", ())):
        yield ("delays", k), value


def block_max_attempts(block):
    """The attempts a valid block allows: its ``max_attempts``, else one more than its list of
    delays, else the default."""
    if "max_attempts" in block:
        return block["max_attempts"]
    if "delays" in block:
        return len(block["delays"]) + 1
    return DEFAULT_MAX_ATTEMPTS


def block_delays(block):
    """The delays in milliseconds before retry 1, 2, ... of a valid block, up to the one that
    repeats for every later retry (at most one per retry)."""
    retries = block_max_attempts(block) - 1
    if "delays" in block:
        return tuple(parse_duration(value) for value in block["delays"])
    if "initial" not in block:
        return (parse_duration(block.get("delay_ms", DEFAULT_DELAY_MS)),) if retries else ()
    delay = parse_duration(block["initial"])
    cap = parse_duration(block["max"]) if "max" in block else None
    multiplier = block.get("multiplier", DEFAULT_MULTIPLIER)
    delays = []
    while len(delays) < retries:
        shown = round(delay if cap is None else min(delay, cap))
        if delays and shown == delays[-1] and (multiplier == 1 or shown == cap):
            break  # the rest repeat it
        delays.append(shown)
        delay *= multiplier
    return tuple(delays)


def retry_levels(block, limit=None):
    """The distinct delays of a valid block's retries, in the order they are first used;
    stops after ``limit`` of them."""
    levels = []
    for delay in block_delays(block):
        if delay not in levels:
            levels.append(delay)
            if limit is not None and len(levels) >= limit:
                break
    return levels


def jitter_range(delay_ms, jitter):
    """``(shortest, longest)`` wait at a retry level of ``delay_ms`` with ``jitter``: from
    ``delay_ms * (1 - jitter)``, at least 1 ms, to ``delay_ms`` (the queue's TTL)."""
    return max(1, round(delay_ms * (1 - jitter))), delay_ms


def jittered(delay_ms, jitter):
    """A message's wait, in ``jitter_range``."""
    return random.randint(*jitter_range(delay_ms, jitter))
