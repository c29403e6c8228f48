"""A topology change while data flows, in the replay: which elements move, when the change is
applied, and that every component follows it (state kept at element level, roll-ups by the new
structure from the change on)."""

import json

import numpy as np
import pytest

from telcoanalytics import cli
from telcoanalytics.pipeline.components import build_alert_manager, build_components
from telcoanalytics.pipeline.pipeline import Pipeline
from telcoanalytics.pipeline.replay import topology_change_hook
from telcoanalytics.pipeline.replay_report import rehome_plan
from telcoanalytics.synth.network import generate


@pytest.fixture(scope="module")
def day():
    return generate(n_elements=300, n_regions=3, days=0.25, seed=5)


def test_rehome_plan_moves_untouched_elements_inside_their_region(day):
    topo = day.topology
    moved, new_site = rehome_plan(day, 0.05, seed=3)
    assert len(moved) == 15
    site_of = topo.element_to("site")
    reg_of_site = topo.node_to("site", "region")
    e = topo.index_of(moved)
    s_new = topo.index_of(new_site, "site")
    assert np.all(s_new != site_of[e])  # a real move
    assert np.all(reg_of_site[s_new] == reg_of_site[site_of[e]])  # inside the region
    touched = set()
    for lab, det in zip(day.labels, day.scenarios):
        if lab["scope_level"] == "region":
            continue
        ids = np.asarray(det.get("element_ids", [lab["element_id"]]), dtype=np.int64)
        touched |= set(site_of[topo.index_of(ids[ids >= 0])].tolist())
        if lab["scope_level"] == "site":
            touched.add(int(topo.index_of([lab["scope_id"]], "site")[0]))
    assert not touched & set(site_of[e].tolist())  # scenario ground truth untouched
    assert not touched & set(s_new.tolist())
    assert len(rehome_plan(day, 0.0)[0]) == 0
    # the plan is reproducible from the seed
    np.testing.assert_array_equal(rehome_plan(day, 0.05, seed=3)[0], moved)


def test_change_applied_once_before_first_batch_reaching_the_time():
    calls = []
    batches = [
        ("equip", np.array([(5,), (9,)], dtype=[("ts_ms", "i8")])),
        ("cdr", np.zeros(0, dtype=[("start_ms", "i8")])),
        ("cdr", np.array([(3,), (12,)], dtype=[("start_ms", "i8")])),
        ("equip", np.array([(20,)], dtype=[("ts_ms", "i8")])),
    ]
    seen = []
    state = {}
    hook = topology_change_hook(10, lambda: calls.append(len(seen)), state)
    for source, rows in batches:
        hook(source, rows)
        seen.append(source)
    assert calls == [2] and len(seen) == 4  # before the third batch (max 12 >= 10), once


def _element_fingerprint(p):
    """Element-level state that a re-home must not change."""
    c = p.components
    out = {}
    if "windows" in c:
        w = c["windows"].win
        out["windows"] = w.query(w.max_ts_ms, 3_600_000).tolist()
    if "anomaly" in c:
        out["anomaly"] = sorted(
            (int(r["slot"]), str(r["classification"]), int(r["start_ms"]))
            for rows in c["anomaly"].rows
            for r in rows
            if r["classification"] != "crowd"
        )
    return json.dumps(out, sort_keys=True)  # NaN-safe equality (nan != nan as floats)


@pytest.mark.slow  # ~20 s as plain Python; the compiled pass runs it
def test_pipeline_follows_a_rehome_mid_stream(day, tmp_path):
    names = ["windows", "anomaly", "sla", "cube", "alerts"]
    batches = list(day.raw_batches())
    half = len(batches) // 2
    moved, new_site = rehome_plan(day, 0.05, seed=1)

    def pipeline(out):
        return Pipeline(
            day.topology,
            components=build_components(day.topology, names),
            alerts=build_alert_manager(day.topology, out),
        )

    a = pipeline(tmp_path / "a")
    a.feed(batches)
    b = pipeline(tmp_path / "b")
    b.feed(batches[:half])
    target, ch = b.topology.rehome_elements(moved, new_site)
    b.change_topology(target, [ch])
    b.feed(batches[half : half + 10])
    b.advance()
    # a checkpoint taken after the change restores with the changed topology
    c = Pipeline.restore(b.checkpoint(tmp_path / "ck.npz"))
    assert c.topology.version == target.version
    for p in (b, c):
        p.feed(batches[half + 10 :])
    c.advance(c.max_event_ms + 1)
    c.finish()
    for p in (a, b):
        p.advance(p.max_event_ms + 1)
        p.finish()
    assert a.counts() == b.counts() and b.conserved()
    assert b.topology.version == day.topology.version + 1
    np.testing.assert_array_equal(
        b.topology.element_to("site")[b.topology.index_of(moved)], b.topology.index_of(new_site, "site")
    )
    assert _element_fingerprint(a) == _element_fingerprint(b)
    # the cube: rows after the change roll up to the new sites, history stays where it happened
    site_of = day.topology.element_to("site")
    old_sites = set(day.topology.ids["site"][site_of[day.topology.index_of(moved)]].tolist())
    qa = a.components["cube"].cubes["explore"].query(["site"])
    qb = b.components["cube"].cubes["explore"].query(["site"])
    ca = dict(zip(qa["site"].tolist(), qa["count"].tolist()))
    cb = dict(zip(qb["site"].tolist(), qb["count"].tolist()))
    diff = {k: cb.get(k, 0) - ca.get(k, 0) for k in set(ca) | set(cb)}
    assert sum(diff.values()) == 0
    changed = {k for k, v in diff.items() if v}
    assert changed and changed <= old_sites | set(new_site.tolist())
    assert all(diff[k] >= 0 for k in changed - old_sites)
    # SLA: same rows counted; the monitor runs on the new version
    assert b.components["sla"].mon.topology.version == target.version
    # restored mid-stream after the change == uninterrupted
    assert c.counts() == b.counts()
    assert _element_fingerprint(c) == _element_fingerprint(b)
    np.testing.assert_array_equal(c.components["cube"].cubes["explore"].query(["site"]), qb)
    assert [e.to_dict() for e in c.components["sla"].events] == [e.to_dict() for e in b.components["sla"].events]


def test_cli_replay_reports_the_topology_change(tmp_path, capsys):
    rc = cli.main(
        [
            "replay",
            "--elements",
            "300",
            "--days",
            "0.05",
            "--history-days",
            "0",
            "--out",
            str(tmp_path / "o"),
            "--rehome-share",
            "0.02",
            "--components",
            "windows",
            "anomaly",
            "alerts",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "topology change while data flowed" in out and "6 elements were re-homed" in out
    assert "version 0 -> 1" in out
