"""The replay's components end to end: every capability fed by the pipeline, checkpoint/restore
mid-stream gives exactly the uninterrupted result, and the report says what was found."""

import json

import numpy as np
import pytest

from telcoanalytics import cli
from telcoanalytics.alerts.sinks import JsonlSink
from telcoanalytics.evaluate.scorecard import scenario_scorecard
from telcoanalytics.pipeline.components import COMPONENTS, build_alert_manager, build_components
from telcoanalytics.pipeline.pipeline import Pipeline
from telcoanalytics.synth.network import generate


@pytest.fixture(scope="module")
def day():
    return generate(n_elements=300, n_regions=3, days=0.25, seed=5)


def _pipeline(day, out, enabled=None):
    return Pipeline(
        day.topology, components=build_components(day.topology, enabled), alerts=build_alert_manager(day.topology, out)
    )


def _fingerprint(p):
    """What each component and the alert manager hold, as comparable plain values."""
    c = p.components
    t = c["windows"].win.max_ts_ms
    out = {
        "windows": c["windows"].win.query(t, 3_600_000).tolist(),
        "cube": c["cube"].cubes["explore"].query(["region", "service"]).tolist(),
        "sla": [(e.rule, e.state, e.scope_id, e.t_ms) for e in c["sla"].events],
        "anomaly": [
            (int(r["slot"]), str(r["classification"]), int(r["start_ms"])) for rows in c["anomaly"].rows for r in rows
        ],
        "alerts": p.alerts.counts()["current"],
        "notifications": p.notifications,
        "findings": p.findings_count,
    }
    return json.dumps(out, sort_keys=True, default=str)


@pytest.mark.slow  # minutes as plain Python; the compiled pass runs it
def test_all_components_run_and_restore_mid_stream_equals_uninterrupted(day, tmp_path):
    """A run checkpointed halfway and restored (components rebuilt from the checkpoint alone)
    ends exactly as the same run uninterrupted: same state, same findings, same notifications,
    and the two halves of its alert file are the uninterrupted alert file."""
    batches = list(day.raw_batches())
    a = _pipeline(day, tmp_path / "a")
    assert set(a.components) == set(COMPONENTS)
    a.feed(batches)
    a.advance(a.max_event_ms + 1)
    a.finish()

    half = len(batches) // 2
    b = _pipeline(day, tmp_path / "b")
    b.feed(batches[:half])
    path = b.checkpoint(tmp_path / "mid.npz")
    c = Pipeline.restore(path, alert_sinks=[JsonlSink(tmp_path / "b" / "alerts.jsonl", fsync=False)])
    assert list(c.components) == list(a.components)
    c.feed(batches[half:])
    c.advance(c.max_event_ms + 1)
    c.finish()
    assert c.counts() == a.counts()
    assert _fingerprint(c) == _fingerprint(a)
    assert (tmp_path / "b" / "alerts.jsonl").read_text() == (tmp_path / "a" / "alerts.jsonl").read_text()


@pytest.mark.slow
def test_report_sections_and_findings(day, tmp_path):
    p = _pipeline(day, tmp_path)
    p.feed(day.raw_batches())
    found = p.advance(p.max_event_ms + 1)
    p.finish()
    assert p.findings_count > 0 and p.findings_count >= len(found)
    text = "\n".join(line for comp in p.components.values() for line in comp.report_lines())
    text += "\n".join(p.alert_report_lines())
    for section in ("== windowed statistics", "== SLA monitoring", "== anomalies", "== cubes", "== alerts"):
        assert section in text
    # the scorecard lists each injected scenario of the span; on this day most are caught
    card = scenario_scorecard(day, day.start_ms, p.components)
    n_lab = int(np.count_nonzero(day.labels["end_ms"] > day.start_ms))
    assert len(card) == n_lab + 2
    caught = int(card[-1].split()[1])
    assert caught >= 0.8 * n_lab, card
    # the alert file holds Alertmanager-style entries with labels that resolve in the topology
    alerts = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert alerts, "a synthetic day with injected failures and congestion raises alerts"
    assert p.notifications > 0
    known = set(map(str, day.topology.ids["element"]))
    for a in alerts:
        el = a["labels"].get("element")
        assert el is None or el in known


def test_history_warm_up_learns_baselines(tmp_path):
    """learn() feeds the clean history: every slot that reported has its baseline past warm-up at
    the start of the replay (a cold detector starts every slot at zero observations), and the
    findings of the history are not reported."""
    d = generate(n_elements=300, n_regions=3, days=0.5, seed=5)
    start = d.start_ms + 6 * 3_600_000
    comp = build_components(d.topology, ["anomaly"])["anomaly"]
    assert comp.net.detector.n_obs.max() == 0
    comp.learn(d, start)
    n_obs = comp.net.detector.n_obs
    warmup = comp.net.detector.config.warmup
    from telcoanalytics.synth.stream import ORIGIN_CLEAN

    slots = []
    for source in ("equip", "qos"):  # what arrived (clean) before the replay starts
        rows, arrival, origin = d.raw(source)
        rows = rows[(origin == ORIGIN_CLEAN) & (arrival < start)]
        ts, e, m, _ = comp._events(source, rows, d.topology.index_of(rows["element_id"]))
        slots.append(e * len(comp.metrics) + m)
    slots = np.concatenate(slots)
    reported = np.unique(slots)
    seen = np.bincount(slots, minlength=len(n_obs))
    assert np.all(n_obs <= seen)  # each learned at most once; points inside an open episode teach nothing
    assert np.mean(n_obs == seen) > 0.98
    assert np.all(n_obs[reported] > 0) and np.median(n_obs[reported]) > warmup
    assert comp.rows == []


def test_cli_replay_with_history(tmp_path, capsys):
    assert (
        cli.main(["replay", "--elements", "100", "--days", "0.02", "--history-days", "0.03", "--out", str(tmp_path)])
        == 0
    )
    out = capsys.readouterr().out
    assert "learned baselines from the history" in out
