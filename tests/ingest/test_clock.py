"""The robust event-time clock and the ``time_in_future`` side output, alone and in a pipeline."""

import json
import time
from pathlib import Path

import numpy as np
import pytest

from telcoanalytics.ingest.clock import EventClock

T0 = 1_700_000_000_000
Y2099 = 4_084_000_000_000  # 2099-06-01, inside the sane range (2000-2100)


def test_single_future_rows_do_not_move_the_clock():
    c = EventClock()
    t = T0 + np.arange(1000) * 100
    assert c.observe(t) >= T0 + 99_000 - 1000
    before = c.now_ms
    assert c.observe(np.array([Y2099])) < before + 1000  # a batch of one row, a century ahead
    assert c.observe(np.array([T0 + 86_400_000] * 6)) < before + 1000  # six more rows a day ahead
    before = c.now_ms
    now, hold, reject = c.classify(np.array([before, before + 200_000, before + 2 * 3_600_000, Y2099]))
    assert now.tolist() == [True, True, False, False]
    assert hold.tolist() == [False, False, True, False]
    assert reject.tolist() == [False, False, False, True]


def test_the_clock_follows_when_the_data_really_moves_on():
    c = EventClock()
    c.observe(T0 + np.arange(100) * 1000)
    later = T0 + 3 * 86_400_000 + np.arange(100) * 1000  # a feed back after three days
    assert c.observe(later) >= later[-8]


def test_held_rows_are_admitted_when_their_time_comes():
    c = EventClock(max_skew_ms=60_000, future_horizon_ms=3_600_000)
    c.observe(T0 + np.arange(64) * 1000)
    rows = np.arange(3)
    c.hold("equip", rows, rows * 10, np.array([T0 + 200_000, T0 + 400_000, T0 + 900_000]))
    assert c.due() == [] and c.held_rows == 3
    c.observe(T0 + 350_000 + np.arange(64))
    ((src, r, ix),) = c.due()
    assert src == "equip" and r.tolist() == [0, 1] and ix.tolist() == [0, 10]
    assert (c.n_held, c.n_admitted, c.held_rows) == (3, 2, 1)
    assert "held 3" in c.summary()


def test_clock_arguments():
    with pytest.raises(ValueError, match="max_skew_ms"):
        EventClock(max_skew_ms=-1)
    with pytest.raises(ValueError, match="future_horizon_ms"):
        EventClock(max_skew_ms=10, future_horizon_ms=5)
    with pytest.raises(ValueError, match="outliers"):
        EventClock(window=4, outliers=4)
    c = EventClock()
    now, hold, reject = c.classify(np.array([Y2099]))  # no clock yet: nothing is judged
    assert now.all() and not hold.any() and not reject.any()
    assert c.observe(np.zeros(0, np.int64)) == c.now_ms


# ---- a generated day with rows far ahead gives the clean day's findings -------------------------------
def _run(day, batches, out: Path):
    from telcoanalytics.pipeline.components import build_alert_manager, build_components
    from telcoanalytics.pipeline.pipeline import Pipeline

    out.mkdir(parents=True, exist_ok=True)
    p = Pipeline(day.topology, components=build_components(day.topology), alerts=build_alert_manager(day.topology, out))
    p.components["anomaly"].learn(day, day.start_ms + 3 * 3_600_000)
    t0 = time.perf_counter()
    p.feed(batches)
    p.advance(p.max_event_ms + 1)
    p.finish()
    return p, time.perf_counter() - t0


def _findings(p):
    c = p.components
    an = np.concatenate(c["anomaly"].rows) if c["anomaly"].rows else None
    alerts = [json.loads(x) for x in Path(p.alerts.sinks[0].path).read_text().splitlines()]
    return {
        "sla": sorted((e.rule, e.scope_level, int(e.scope_id), e.state, int(e.t_ms)) for e in c["sla"].events),
        "episodes": sorted(
            (int(r["element_id"]), str(r["metric"]), str(r["classification"]), int(r["start_ms"])) for r in an
        ),
        # alerts other than silences and collection gaps: the same (as in test_merge, which of the
        # two an element's quiet spell pages as, and when the incident holding it notifies, can
        # differ; the episodes above, silences included, must not); incident ids are not compared
        "alerts": sorted(
            (a["labels"]["alertname"], json.dumps(_no_incident(a["labels"]), sort_keys=True), a["status"])
            for a in alerts
            if a["labels"].get("classification") not in ("silence", "collection_gap")
        ),
    }


def _no_incident(labels: dict) -> dict:
    return {k: v for k, v in labels.items() if k != "incident"}


def _with_future_rows(day):
    """The day's batches, with a row dated 2099 alone in a batch, and a row a day ahead, one 2099
    and one two hours ahead inside an equipment batch an hour in."""
    k = 0
    for source, rows in day.raw_batches():
        k += source == "equip"
        if source == "equip" and k == 60:
            extra = np.repeat(rows[:1], 3)
            t = int(np.median(rows["ts_ms"]))
            extra["ts_ms"] = [Y2099, t + 86_400_000, t + 2 * 3_600_000]
            extra["element_id"] = rows["element_id"][1:4]  # three distinct elements: not duplicates
            yield "equip", np.concatenate([rows, extra])
            alone = extra[:1].copy()
            alone["element_id"] = rows["element_id"][5]  # not a duplicate of the 2099 row above
            yield "equip", alone
        else:
            yield source, rows


@pytest.mark.slow
def test_rows_far_ahead_do_not_change_the_findings(tmp_path):
    from telcoanalytics.synth.network import SynthConfig, generate

    day = generate(SynthConfig(n_elements=1500, days=0.2, seed=3))
    clean, t_clean = _run(day, day.raw_batches(), tmp_path / "clean")
    bad, t_bad = _run(day, _with_future_rows(day), tmp_path / "bad")
    assert bad.quarantine.counts("equip")["time_in_future"] == 3  # 2099 twice, a day ahead once
    assert (bad.clock.n_held, bad.clock.n_admitted) == (1, 1)  # two hours ahead: waited, then admitted
    assert bad.counts()["equip"]["read"] == clean.counts()["equip"]["read"] + 4
    assert bad.conserved()
    f_clean, f_bad = _findings(clean), _findings(bad)
    for p in (clean, bad):  # the day's real collection gap of region 2 is paged in both
        alerts = [json.loads(x) for x in Path(p.alerts.sinks[0].path).read_text().splitlines()]
        assert any(a["labels"]["alertname"] == "collection_gap" and a["labels"]["region"] == "2" for a in alerts)
    assert f_bad == f_clean
    assert t_bad < 1.5 * t_clean + 5
