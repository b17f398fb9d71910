# nameko's containers run on eventlet, which must patch the standard library before anything
# imports socket or ssl. Here, not in shipping/tests/: pytest loads the conftest.py of the
# directories it is given (and of their test*/ subdirectories) before it configures its
# plugins, and any deeper one only while collecting, too late for the patch (nameko's plugin
# warns then). `pytest`, `pytest examples` and `pytest examples/shipping` all load this one.
import eventlet

eventlet.monkey_patch()  # noqa: E402
