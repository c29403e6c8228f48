"""Partitioned analyses: per-region states merged == one pass, in-process and on a Dask cluster."""

import numpy as np
import pytest

from telcoanalytics.pipeline.distributed import map_merge, split_by_level, windows_by_partition
from telcoanalytics.topology.model import Topology
from telcoanalytics.windows.sliding import SlidingWindows

RES = ((60_000, 30), (3_600_000, 6))


@pytest.fixture
def data(rng):
    n_el = 60
    topo = Topology.from_columns(
        np.arange(n_el) + 100, {"region": (np.arange(n_el) // 3) % 4, "site": np.arange(n_el) // 3}
    )
    n = 5_000
    ts = np.sort(rng.integers(0, 4 * 3_600_000, n))
    e = rng.integers(0, n_el, n)
    metric = rng.integers(0, 2, n)
    value = rng.normal(1e6, 3.0, n)  # large offset, small spread: stability matters
    return topo, ts, e, e * 2 + metric, value


def _check_equal(a: SlidingWindows, b: SlidingWindows):
    t = max(a.max_ts_ms, b.max_ts_ms)
    for span in (60_000 * 30, 3_600_000 * 6):
        qa, qb = a.query(t, span), b.query(t, span)
        np.testing.assert_array_equal(qa["count"], qb["count"])  # counts exact
        np.testing.assert_array_equal(qa["min"], qb["min"])  # min/max exact
        np.testing.assert_array_equal(qa["max"], qb["max"])
        # sums of ~1e6-sized values in another order: rounding only
        np.testing.assert_allclose(qa["sum"], qb["sum"], rtol=1e-12)
        np.testing.assert_allclose(qa["var"], qb["var"], rtol=1e-6, atol=1e-9)
    ea, eb = a.ew_values(t), b.ew_values(t)
    np.testing.assert_allclose(ea["mean"], eb["mean"], rtol=1e-12)


def test_split_by_level_is_a_partition(data):
    topo, ts, e, slot, value = data
    parts = split_by_level(topo, e, {"ts": ts, "v": value}, "region")
    assert sum(len(p["ts"]) for p in parts) == len(ts)
    region = topo.element_to("region")
    for p in parts:
        rows = np.flatnonzero(region[e] == p["_node"])
        np.testing.assert_array_equal(p["ts"], ts[rows])  # stable order within the partition


def test_split_errors(data):
    topo, ts, e, slot, value = data
    bad = e.copy()
    bad[7] = -1
    with pytest.raises(ValueError, match="first at row 7"):
        split_by_level(topo, bad, {"ts": ts}, "region")
    with pytest.raises(ValueError, match="column 'ts' has 3 rows"):
        split_by_level(topo, e, {"ts": ts[:3]}, "region")


def test_windows_by_partition_equals_one_pass(data):
    topo, ts, e, slot, value = data
    one = SlidingWindows(120, RES, 0, (60.0, 3600.0))
    one.update(ts, slot, value)
    merged = windows_by_partition(topo, e, ts, slot, value, 120, RES, 0, (60.0, 3600.0), "region")
    _check_equal(merged, one)
    by_site = windows_by_partition(topo, e, ts, slot, value, 120, RES, 0, (60.0, 3600.0), "site")
    _check_equal(by_site, one)


def test_empty_input_gives_empty_state(data):
    topo = data[0]
    z = np.zeros(0, np.int64)
    w = windows_by_partition(topo, z, z, z, np.zeros(0), 120, RES)
    assert w.n_accepted == 0 and map_merge([], len, max) is None


@pytest.mark.slow
def test_dask_cluster_gives_identical_results(data):
    distributed = pytest.importorskip("distributed", reason="the [distributed] extra is part of [test]")
    topo, ts, e, slot, value = data
    local = windows_by_partition(topo, e, ts, slot, value, 120, RES, 0, (60.0,), "region")
    with distributed.Client(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=None) as client:
        on_dask = windows_by_partition(topo, e, ts, slot, value, 120, RES, 0, (60.0,), "region", client=client)
    np.testing.assert_array_equal(on_dask.cells, local.cells)  # same partitions, same merge order: bitwise
    np.testing.assert_array_equal(on_dask.ew.state, local.ew.state)


# ---- the pipeline itself, partitioned ------------------------------------------------------------------
from telcoanalytics.alerts.manager import AlertManager  # noqa: E402
from telcoanalytics.alerts.sinks import CallbackSink  # noqa: E402
from telcoanalytics.pipeline.components import build_components  # noqa: E402
from telcoanalytics.pipeline.distributed import PartitionedComponents, partitioned_pipeline  # noqa: E402
from telcoanalytics.pipeline.pipeline import Pipeline  # noqa: E402
from telcoanalytics.synth.network import generate  # noqa: E402

NAMES = ["windows", "sla", "anomaly", "cube", "alerts"]


@pytest.fixture(scope="module")
def net():
    day = generate(n_elements=90, n_regions=3, days=0.06, seed=5)
    return day, list(day.raw_batches())


def _run(
    day, batches, client=None, single=False, n_partitions=None, split=None, tmp=None, learn_until=None, names=NAMES
):
    """Run a pipeline (after the components' history warm-up up to ``learn_until``, as the replay
    does); returns (pipeline, findings as JSON, notifications as JSON)."""
    import json

    sent = []
    mgr = AlertManager(day.topology, sinks=[CallbackSink(sent.append)])
    if single:
        p = Pipeline(day.topology, components=build_components(day.topology, names), alerts=mgr)
    else:
        p = partitioned_pipeline(day.topology, enabled=names, client=client, alerts=mgr, n_partitions=n_partitions)
    if learn_until is not None:
        for comp in p.components.values():
            if hasattr(comp, "learn"):
                comp.learn(day, learn_until)
    found = []
    first = batches if split is None else batches[:split]
    p.feed(first)
    if split is not None:  # checkpoint mid-stream and continue from the restored copy
        p = Pipeline.restore(p.checkpoint(tmp / "ck.npz"), alert_sinks=[CallbackSink(sent.append)])
        p.feed(batches[split:])
    found += p.advance(p.max_event_ms + 1)
    found += p.finish()
    js = [json.dumps(a.to_dict(), sort_keys=True, default=str) for a in found]
    notes = [json.dumps([a.to_dict() for a in n.alerts], sort_keys=True, default=str) for n in sent]
    return p, js, notes


@pytest.mark.slow  # full components: minutes as plain Python; the compiled pass runs it
def test_partitioned_pipeline_equals_the_single_pipeline(net):
    """Reference: the ordinary one-process pipeline over the same batches."""
    day, batches = net
    a, fa, na = _run(day, batches, single=True)
    b, fb, nb = _run(day, batches)
    assert b.counts() == a.counts() and b.conserved()
    assert b.quarantine.counts_by_source() == a.quarantine.counts_by_source()
    assert fb == fa and nb == na and b.findings_count == a.findings_count > 0
    part = b.components["partitions"]
    assert part.n_partitions == 3
    wa, wb = a.components["windows"].win, part.merged_windows()
    t = wa.max_ts_ms
    np.testing.assert_array_equal(wb.query(t, 3_600_000)["count"], wa.query(t, 3_600_000)["count"])
    ca = a.components["cube"].cubes["explore"].query(["region", "service"])
    cb = part.merged_cubes()["explore"].query(["region", "service"])
    np.testing.assert_array_equal(ca["count"], cb["count"])
    assert part.report_lines()[0].startswith("== partitioned by region: 3 partitions (in this process)")
    assert len(part.partition_report_lines()) == 3


@pytest.mark.slow  # full components: minutes as plain Python; the compiled pass runs it
def test_partitioned_checkpoint_restores_exactly(net, tmp_path):
    day, batches = net
    a, fa, na = _run(day, batches, n_partitions=2)
    b, fb, nb = _run(day, batches, n_partitions=2, split=len(batches) // 2, tmp=tmp_path)
    assert b.counts() == a.counts() and fb == fa and nb == na
    assert isinstance(b.components["partitions"], PartitionedComponents)


def test_partition_files_and_errors(net, tmp_path):
    day, batches = net
    p = partitioned_pipeline(day.topology, enabled=["windows"], n_partitions=2)
    p.components["partitions"].checkpoint_dir = str(tmp_path / "parts")
    p.feed(batches[:20])
    q = Pipeline.restore(p.checkpoint(tmp_path / "ck.npz"))
    assert sorted(x.name for x in (tmp_path / "parts").iterdir()) == ["partition-0.npz", "partition-1.npz"]
    for x in (p, q):
        x.feed(batches[20:])
    wp, wq = p.components["partitions"].merged_windows(), q.components["partitions"].merged_windows()
    np.testing.assert_array_equal(wp.cells, wq.cells)
    (tmp_path / "parts" / "partition-1.npz").write_bytes(b"garbage")
    from telcoanalytics.pipeline.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="partition checkpoint .*partition-1.npz is missing or damaged"):
        Pipeline.restore(tmp_path / "ck.npz")
    with pytest.raises(ValueError, match=r"n_partitions must be in 1..3"):
        PartitionedComponents(day.topology, n_partitions=4)


def _after(day, share):
    """The batches arriving after ``share`` of the day (the replayed part) and that moment."""
    until = day.start_ms + int(share * (day.end_ms - day.start_ms))
    return [(s, r) for s, r, arr, _o in day.raw_batches(with_arrival=True) if arr[0] >= until], until


@pytest.mark.slow  # full components: minutes as plain Python; the compiled pass runs it
def test_partitions_learn_the_history_like_the_single_pipeline(net):
    """The history warm-up per partition (each learns from its own elements' history) gives the
    findings of the single pipeline's warm-up. (Without SLA: a stream starting mid-day anchors the
    SLO burn windows per partition, a known difference of partitioned SLA monitoring.)"""
    day, _ = net
    names = ["windows", "anomaly", "cube", "alerts"]
    batches, until = _after(day, 0.5)
    a, fa, na = _run(day, batches, single=True, learn_until=until, names=names)
    b, fb, nb = _run(day, batches, learn_until=until, names=names)
    c, fc, nc = _run(day, batches, names=names)  # no warm-up: the learned history must make a difference
    assert fb == fa and nb == na and b.findings_count == a.findings_count > 0
    assert nc != na


@pytest.mark.slow
def test_pipeline_on_dask_worker_processes_is_identical(net):
    """Two worker processes (each partition an actor with its own state, warmed up with its own
    history) == the same run in-process."""
    distributed = pytest.importorskip("distributed", reason="the [distributed] extra is part of [test]")
    day, _ = net
    batches, until = _after(day, 0.4)
    batches = batches[: len(batches) * 2 // 3]
    a, fa, na = _run(day, batches, learn_until=until)
    with (
        distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        b, fb, nb = _run(day, batches, client=client, learn_until=until)
        wb = b.components["partitions"].merged_windows()
        cb = b.components["partitions"].merged_cubes()["explore"].query(["region", "service"])
        assert "on a Dask cluster" in b.components["partitions"].report_lines()[0]
    assert b.counts() == a.counts() and fb == fa and nb == na
    wa = a.components["partitions"].merged_windows()
    np.testing.assert_array_equal(wb.cells, wa.cells)  # bitwise: same partitions, same merge order
    np.testing.assert_array_equal(cb, a.components["partitions"].merged_cubes()["explore"].query(["region", "service"]))


@pytest.mark.slow
def test_replay_workers_from_the_command_line(tmp_path, capsys):
    """``replay --workers 2``: the components on a local cluster of two processes (two regions, one
    partition each, warmed up with their history) write the alerts, incidents and quarantine of the
    in-process replay."""
    pytest.importorskip("distributed", reason="the [distributed] extra is part of [test]")
    from telcoanalytics import cli

    small = ["--elements", "1500", "--days", "0.03", "--history-days", "0.03", "--no-checkpoints"]
    small += ["--components", "windows", "anomaly", "cube", "alerts"]  # no SLA: see the warm-up test
    assert cli.main(["replay", *small, "--out", str(tmp_path / "a")]) == 0
    assert cli.main(["replay", *small, "--workers", "2", "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "anomaly: learned baselines" in out
    report = (tmp_path / "b" / "report.txt").read_text()
    assert "partitions (2 workers, their CPU" in report and "== windowed statistics" in report  # merged components
    for name in ("alerts.jsonl", "incidents.jsonl", "quarantine.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "alerts.jsonl").stat().st_size > 0
