"""Edge paths of the pipeline, its components and the command line: broken conservation is
reported, foreign checkpoints are refused, components grow with the topology and say when they
have nothing to report, the bench command runs pytest on the benchmark files."""

import json

import numpy as np
import pytest

from telcoanalytics import cli
from telcoanalytics.pipeline.components import SlaComponent, WindowsComponent
from telcoanalytics.pipeline.pipeline import Pipeline
from telcoanalytics.synth.network import generate


@pytest.fixture(scope="module")
def day():
    return generate(n_elements=60, n_regions=2, days=0.05, seed=11)


def test_conservation_check_detects_lost_rows(day):
    p = Pipeline(day.topology)
    p.feed(list(day.raw_batches())[:8])
    assert p.conserved()
    p.routed[0, 0] -= 1  # a routed row went missing
    assert not p.conserved()
    p.routed[0, 0] += 1
    p.ingestors["cdr"].n_accepted += 1  # an accepted row neither routed nor quarantined
    assert not p.conserved()


def test_feed_waits_for_data_before_ticking(day):
    ticks = []

    class Probe(WindowsComponent):
        def __init__(self):
            pass

        def update(self, batch):
            return []

        def advance(self, wm):
            ticks.append(wm)
            return []

    p = Pipeline(day.topology, components={"probe": Probe()})
    empty = day.cdr[:0]
    batches = [("cdr", empty), ("cdr", empty)] + list(day.raw_batches())
    assert p.feed(batches) == sum(len(b) for _, b in batches)
    assert ticks and all(a < b for a, b in zip(ticks, ticks[1:]))


def test_restore_refuses_another_checkpoint_format(day, tmp_path):
    p = Pipeline(day.topology)
    path = p.checkpoint(tmp_path / "a.npz")
    with np.load(path) as z:
        flat = {k: z[k] for k in z.files}
    meta = json.loads(bytes(flat["__meta__"]).decode())
    meta["format"] = 999
    flat["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "b.npz", **flat)
    with pytest.raises(ValueError, match="has format 999"):
        Pipeline.restore(tmp_path / "b.npz")


def test_windows_component_grows_with_added_elements_and_reports_no_data(day):
    topo = day.topology
    w = WindowsComponent(topo)
    assert w.report_lines()[-1] == "  no data"
    n0 = w.win.n_slots
    site = int(topo.ids["site"][0])
    t2, ch = topo.add_elements([10**12, 10**12 + 1], [site, site])
    p = Pipeline(topo, components={"windows": w})
    p.change_topology(t2, [ch])
    assert w.win.n_slots == n0 + 6  # 3 metrics per new element
    rows = day.qos[:3].copy()
    rows["element_id"] = 10**12 + 1
    rows["ts_ms"] += np.arange(3) * 1000  # three probes (one element at one time would be duplicates)
    p.process("qos", rows)
    assert w.win.query(int(rows["ts_ms"].max()), 60_000)["count"][(t2.n_elements - 1) * 3 + 1] == 3


def test_sla_component_returns_closing_events_as_alerts(day):
    from telcoanalytics.sla.sla import SlaEvent

    sla = SlaComponent(day.topology)
    assert sla.report_lines()[-1] == "  no violations"
    closing = SlaEvent(
        rule="r",
        kpi="k",
        severity="major",
        state="resolved",
        scope_level="element",
        scope_id=int(day.topology.ids["element"][0]),
        service="",
        t_ms=day.start_ms,
        start_ms=day.start_ms,
        end_ms=day.start_ms,
        value=float("nan"),
        threshold=1.0,
        worst_value=2.0,
        summary="closed: element retired",
    )

    class Mon:  # stands in for a monitor whose open violation's scope went away
        rules = []

        def set_topology(self, topology, changes):
            return [closing]

    sla.mon = Mon()
    [alert] = sla.topology_changed(day.topology, [])
    assert sla.events == [closing]
    assert alert.state == "resolved" and alert.labels["alertname"] == "r"
    assert alert.labels["element"] == str(closing.scope_id)


def test_cli_input_dir_without_source_files(tmp_path):
    (tmp_path / "topology.csv").write_text("element_id,site,region\n1,1,1\n")
    with pytest.raises(SystemExit, match="no source files"):
        cli.main(["replay", "--input", str(tmp_path)])


def test_cli_bench_runs_pytest_on_the_benchmarks(monkeypatch):
    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd, env: calls.append((cmd, env)) or 0)
    assert cli.main(["bench", "windows", "cube", "--n", "1000"]) == 0
    cmd, env = calls[0]
    assert cmd[1:3] == ["-m", "pytest"] and "--benchmark-only" in cmd
    assert [c.rsplit("/", 1)[-1] for c in cmd if c.endswith(".py")] == ["bench_windows.py", "bench_cube.py"]
    assert env["BENCH_N"] == "1000"
    assert cli.main(["bench", "--", "--benchmark-min-rounds=3"]) == 0
    assert calls[1][0][3].endswith("benchmarks") and calls[1][0][-1] == "--benchmark-min-rounds=3"
    with pytest.raises(SystemExit, match="only for 'bench'"):
        cli.main(["generate", "--out", "x", "--", "-k", "y"])
