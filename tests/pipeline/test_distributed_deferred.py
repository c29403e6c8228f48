"""The partitioned pipeline's deferred steps (several minutes per call while the driver ingests),
worker groups and generations of partition checkpoint files: identical to the one-process pipeline."""

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telcoanalytics.alerts.manager import AlertManager
from telcoanalytics.alerts.sinks import CallbackSink
from telcoanalytics.pipeline.components import build_components
from telcoanalytics.pipeline.distributed import (
    PartitionedComponents,
    PartitionedPipeline,
    _read_partition_checkpoint,
    balance,
    partitioned_pipeline,
)
from telcoanalytics.pipeline.pipeline import Pipeline
from telcoanalytics.synth.network import generate


# ---- balance: a partition of the partitions, close to the best split -------------------------------------
def _best_makespan(sizes, n_groups):
    """Brute force: the smallest largest group load over every assignment."""
    best = None
    for assign in itertools.product(range(n_groups), repeat=len(sizes)):
        load = [0] * n_groups
        for k, g in enumerate(assign):
            load[g] += sizes[k]
        best = max(load) if best is None else min(best, max(load))
    return best


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=7), st.integers(1, 3))
def test_balance_is_a_partition_within_the_greedy_bound(sizes, n_groups):
    groups = balance(sizes, n_groups)
    flat = [k for g in groups for k in g]
    assert sorted(flat) == list(range(len(sizes)))  # every partition exactly once
    assert all(g == sorted(g) and g for g in groups) and len(groups) <= n_groups
    worst = max(sum(sizes[k] for k in g) for g in groups)
    # largest-first greedy: within 4/3 of the optimum (Graham), and never worse than optimum + largest item
    opt = _best_makespan(sizes, n_groups)
    assert worst <= opt * 4 / 3 + 1e-9 or worst <= opt + max(sizes) / 3


def test_balance_errors_and_example():
    assert balance([5, 1, 4, 3], 2) == [[0, 1], [2, 3]]
    assert balance([3], 4) == [[0]]  # more groups than partitions: empty groups dropped
    with pytest.raises(ValueError, match="n_groups must be >= 1"):
        balance([1, 2], 0)


# ---- deferred steps, in this process ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def small():
    day = generate(n_elements=90, n_regions=3, days=0.04, seed=3)
    return day, list(day.raw_batches())


def _windows_cells(pipe):
    return pipe.components["partitions"].merged_windows().cells


def test_deferred_steps_equal_advances(small):
    """Steps deferred and run several at a time give each advance's findings, in order, and the
    same state as advancing one at a time."""
    day, batches = small
    names = ["windows", "cube"]
    a = PartitionedComponents(day.topology, enabled=names)
    b = PartitionedComponents(day.topology, enabled=names)
    pa = Pipeline(day.topology, components={"partitions": a})
    pb = Pipeline(day.topology, components={"partitions": b})
    found_a, found_b = [], []
    for i, batch in enumerate(batches):
        for p in (pa, pb):
            p.process(*batch)
        if i % 7 == 6:
            wm = pa.watermark_ms
            found_a.append((wm, a.advance(wm)))
            b.defer(wm)
            assert b.n_steps >= 1
            if b.n_steps == 3:
                b.submit()
                assert not b.busy()  # in this process the steps ran at once
    b.flush()
    found_b = b.collect()
    assert b.collect() == []
    assert [w for w, _ in found_b] == [w for w, _ in found_a]
    assert [[x.to_dict() for x in f] for _, f in found_b] == [[x.to_dict() for x in f] for _, f in found_a]
    np.testing.assert_array_equal(b.merged_windows().cells, a.merged_windows().cells)


def test_partitioned_pipeline_needs_one_partitioned_component(small):
    day, _ = small
    with pytest.raises(ValueError, match="exactly one component, a PartitionedComponents"):
        PartitionedPipeline(day.topology, components=build_components(day.topology, ["windows"]))
    with pytest.raises(ValueError, match="got none"):
        PartitionedPipeline(day.topology)


def test_in_process_partitioned_pipeline_is_the_plain_one(small):
    """Without a cluster the pipeline advances at each tick (nothing deferred)."""
    day, batches = small
    p = partitioned_pipeline(day.topology, enabled=["windows"])
    q = Pipeline(day.topology, components={"partitions": PartitionedComponents(day.topology, enabled=["windows"])})
    for x in (p, q):
        x.feed(batches)
    assert p.last_advance_ms == q.last_advance_ms and p.partitions.n_steps == 0
    np.testing.assert_array_equal(_windows_cells(p), _windows_cells(q))


def test_generations_of_partition_files(small, tmp_path):
    """Each checkpoint writes a new generation of partition files; the previous one stays until the
    checkpoint is durable (``checkpoint_done``), and a restore from them continues the generations."""
    day, batches = small
    p = partitioned_pipeline(day.topology, enabled=["windows"], n_partitions=2)
    part = p.components["partitions"]
    parts = tmp_path / "ck.npz.parts"
    part.parts_dir = str(parts)
    p.feed(batches[:15])
    p.checkpoint(tmp_path / "ck.npz")
    first = sorted(x.name for x in parts.iterdir())
    assert len(first) == 2 and all(x.startswith("partition-") for x in first)
    p.feed(batches[15:30])
    p.checkpoint(tmp_path / "ck.npz")
    both = sorted(x.name for x in parts.iterdir())
    assert len(both) == 4 and set(first) < set(both)  # the previous generation is kept ...
    part.checkpoint_done()
    latest = sorted(x.name for x in parts.iterdir())
    assert len(latest) == 2 and not set(first) & set(latest)  # ... until the new one is durable
    (parts / "partition-0-dead.npz").write_bytes(b"left by a crash")  # an orphan of a killed run
    q = Pipeline.restore(tmp_path / "ck.npz")
    qpart = q.components["partitions"]
    assert qpart.parts_dir == str(parts.resolve()) and qpart.checkpoint_dir is None
    for x in (p, q):
        x.feed(batches[30:])
    np.testing.assert_array_equal(_windows_cells(q), _windows_cells(p))
    q.checkpoint(tmp_path / "ck.npz")  # a restored pipeline goes on writing generations there
    now = sorted(x.name for x in parts.iterdir())
    assert len(now) == 4 and set(latest) < set(now) and "partition-0-dead.npz" not in now


