from pathlib import Path

import pytest


@pytest.fixture
def topology_file():
    """The example's own topology file, not the repository's (the ``nameko_topology_file``
    ini option's default): every plugin fixture that reads the topology uses this one."""
    return Path(__file__).parents[1] / "topology.yaml"
