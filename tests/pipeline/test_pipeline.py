"""Pipeline: conservation, routing against a NumPy reference, watermark, checkpoint/restore, CLI."""

import json

import numpy as np
import pytest

from telcoanalytics import cli
from telcoanalytics.alerts.manager import Alert, AlertManager
from telcoanalytics.alerts.sinks import CallbackSink
from telcoanalytics.pipeline.components import COMPONENTS
from telcoanalytics.pipeline.contract import Component, check_component
from telcoanalytics.pipeline.pipeline import Pipeline, _flatten, _unflatten
from telcoanalytics.records import SOURCES
from telcoanalytics.synth.network import generate


@pytest.fixture(scope="module")
def day():
    return generate(n_elements=240, n_regions=3, days=0.04, seed=3)


def _run(day, batches=None):
    p = Pipeline(day.topology)
    for source, rows in batches if batches is not None else day.raw_batches():
        p.process(source, rows)
    return p


def test_counts_conserved_and_match_the_generator(day):
    p = _run(day)
    assert p.conserved()
    for s in SOURCES:
        c = p.counts()[s]
        assert c["read"] == day.stats["n_arrived"][s]
        # every clean row is accepted; every corrupted row and duplicate is quarantined
        assert c["accepted"] == len(day[s])
        assert c["quarantined"] == day.stats["n_arrived"][s] - len(day[s])


def test_routing_matches_numpy_reference(day):
    p = _run(day)
    region_of = day.topology.element_to("region")
    for si, s in enumerate(SOURCES):
        from telcoanalytics.records import ELEMENT_FIELD

        idx = day.topology.index_of(day[s][ELEMENT_FIELD[s]])
        ref = np.bincount(region_of[idx], minlength=day.topology.n_nodes("region"))
        np.testing.assert_array_equal(p.routed[si], ref)  # exact: counts
    assert p.region_table()["total"].sum() == sum(len(day[s]) for s in SOURCES)


def test_watermark_trails_max_event_time(day):
    p = Pipeline(day.topology, allowed_lateness_ms=60_000)
    assert p.watermark_ms == np.iinfo(np.int64).min
    rows = day.qos[:10]
    p.process("qos", rows)
    assert p.watermark_ms == int(rows["ts_ms"].max()) - 60_000


class _Counter:
    """A minimal component: counts rows per source, finds one alert at every advance."""

    def __init__(self):
        self.n = np.zeros(len(SOURCES), dtype=np.int64)
        self.ticks = []

    def update(self, batch):
        assert len(batch.rows) == len(batch.element_index) == len(batch.partition)
        self.n[SOURCES.index(batch.source)] += len(batch.rows)
        return []

    def advance(self, wm):
        self.ticks.append(wm)
        return [Alert({"alertname": "tick", "severity": "info"}, {"summary": "tick"}, starts_at_ms=wm, updated_ms=wm)]

    def topology_changed(self, topology, changes):
        return []

    def finish(self, wm):
        return []

    def report_lines(self):
        return [f"counter: {int(self.n.sum())} rows"]

    def to_state(self):
        return {"n": self.n, "meta": {"ticks": len(self.ticks), "name": "c"}}

    @classmethod
    def from_state(cls, d, topology):
        c = cls()
        c.n = d["n"].copy()
        assert d["meta"] == {"ticks": d["meta"]["ticks"], "name": "c"}
        return c


def test_components_fed_and_checkpoint_restore(day, tmp_path):
    p = Pipeline(day.topology, components={"counter": _Counter()})
    batches = list(day.raw_batches())
    half = len(batches) // 2
    for s, rows in batches[:half]:
        p.process(s, rows)
    [found] = p.advance()
    assert found.labels["alertname"] == "tick" and found.starts_at_ms == p.watermark_ms
    path = p.checkpoint(tmp_path / "state.npz")
    q = Pipeline.restore(path)
    assert isinstance(q.components["counter"], _Counter)
    for s, rows in batches[half:]:
        p.process(s, rows)
        q.process(s, rows)
    assert q.counts() == p.counts()
    np.testing.assert_array_equal(q.routed, p.routed)
    np.testing.assert_array_equal(q.components["counter"].n, p.components["counter"].n)
    assert q.quarantine.counts_by_source() == p.quarantine.counts_by_source()
    # restored duplicates memory: a record id seen before the checkpoint is still a duplicate
    dup = day.cdr[:1].copy()
    assert q.process("cdr", dup).by_reason == {"duplicate_id": 1}


def test_findings_go_to_the_alert_manager_and_out_of_advance(day):
    sent = []
    mgr = AlertManager(day.topology, sinks=[CallbackSink(sent.append)], group_wait_ms=0)
    p = Pipeline(day.topology, components={"counter": _Counter()}, alerts=mgr)
    p.feed(day.raw_batches())
    found = p.advance(p.max_event_ms + 1)
    assert len(found) == 1 and p.findings_count == len(p.components["counter"].ticks)
    assert p.notifications == len(sent) > 0
    assert any(a.labels["alertname"] == "tick" for n in sent for a in n.alerts)
    assert p.alert_report_lines()[0].startswith("== alerts")
    assert Pipeline(day.topology).alert_report_lines() == []


