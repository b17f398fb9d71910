"""HTTP gateway: a Flask app that calls the nameko services over RPC (see gateway.app)."""
