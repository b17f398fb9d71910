"""bench.scale end to end at a small size: the real stacks, preload, load, page reads and
backlog drain. Only what it counted is checked, never how fast anything was."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
STORED, BACKLOG, ORDERS, READS = 2000, 500, 200, 20


@pytest.fixture(scope="module")
def scale(tmp_path_factory):
    """(exit code, the JSON line's record, the --out directory) of one small run."""
    out = tmp_path_factory.mktemp("scale")
    result = subprocess.run(
        [sys.executable, "-m", "bench.scale", "-N", str(STORED), "--backlog", str(BACKLOG),
         "-n", str(ORDERS), "--reads", str(READS), "--out", str(out), "--json-only"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, f"stdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-3000:]}"
    return result, json.loads(lines[0]), out


def test_it_passes_its_checks(scale):
    result, record, _ = scale
    assert (result.returncode, record["problems"]) == (0, []), result.stderr[-3000:]
    assert record["ok"] is True
    assert (record["kind"], record["stored_orders"], record["backlog"], record["orders"],
            record["reads"]) == ("scale", STORED, BACKLOG, ORDERS, READS)


@pytest.mark.parametrize("system", ["empty", "stored"])
def test_every_order_of_the_load_is_settled_once(scale, system):
    run = scale[1]["systems"][system]["run"]
    assert (run["orders"], run["accepted"], run["confirmed"], run["errors"]) == (
        ORDERS, ORDERS, ORDERS, 0)
    assert run["ok"] is True and run["problems"] == []
    assert set(run["processes"]) == {"orders", "inventory", "notifications", "gateway"}


@pytest.mark.parametrize("system", ["empty", "stored"])
def test_every_page_read_answered(scale, system):
    reads = scale[1]["systems"][system]["page_reads"]
    assert set(reads) == {"orders_first_page", "orders_deep_page", "order_by_id",
                          "processed_first_page"}
    for kind, figures in reads.items():
        assert (figures["requests"], figures["errors"]) == (READS, 0), kind
        assert set(figures["latency_ms"]) >= {"p50", "p99"}, kind
    # pages of 100, and a stored order by its id
    assert reads["orders_first_page"]["rows_mean"] == 100
    assert reads["order_by_id"]["rows_mean"] == 1


def test_the_preload_wrote_every_row(scale):
    stored = scale[1]["systems"]["stored"]
    assert stored["preload"]["rows"] == {"orders_orders": STORED + BACKLOG,
                                         "inventory_processed": STORED,
                                         "notifications_notifications": STORED}
    assert stored["preload"]["backlog_orders"] == BACKLOG
    assert scale[1]["systems"]["empty"]["preload"] is None


def test_the_backlog_drained_each_order_once(scale):
    backlog = scale[1]["systems"]["stored"]["backlog"]
    assert (backlog["orders"], backlog["ok"], backlog["problems"]) == (BACKLOG, True, [])
    assert backlog["drained_per_s"] is not None and backlog["settled_per_s"] is not None
    assert set(backlog["processes"]) == {"orders", "inventory", "notifications", "gateway"}
    assert scale[1]["systems"]["empty"]["backlog"] is None


def test_ratios_and_targets_are_reported(scale):
    record = scale[1]
    assert set(record["ratios"]) == {"post_p50", "post_p99", "e2e_per_s"}
    assert {"post_p99_ratio", "e2e_ratio", "drained_over_e2e",
            "inventory_peak_rss_mb_drain"} <= set(record["targets"])
    assert all(set(t) == {"value", "limit", "met"} for t in record["targets"].values())


def test_it_writes_the_json_and_the_chart(scale):
    _, record, out = scale
    assert json.loads((out / "scale.json").read_text()) == record
    assert (out / "scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
