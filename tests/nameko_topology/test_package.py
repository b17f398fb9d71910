"""nameko_topology as a package of its own: what importing it loads, its public API, its plugin."""
import re
import subprocess
import sys
from pathlib import Path

import nameko_topology

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_framework_loads_neither_the_pipeline_nor_the_gateway_nor_flask():
    probe = ("import sys, nameko_topology, nameko_topology.testing, nameko_topology.cli; "
             "print(sorted({name.split('.')[0] for name in sys.modules}))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True, cwd=ROOT).stdout
    for package in ("nameko_services", "gateway", "flask", "granian", "psycopg2", "uuid6"):
        assert f"'{package}'" not in loaded


def test_every_public_name_is_exported_explicitly_and_documented():
    assert "__getattr__" not in vars(nameko_topology)
    for name in nameko_topology.__all__:
        value = getattr(nameko_topology, name)
        assert (value.__doc__ or "").strip(), f"{name} has no docstring"


def test_the_readme_framework_table_names_every_public_name():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## The framework"):readme.index("### What happens to a delivery")]
    named = set(re.findall(r"`@?([A-Za-z_]+)[(`]", table))
    assert set(nameko_topology.__all__) <= named, set(nameko_topology.__all__) - named


def test_the_pytest_plugin_is_registered(pytestconfig):
    assert pytestconfig.pluginmanager.has_plugin("nameko_topology")


def test_nameko_run_finds_the_services_of_a_module_not_the_health_mixin_it_imports():
    from nameko.cli.run import import_service

    from nameko_services.orders import OrdersService

    assert import_service("nameko_services.orders") == [OrdersService]


def test_importing_the_framework_imports_no_server_module_eventlet_must_patch_first():
    # the pytest plugin imports the package before a conftest's eventlet.monkey_patch(): a
    # socketserver imported by then keeps unpatched select functions, and a threaded test
    # server blocks the whole process (prometheus_client imports it: see metrics.py)
    code = ("import sys, nameko_topology, nameko_topology.testing.plugin; "
            "print(sorted(m for m in ('socketserver', 'http.server', 'prometheus_client') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
