"""Example services built on :mod:`nameko_topology`, each with its guide in ``docs/``."""
