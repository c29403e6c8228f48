"""``replay --workers N`` writes every output of the in-process replay: the partitions' finding
lines merged into the in-process order, the report and scorecard from the merged components, and a
run killed with SIGKILL resumes on workers to the same files."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telcoanalytics.pipeline.distributed import _Capture, _sla_key, merge_keyed_lines


# ---- the merge of the partitions' lines -----------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3)), max_size=60), st.integers(1, 4), st.randoms())
def test_merge_keyed_lines_restores_the_global_order(keys, n_parts, rnd):
    """Lines of one sequence sorted by key (ties in sequence order), dealt to partitions: the merge
    gives the sorted sequence back when equal keys sit in one partition (as a slot's rows do)."""
    order = sorted(range(len(keys)), key=lambda i: keys[i])  # reference: a stable sort
    owner = {k: rnd.randrange(n_parts) for k in set(keys)}  # one partition per key
    parts = [[] for _ in range(n_parts)]
    for i in order:
        parts[owner[keys[i]]].append((keys[i], f"line {i}"))
    assert merge_keyed_lines(parts) == [f"line {i}" for i in order]


def test_merge_keyed_lines_ties_and_own_order():
    """Equal keys in two partitions: the lower partition first; a partition's own order is kept
    even where its keys decrease."""
    a = [((1,), "a1"), ((0,), "a0")]
    b = [((1,), "b1")]
    assert merge_keyed_lines([a, b]) == ["a1", "a0", "b1"]
    assert merge_keyed_lines([[], b]) == ["b1"]
    assert merge_keyed_lines([[], []]) == []


def test_capture_hands_back_what_was_written():
    c = _Capture()
    c.write_lines(["x", "yy"])
    assert c.read_lines() == ["x", "yy"] and c.state() == {"bytes": 5}
    assert c.take() == ["x", "yy"] and c.take() == []


def test_sla_key_reevaluations_then_ticks():
    """Re-evaluated ticks (at or before the last tick) come first, rule by rule; new ticks tick by
    tick, then rule, then node; a topology change's events after both."""
    from types import SimpleNamespace

    from telcoanalytics.synth.network import generate

    topo = generate(n_elements=60, n_regions=2, days=0.01, seed=1).topology
    comp = SimpleNamespace(mon=SimpleNamespace(rules=[SimpleNamespace(name="r0"), SimpleNamespace(name="r1")]))
    ids = topo.ids[topo.element_level]

    def ev(rule, minute, e):
        return {"rule": rule, "t_ms": minute * 60_000, "scope_level": "element", "scope_id": int(ids[e])}

    events = [ev("r1", 12, 3), ev("r0", 12, 5), ev("r0", 11, 2), ev("r1", 9, 0), ev("r0", 8, 4), ev("r0", 8, 1)]
    keys = [_sla_key(comp, e, 10, topo) for e in events]
    got = [events[i] for i in sorted(range(len(events)), key=keys.__getitem__)]
    want = [ev("r0", 8, 1), ev("r0", 8, 4), ev("r1", 9, 0), ev("r0", 11, 2), ev("r0", 12, 5), ev("r1", 12, 3)]
    assert got == want
    assert _sla_key(comp, ev("r0", 1, 0), None, topo)[0] == 2 > keys[0][0]
    region = {"rule": "zz", "t_ms": 0, "scope_level": "region", "scope_id": int(topo.ids["region"][1])}
    assert _sla_key(comp, region, None, topo) == (2, 2, 1, 0)  # unknown rule after the known ones
    assert _sla_key(comp, {"rule": "r0", "t_ms": 0}, None, topo)[2] == -1  # no scope


# ---- the replay's files -------------------------------------------------------------------------------------
SMALL = ["--elements", "2000", "--seed", "11", "--days", "0.1", "--history-days", "0.2"]


def _masked_report(path) -> list[str]:
    """The report without what depends on timing or on the state's memory layout: seconds, ms,
    rows/s, the time line and the cubes' memory."""
    text = path.read_text()
    text = re.sub(r"\d[\d,]*\.\d+ s\b", "T s", text)
    text = re.sub(r"\b\d+ ms\b", "T ms", text)
    text = re.sub(r"[\d.]+ M rows/s", "R M rows/s", text)
    text = re.sub(r"(call records; )[\d.]+ MiB", r"\1M MiB", text)
    return [x for x in text.splitlines() if not x.startswith("== time:")]


def _assert_same_outputs(a, b):
    names = sorted(p.name for p in a.iterdir() if p.is_file() and p.name != "checkpoint.npz")
    assert names == sorted(p.name for p in b.iterdir() if p.is_file() and p.name != "checkpoint.npz")
    assert {"sla_events.jsonl", "anomalies.jsonl", "scorecard.json", "report.txt"} <= set(names)
    for name in names:
        if name.endswith(".jsonl"):
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    sa, sb = (json.loads((d / "scorecard.json").read_text()) for d in (a, b))
    sa.pop("seconds_incidents"), sb.pop("seconds_incidents")
    assert sa == sb
    ra, rb = _masked_report(a / "report.txt"), _masked_report(b / "report.txt")
    assert ra == rb


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    from telcoanalytics import cli

    out = tmp_path_factory.mktemp("in_process")
    assert cli.main(["replay", *SMALL, "--out", str(out)]) == 0
    assert (out / "anomalies.jsonl").stat().st_size > 0 and (out / "sla_events.jsonl").stat().st_size > 0
    return out


@pytest.mark.slow
def test_replay_workers_writes_the_in_process_outputs(in_process, tmp_path):
    pytest.importorskip("distributed", reason="the [distributed] extra is part of [test]")
    from telcoanalytics import cli

    assert cli.main(["replay", *SMALL, "--workers", "2", "--out", str(tmp_path)]) == 0
    _assert_same_outputs(in_process, tmp_path)
    assert "partitions (2 workers, their CPU" in (tmp_path / "report.txt").read_text()


@pytest.mark.slow
def test_replay_workers_killed_resumes_on_workers(in_process, tmp_path):
    """SIGKILL (the driver and its workers) once a checkpoint is there, then ``--resume``: the
    resumed run restores its partitions on a new cluster and ends with the in-process files."""
    pytest.importorskip("distributed", reason="the [distributed] extra is part of [test]")
    from telcoanalytics import cli

    cmd = [sys.executable, "-m", "telcoanalytics.cli", "replay", *SMALL, "--workers", "2"]
    cmd += ["--checkpoint-every-min", "15", "--out", str(tmp_path)]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not (tmp_path / "checkpoint.npz").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before its first checkpoint"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (tmp_path / "report.txt").exists()
    assert cli.main(["replay", "--resume", str(tmp_path)]) == 0
    _assert_same_outputs(in_process, tmp_path)
    parts = list((tmp_path / "checkpoint.npz.parts").iterdir())
    assert len(parts) == 2 and not [p for p in parts if p.name.endswith(".tmp")]


def test_checkpoint_settings_reads_the_driver_section(tmp_path):
    from telcoanalytics.pipeline.replay import checkpoint_settings

    meta = {"driver": {"settings": {"workers": 3}}}
    np.savez(tmp_path / "c.npz", __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    assert checkpoint_settings(tmp_path / "c.npz") == {"workers": 3}
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert checkpoint_settings(tmp_path / "bad.npz") is None
    assert checkpoint_settings(tmp_path / "missing.npz") is None


# ---- merged components against one pipeline, in this process ---------------------------------------------------
class _MemLog:
    """An in-memory finding log (what the components read and write of an OutputLog)."""

    seq = 0

    def __init__(self):
        self.lines = []

    def write_lines(self, lines):  # as an OutputLog's file: an item may hold several newline-joined lines
        self.lines.extend("\n".join(lines).split("\n") if lines else [])

    def read_lines(self):
        return list(self.lines)

    def state(self):
        return {"bytes": sum(len(x) + 1 for x in self.lines)}


@pytest.fixture(scope="module")
def small_day():
    from telcoanalytics.synth.network import generate

    day = generate(n_elements=120, n_regions=3, days=0.08, seed=5)
    return day, list(day.raw_batches())


def _feed(p, batches, day=None):
    if day is not None:  # warm up from the first 40 minutes, as the replay does from its history
        for comp in p.components.values():
            if hasattr(comp, "learn"):
                comp.learn(day, day.start_ms + 2_400_000)
    p.feed(batches)
    p.advance(p.max_event_ms + 1)
    p.finish()


def test_merged_components_report_as_one_pipeline(small_day):
    """Three partitions in this process, their finding lines merged into logs and their components
    merged: the same log lines and report sections as one pipeline (the cubes' memory aside)."""
    from telcoanalytics.pipeline import Pipeline
    from telcoanalytics.pipeline.components import build_components
    from telcoanalytics.pipeline.distributed import merged_components, partitioned_pipeline

    day, batches = small_day
    names = ["windows", "sla", "anomaly", "cube", "analysis"]
    a = Pipeline(day.topology, components=build_components(day.topology, names))
    logs_a = {"sla_events": _MemLog(), "anomalies": _MemLog()}
    a.components["sla"].attach_log(logs_a["sla_events"])
    a.components["anomaly"].attach_log(logs_a["anomalies"])
    _feed(a, batches, day)
    b = partitioned_pipeline(day.topology, enabled=names, n_partitions=3)
    part = b.components["partitions"]
    assert part.log_names() == ["sla_events", "anomalies"]
    logs_b = {"sla_events": _MemLog(), "anomalies": _MemLog()}
    part.attach_logs(logs_b)
    _feed(b, batches, day)
    rows = [json.loads(x) for x in logs_a["anomalies"].lines]
    assert any(r["metric"] for r in rows) and any(not r["metric"] for r in rows)  # scored and silence rows
    assert logs_b["anomalies"].lines == logs_a["anomalies"].lines
    assert logs_b["sla_events"].lines == logs_a["sla_events"].lines
    merged = merged_components(part.states(), b.topology, logs_b)
    assert list(merged) == names
    for name in names:
        ra, rb = a.components[name].report_lines(), merged[name].report_lines()
        if name == "cube":  # a merged cube is laid out afresh: its memory differs
            ra, rb = ra[1:], rb[1:]
        ra, rb = ([re.sub(r"\b\d+ ms\b", "T ms", x) for x in r] for r in (ra, rb))  # timings
        assert rb == ra, name
    light = merged_components(part.report_states(), b.topology, logs_b)  # what report_view reads
    for name in names:
        la, lb = ([re.sub(r"\b\d+ ms\b", "T ms", x) for x in c[name].report_lines()] for c in (light, merged))
        assert la == lb, name
    view = b.report_view()
    assert view.components.keys() == merged.keys() and "partitions (in this process)" in view.seconds
    assert [r["slot"] for r in view.components["anomaly"].rows[0]] == [r["slot"] for r in merged["anomaly"].rows[0]]
    assert view.counts() == b.counts() and b.component_names == names


def test_merged_components_unmergeable(small_day, monkeypatch):
    """A component class it cannot merge reports partition by partition; analysis series laid out
    differently are refused with the keys that differ."""
    from telcoanalytics.pipeline.components import WindowsComponent
    from telcoanalytics.pipeline.distributed import _merged_analysis, merged_components, partitioned_pipeline

    day, batches = small_day
    b = partitioned_pipeline(day.topology, enabled=["windows", "analysis"], n_partitions=2)
    _feed(b, batches)
    states = b.components["partitions"].states()

    class Odd(WindowsComponent):
        pass

    odd = [{"windows": (f"{__name__}:Odd", st["windows"][1])} for st in states]
    import telcoanalytics.pipeline.contract as contract

    real = contract.load_class
    monkeypatch.setattr(contract, "load_class", lambda path: Odd if path.endswith(":Odd") else real(path))
    lines = merged_components(odd, b.topology)["windows"].report_lines()
    assert lines[0] == "-- partition 0" and "-- partition 1" in lines
    sts = [st["analysis"][1] for st in states]
    sts[1] = dict(sts[1], series=dict(sts[1]["series"], first_bin=int(sts[1]["series"]["first_bin"]) + 1))
    with pytest.raises(ValueError, match="first_bin"):
        _merged_analysis(sts, b.topology)


def test_anomaly_update_keys_against_a_reference():
    """Each found row's key names the driver-batch row of its event; QoS losses after latencies;
    rows without a matching event, or a batch without positions, get position -1."""
    from types import SimpleNamespace

    from telcoanalytics.pipeline.contract import RoutedBatch
    from telcoanalytics.pipeline.distributed import _anomaly_update_keys

    rng = np.random.default_rng(3)
    n = 40
    rows = np.zeros(n, dtype=[("ts_ms", "i8"), ("latency_ms", "f8")])
    rows["ts_ms"] = 1_000_000 + 60_000 * rng.integers(0, 4, n)
    elem = rng.permutation(200)[:n]  # distinct elements: (element, time) names one row
    pos = rng.permutation(1000)[:n].astype(np.int32)
    batch = RoutedBatch("qos", rows, elem, np.zeros(n, np.int64))
    comp = SimpleNamespace(net=SimpleNamespace(n_metrics=10), n_eq=8)
    pick = rng.integers(0, n, 25)
    metric = np.where(rng.random(25) < 0.5, 8, 9)
    found = np.zeros(27, dtype=[("slot", "i8"), ("t_ms", "i8")])
    found["slot"][:25] = elem[pick] * 10 + metric
    found["t_ms"][:25] = rows["ts_ms"][pick]
    found["slot"][25:] = [elem[0] * 10 + 8, 999 * 10 + 8]  # no event at that time / element
    found["t_ms"][25:] = [rows["ts_ms"][0] + 1, rows["ts_ms"][0]]
    keys = _anomaly_update_keys(comp, found, 7, pos, batch)
    want = [(0, 7, int(rows["ts_ms"][i]), int(m == 9), int(pos[i])) for i, m in zip(pick, metric)]
    want += [(0, 7, int(found["t_ms"][25]), 0, -1), (0, 7, int(found["t_ms"][26]), 0, -1)]
    assert keys == want
    assert _anomaly_update_keys(comp, found[:2], 7, None, batch) == [(0, 7, 0, 0, -1)] * 2
    eq = RoutedBatch("equip", rows, elem, np.zeros(n, np.int64))
    assert [k[3] for k in _anomaly_update_keys(comp, found[:25], 1, pos, eq)] == [0] * 25  # equip: no kind


def test_merge_helpers_edges(small_day):
    """Nested lookups, lines with no log to go to (refused), and held (not streamed) SLA events."""
    from telcoanalytics.pipeline.distributed import _find, merged_components, partitioned_pipeline

    assert _find({"a": {"c": {}}, "d": {"b": 2}}, "b") == 2
    with pytest.raises(KeyError):
        _find({"a": {"c": {}}}, "b")
    day, batches = small_day
    b = partitioned_pipeline(day.topology, enabled=["sla"], n_partitions=2)
    part = b.components["partitions"]
    with pytest.raises(RuntimeError, match="no sla_events log"):
        part._write_lines([{"sla_events": [((0,), "x")]}])
    _feed(b, batches, day)
    merged = merged_components(part.states(), b.topology)  # no logs: the partitions' held events
    held = [e for st in part.states() for e in st["sla"][1]["events"]]
    assert held and [e.to_dict() for e in merged["sla"].events] == held
    light = merged_components(part.report_states(), b.topology)
    assert [e.to_dict() for e in light["sla"].events] == held
    assert light["sla"].report_lines() == merged["sla"].report_lines()