def test_component_contract_is_checked():
    """Every component conforms to the one contract; an object that does not is refused by name."""

    class Old:  # the pre-contract shape: update(source, rows, element_index), load_state
        def update(self, source, rows, element_index):
            pass

        def advance(self, wm):
            return []

        def report_lines(self):
            return []

    with pytest.raises(TypeError, match="'old' .*lacks topology_changed, finish, to_state, from_state"):
        Pipeline(generate(n_elements=20, n_regions=1, days=0.01, seed=1).topology, components={"old": Old()})


@pytest.mark.parametrize("name", list(COMPONENTS))
def test_every_replay_component_conforms(name):
    topo = generate(n_elements=20, n_regions=1, days=0.01, seed=1).topology
    comp = COMPONENTS[name](topo, {"allowed_lateness_ms": 60_000})
    check_component(name, comp)
    assert isinstance(comp, Component)
    again = type(comp).from_state(comp.to_state(), topo)  # state round trip through the class
    assert type(again) is type(comp) and again.report_lines() == comp.report_lines()


def test_restore_errors(day, tmp_path):
    p = Pipeline(day.topology, components={"counter": _Counter()})
    path = p.checkpoint(tmp_path / "s.npz")
    with np.load(path) as z:
        flat = {k: z[k] for k in z.files}
    meta = json.loads(bytes(flat["__meta__"]).decode())
    meta["component_classes"]["counter"] = "os:system"
    flat["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "b.npz", **flat)
    with pytest.raises(ValueError, match="is not a component class"):
        Pipeline.restore(tmp_path / "b.npz")
    meta["component_classes"]["counter"] = "telcoanalytics.pipeline.components:Gone"
    flat["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "c.npz", **flat)
    with pytest.raises(ValueError, match="does not exist in this version"):
        Pipeline.restore(tmp_path / "c.npz")


def test_bad_arguments(day):
    with pytest.raises(TypeError, match="Topology"):
        Pipeline(object())
    with pytest.raises(ValueError, match="unknown topology level"):
        Pipeline(day.topology, route_level="country")
    with pytest.raises(ValueError, match="allowed_lateness_ms"):
        Pipeline(day.topology, allowed_lateness_ms=-1)
    with pytest.raises(ValueError, match="unknown source"):
        Pipeline(day.topology).process("sms", day.cdr[:1])


def test_flatten_roundtrip():
    d = {"a": np.arange(3), "b": {"c": 1.5, "d": "x", "e": {}}, "f.g": [1, 2]}
    flat = {}
    _flatten("p", d, flat)
    back = _unflatten("p", flat)
    np.testing.assert_array_equal(back["a"], d["a"])
    assert back["b"] == {"c": 1.5, "d": "x", "e": {}}
    assert back["f.g"] == [1, 2]
    with pytest.raises(TypeError, match="unsupported"):
        _flatten("p", {"x": object()}, {})


def test_cli_replay_synthetic(tmp_path, capsys):
    rc = cli.main(
        [
            "replay",
            "--elements",
            "150",
            "--days",
            "0.05",
            "--history-days",
            "0",
            "--out",
            str(tmp_path / "o"),
            "--checkpoint",
            str(tmp_path / "ck.npz"),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "conservation (read == accepted + quarantined, accepted == routed): ok" in out
    assert "quarantine by reason" in out and "duplicate_id" in out
    assert "routed by region" in out
    assert "routed by region" in (tmp_path / "o" / "report.txt").read_text()
    for section in ("windowed statistics", "SLA monitoring", "alerts (deduplicated"):
        assert section in out
    alerts = [json.loads(x) for x in (tmp_path / "o" / "alerts.jsonl").read_text().splitlines()]
    assert all("fingerprint" in a and "labels" in a for a in alerts)
    lines = (tmp_path / "o" / "quarantine.jsonl").read_text().splitlines()
    assert lines and all("reason" in json.loads(x) for x in lines)
    rc = cli.main(
        [
            "replay",
            "--elements",
            "150",
            "--days",
            "0.05",
            "--history-days",
            "0",
            "--out",
            str(tmp_path / "o2"),
            "--restore",
            str(tmp_path / "ck.npz"),
        ]
    )
    assert rc == 0 and "restored state" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_cli_generate_then_replay_files(tmp_path, capsys, fmt):
    d = tmp_path / "data"
    assert cli.main(["generate", "--elements", "100", "--days", "0.03", "--out", str(d), "--format", fmt]) == 0
    assert cli.main(["replay", "--input", str(d), "--out", str(tmp_path / "o"), "--chunk-rows", "5000"]) == 0
    out = capsys.readouterr().out
    assert "conservation (read == accepted + quarantined, accepted == routed): ok" in out
    if fmt == "csv":
        assert "unparseable" in out


def test_cli_input_errors(tmp_path, capsys):
    with pytest.raises(SystemExit, match="not a directory"):
        cli.main(["replay", "--input", str(tmp_path / "nope")])
    with pytest.raises(SystemExit, match="no topology"):
        cli.main(["replay", "--input", str(tmp_path)])
    (tmp_path / "topology.txt").write_text("x")
    with pytest.raises(SystemExit, match="unknown topology file type"):
        cli.main(["replay", "--input", str(tmp_path), "--topology", str(tmp_path / "topology.txt")])
    with pytest.raises(SystemExit) as exc:
        cli.main(
            [
                "replay",
                "--elements",
                "100",
                "--days",
                "0.01",
                "--history-days",
                "0",
                "--out",
                str(tmp_path / "o"),
                "--components",
                "nope",
            ]
        )
    assert exc.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err


def test_topology_change_while_data_flows(day):
    topo = day.topology
    p = Pipeline(topo, allowed_lateness_ms=0)
    new_id = int(topo.ids["element"].max()) + 1
    rows = day.qos[:50].copy()
    rows["element_id"][:10] = new_id
    rows["ts_ms"][:10] += np.arange(10)  # ten probes of the new element, not one repeated
    r = p.process("qos", rows)
    assert r.by_reason == {"unknown_element": 10}  # not in the topology yet
    before = p.routed.copy()
    # add the element under the first site, then re-home an existing element to another region
    site0 = int(topo.ids["site"][0])
    t1, ch1 = topo.add_elements([new_id], [site0])
    e = int(topo.ids["element"][0])
    other_site = int(
        topo.ids["site"][np.flatnonzero(topo.node_to("site", "region") != topo.element_to("region")[0])[0]]
    )
    t2, ch2 = t1.rehome_elements([e], [other_site])
    p.change_topology(t2, [ch1, ch2])
    np.testing.assert_array_equal(p.routed, before)  # nothing already counted is lost
    rows["ts_ms"] += 60_000  # the next minute's probes (the same rows again would be duplicates)
    r = p.process("qos", rows)
    assert r.n_accepted == 50  # the new element is known now
    region_new = t2.element_to("region")[t2.index_of([e])[0]]
    rows2 = day.qos[:1].copy()
    rows2["element_id"] = e
    rows2["ts_ms"] += 120_000
    before = p.routed.copy()
    p.process("qos", rows2)
    assert (p.routed - before)[SOURCES.index("qos"), region_new] == 1  # routed by the new structure
    with pytest.raises(ValueError, match="changes start at topology version"):
        p.change_topology(t2, [ch1])
    with pytest.raises(TypeError, match="Topology"):
        p.change_topology(object())
    # a freshly loaded topology file is reconciled (same structure: no change)
    assert p.change_topology(t2) == []


def test_topology_change_of_another_version_is_refused(day):
    p = Pipeline(day.topology, components={"counter": _Counter()})
    t1, ch1 = day.topology.add_elements([10**12], [int(day.topology.ids["site"][0])])
    t2, ch2 = t1.add_elements([10**12 + 1], [int(day.topology.ids["site"][0])])
    with pytest.raises(ValueError, match="changes start at topology version 1"):
        p.change_topology(t2, [ch2])
    assert p.topology is day.topology  # nothing changed


def test_feed_advances_once_per_minute_of_watermark(day):
    comp = _Counter()
    p = Pipeline(day.topology, components={"counter": comp})
    n = p.feed(day.raw_batches())
    assert n == sum(c["read"] for c in p.counts().values())
    ticks = np.array(comp.ticks)
    assert len(ticks) > 10 and np.all(np.diff(ticks) > 0)
    # each advance happens at the first watermark past a new minute boundary
    assert len(np.unique(ticks // 60_000)) == len(ticks)
    assert ticks[-1] <= p.watermark_ms


def test_checkpoint_keeps_rows_waiting_ahead_of_the_clock(day, tmp_path):
    """Rows held in the time_in_future side output at checkpoint time are admitted after a restore
    exactly as in the uninterrupted run."""
    batches = list(day.raw_batches())
    half = len(batches) // 2
    p = Pipeline(day.topology, components={"counter": _Counter()})
    p.feed(batches[:half])
    ahead = day.qos[:3].copy()
    ahead["ts_ms"] = p.max_event_ms + 20 * 60_000  # 20 min ahead: waits, not quarantined
    p.process("qos", ahead)
    assert p.clock.held_rows == 3
    q = Pipeline.restore(p.checkpoint(tmp_path / "held.npz"))
    assert q.clock.held_rows == 3 and q.clock.summary() == p.clock.summary()
    for r in (p, q):
        r.feed(batches[half:])
    assert q.clock.summary() == p.clock.summary() and p.clock.n_admitted == 3
    np.testing.assert_array_equal(q.components["counter"].n, p.components["counter"].n)
    assert q.counts() == p.counts()
