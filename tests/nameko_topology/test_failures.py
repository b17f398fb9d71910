"""The failure record a dead letter carries: bounded, and without the passwords of URIs."""
from nameko_topology.failures import MAX_TRACEBACK_LENGTH, dead_letter_headers


def raised(exc):
    try:
        raise exc
    except Exception as caught:
        return caught


def test_a_password_in_the_exception_text_is_masked_in_the_message_and_the_traceback():
    exc = raised(RuntimeError("cannot connect to postgresql://app:s3cret@db:5432/orders"))

    headers = dead_letter_headers({}, "handler failed", queue="q", service="s", handler="h",
                                  attempt=1, exc=exc)

    assert headers["x-exception-message"] == (
        "cannot connect to postgresql://app:**@db:5432/orders")
    assert "s3cret" not in headers["x-exception-traceback"]
    assert headers["x-exception-type"] == "builtins.RuntimeError"


def test_a_long_traceback_keeps_its_end_within_the_bound():
    exc = raised(ValueError("x" * 10_000 + " the end"))

    headers = dead_letter_headers({}, "r", queue="q", service="s", handler="h", attempt=1,
                                  exc=exc)

    traceback = headers["x-exception-traceback"]
    assert len(traceback) <= MAX_TRACEBACK_LENGTH
    assert traceback.rstrip().endswith("the end")
    assert "characters cut" in traceback
