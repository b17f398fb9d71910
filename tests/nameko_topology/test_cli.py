import subprocess
import sys
from pathlib import Path

import pytest

from nameko_topology.cli import main

REPO_ROOT = Path(__file__).resolve().parents[2]
REPO_TOPOLOGY = REPO_ROOT / "topology.yaml"
UNREACHABLE = "amqp://guest:guest@127.0.0.1:1/"


@pytest.fixture
def bad_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("queues:\n  - {name: q, durabel: true}\n")
    return path


def test_validate(capsys):
    assert main(["validate", str(REPO_TOPOLOGY)]) == 0
    assert capsys.readouterr().out == (
        f"{REPO_TOPOLOGY}: valid (3 exchanges, 6 queues, 6 bindings, 5 retry queues, 3 message types)\n"
    )


def test_validate_reads_topology_yaml_by_default(capsys, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    assert main(["validate"]) == 0
    assert capsys.readouterr().out.startswith("topology.yaml: valid")


def test_validate_invalid_file(capsys, bad_file):
    assert main(["validate", str(bad_file)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{bad_file}: queues[0]: unknown key 'durabel'" in captured.err


def test_validate_missing_file(capsys, tmp_path):
    missing = tmp_path / "missing.yaml"
    assert main(["validate", str(missing)]) == 1
    assert f"{missing}: <file>: cannot read the file: No such file or directory" in (
        capsys.readouterr().err
    )


def test_show(capsys):
    assert main(["show", str(REPO_TOPOLOGY)]) == 0
    out = capsys.readouterr().out
    assert "orders (topic, durable)\n" in out
    assert (
        "  --order.placed--> order_placed_queue (classic, durable) (DLX -> dlx_exchange)\n"
    ) in out
    assert "  --#--> dead_letter_queue (classic, durable)\n" in out
    assert (
        "  InventoryReserved: inventory / inventory.reserved "
        "(order_id: string, item: string, quantity: integer, remaining?: integer)\n"
    ) in out


def test_show_invalid_file(capsys, bad_file):
    assert main(["show", str(bad_file)]) == 1
    assert "unknown key 'durabel'" in capsys.readouterr().err


def test_apply_unreachable_broker(capsys):
    assert main(["apply", str(REPO_TOPOLOGY), "--amqp-uri", UNREACHABLE]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cannot reach the broker at amqp://guest:**@127.0.0.1:1/: ")
    assert "guest:guest" not in err


def test_apply_takes_the_broker_from_amqp_uri(capsys, monkeypatch):
    monkeypatch.setenv("AMQP_URI", "amqp://user:secret@127.0.0.1:1/vhost")
    assert main(["apply", str(REPO_TOPOLOGY)]) == 1
    err = capsys.readouterr().err
    assert "cannot reach the broker at amqp://user:**@127.0.0.1:1/vhost: " in err
    assert "secret" not in err


def test_apply_invalid_file(capsys, bad_file):
    assert main(["apply", str(bad_file), "--amqp-uri", UNREACHABLE]) == 1
    assert "unknown key 'durabel'" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage: nameko-topology" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["frobnicate"], ["validate", "a.yaml", "b.yaml"]])
def test_usage_errors(capsys, argv):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2
    assert "usage: nameko-topology" in capsys.readouterr().err


def test_console_script():
    script = Path(sys.executable).parent / "nameko-topology"
    result = subprocess.run(
        [str(script), "validate"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("topology.yaml: valid")