def test_legacy_partition_file_loads(small, tmp_path):
    """Partition files written before the compaction (plain ``np.savez``, no ``encoded``) still load."""
    from telcoanalytics.pipeline.checkpoint import _flatten
    from telcoanalytics.pipeline.contract import class_path

    day, batches = small
    comps = build_components(day.topology, ["windows"])
    flat = {}
    for name, c in comps.items():
        _flatten(f"comp.{name}", c.to_state(), flat)
    meta = {"classes": {name: class_path(c) for name, c in comps.items()}}
    flat["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "old.npz", **flat)
    st = _read_partition_checkpoint(str(tmp_path / "old.npz"))
    assert list(st) == ["windows"] and st["windows"][0] == meta["classes"]["windows"]


# ---- on a cluster (threads: the driver's side is what is tested here) -----------------------------------
NAMES = ["windows", "sla", "anomaly", "cube", "alerts"]


@pytest.fixture(scope="module")
def net():
    day = generate(n_elements=90, n_regions=3, days=0.06, seed=5)
    return day, list(day.raw_batches())


def _run(day, batches, client=None, single=False, tmp=None, split=None, **knobs):
    sent = []
    mgr = AlertManager(day.topology, sinks=[CallbackSink(sent.append)])
    if single:
        p = Pipeline(day.topology, components=build_components(day.topology, NAMES), alerts=mgr)
    else:
        p = partitioned_pipeline(day.topology, enabled=NAMES, client=client, alerts=mgr)
        for k, v in knobs.items():
            setattr(p, k, v)
    p.feed(batches if split is None else batches[:split])
    if split is not None:
        p.checkpoint(tmp / "ck.npz")
        p.checkpoint(tmp / "ck.npz")  # twice: a second generation replaces the first
        cls = Pipeline if single else PartitionedPipeline
        p = cls.restore(tmp / "ck.npz", alert_sinks=[CallbackSink(sent.append)])
        for k, v in knobs.items():
            setattr(p, k, v)
        p.feed(batches[split:])
    found = p.advance(p.max_event_ms + 1) + p.finish()
    js = [json.dumps(a.to_dict(), sort_keys=True, default=str) for a in found]
    notes = [json.dumps([a.to_dict() for a in n.alerts], sort_keys=True, default=str) for n in sent]
    return p, js, notes


@pytest.mark.slow  # full components on a cluster: the compiled pass runs it
def test_deferred_on_a_cluster_equals_the_single_pipeline(net, tmp_path):
    distributed = pytest.importorskip("distributed", reason="the [distributed] extra is part of [test]")
    day, batches = net
    a, fa, na = _run(day, batches, single=True)
    with distributed.Client(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=None) as client:
        # small calls and back-pressure (the driver waits when 4 steps are pending)
        b, fb, nb = _run(day, batches, client=client, min_steps=2, max_steps=4)
        assert b.findings_count == a.findings_count > 0 and b.notifications == a.notifications
        part = b.components["partitions"]
        assert len(part.groups) == 2 and sorted(k for g in part.assignment for k in g) == [0, 1, 2]
        # every tick at once (a live feed), and a checkpoint mid-stream restored onto the cluster
        c, fc, nc = _run(day, batches, client=client, live_gap_s=0.0, tmp=tmp_path, split=len(batches) // 2)
        assert isinstance(c, PartitionedPipeline) and c.partitions.client is client
        files = sorted(x.name for x in (tmp_path / "ck.npz.parts").iterdir())
        assert len(files) == 3  # one generation: the older one went once the checkpoint was durable
    assert b.counts() == a.counts() and fb == fa and nb == na
    assert c.counts() == a.counts() and fc == fa and nc == na


@pytest.mark.parametrize("n_partitions", [1, 3])
def test_topology_change_mid_stream_equals_the_single_pipeline(small, n_partitions):
    """Elements re-homed while data flows: the partitions follow (their pending rows first) and the
    merged cube equals the one-process pipeline's."""
    from telcoanalytics.pipeline.replay_report import rehome_plan

    day, batches = small
    names = ["windows", "cube"]
    p = partitioned_pipeline(day.topology, enabled=names, n_partitions=n_partitions)
    q = Pipeline(day.topology, components=build_components(day.topology, names))
    moved, new_site = rehome_plan(day, 0.2, seed=1)
    assert len(moved)
    target, change = day.topology.rehome_elements(moved, new_site)
    half = len(batches) // 2
    for x in (p, q):
        x.feed(batches[:half])
        x.change_topology(target, [change])
        x.feed(batches[half:])
        x.advance(x.max_event_ms + 1)
        x.finish()
    assert p.topology.version == q.topology.version == 1
    cq = q.components["cube"].cubes["explore"].query(["site", "equipment_class", "hour_of_day"])
    cp = p.components["partitions"].merged_cubes()["explore"].query(["site", "equipment_class", "hour_of_day"])
    np.testing.assert_array_equal(cp, cq)
