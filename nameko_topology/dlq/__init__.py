"""Dead-letter operations: list, show, replay, purge and move (:mod:`.operations`), shared by
the ``nameko-topology dlq`` command (:mod:`.cli`) and the gateway's ``/admin`` API."""
