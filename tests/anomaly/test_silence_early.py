"""A silence confirmed by the element's other reports is flagged on the reports' own clock (early),
a lateness before the watermark reaches it; a late PM file or a collection gap is not."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telcoanalytics.anomaly.detector import NetworkAnomalyDetector, SilenceMonitor
from telcoanalytics.anomaly.silence import QUANTILE
from tests.anomaly.test_anomaly_network import CFG, PM, _topo

LATENESS = 15 * 60_000  # the replay's allowed lateness: its watermark trails the newest event by this


def _reference_early(last, gap, n_rep, other, other_gap, n_other, min_reports, gap_factor, slack):
    """Plain Python: both clocks are the QUANTILE-th of the tracked elements' sorted latest times
    (index floor(QUANTILE * (k - 1))); an element is early when each of its due times is before
    its clock."""
    tracked = [i for i in range(len(last)) if n_rep[i] >= min_reports and n_other[i] >= min_reports]
    if not tracked:
        return [False] * len(last)

    def clock(ts):
        t = sorted(int(ts[i]) for i in tracked)
        return t[int(QUANTILE * (len(t) - 1))]

    c1, c2 = clock(last), clock(other)
    out = []
    for i in range(len(last)):
        due1 = int(last[i]) + math.ceil(gap_factor * gap[i]) + slack
        due2 = int(other[i]) + math.ceil(gap_factor * other_gap[i]) + slack
        out.append(i in tracked and c1 > due1 and c2 > due2)
    return out


@settings(max_examples=80, deadline=None)
@given(
    st.integers(1, 12),
    st.data(),
    st.booleans(),
)
def test_early_equals_the_reference(n, data, confirm):
    times = st.sampled_from([-1, 0, 300_000, 600_000, 900_000, 1_200_000])
    gaps = st.sampled_from([0.0, 299_999.5, 300_000.0, 600_000.0])
    m = SilenceMonitor(n, gap_factor=1.0, slack_ms=60_000, min_reports=3, confirm_other=confirm)
    for name, strat, dt in (
        ("last_ts", times, np.int64),
        ("other_ts", times, np.int64),
        ("gap_ms", gaps, float),
        ("other_gap_ms", gaps, float),
        ("n_reports", st.integers(0, 5), np.int64),
        ("n_other", st.integers(0, 5), np.int64),
    ):
        setattr(m, name, np.array(data.draw(st.lists(strat, min_size=n, max_size=n)), dtype=dt))
    want = _reference_early(
        m.last_ts, m.gap_ms, m.n_reports, m.other_ts, m.other_gap_ms, m.n_other, 3, 1.0, 60_000
    )  # fmt: skip
    assert m.early().tolist() == (want if confirm else [False] * n)


def _day(rng, n_steps=60):
    """Every element reports utilisation (watched for silence) and latency (its other report, a QoS
    probe) each PM, each arriving at the end of its interval. Element 5 stops both at PM 30 (a
    failure); element 9's utilisation file of PM 40 arrives 12 minutes late and its next one 90 s
    late, its latency on time; element 13 stops its utilisation at PM 35 and keeps its latency (its
    PM collection stopped: a one-element collection gap)."""
    topo = _topo()
    n = topo.n_elements
    t = np.repeat(np.arange(n_steps, dtype=np.int64) * PM, 2 * n)
    e = np.tile(np.repeat(np.arange(n), 2), n_steps)
    m = np.tile([0, 1], n * n_steps)
    x = np.where(m == 0, 40.0 + rng.standard_normal(len(t)), 10.0 + rng.standard_normal(len(t)))
    keep = ~((e == 5) & (t >= 30 * PM)) & ~((e == 13) & (m == 0) & (t >= 35 * PM))
    t, e, m, x = t[keep], e[keep], m[keep], x[keep]
    arrival = t + PM
    arrival[(e == 9) & (m == 0) & (t == 40 * PM)] += 12 * 60_000
    arrival[(e == 9) & (m == 0) & (t == 41 * PM)] += 90_000
    o = np.argsort(arrival, kind="stable")
    return topo, t[o], e[o], m[o], x[o], arrival[o]


def _replay(confirm, rng):
    """Feed by arrival minute, check silence at the watermark (newest event - LATENESS) as the
    pipeline does; returns {element index: (start_ms, arrival minute flagged, value)} of the silences."""
    topo, t, e, m, x, arrival = _day(rng)
    net = NetworkAnomalyDetector(
        topo, ("prb_util_pct", "latency_ms"), CFG, silence_metrics=["prb_util_pct"], silence={"confirm_other": confirm}
    )
    flagged, i, newest = {}, 0, -1
    for now in range(PM, 60 * PM, 60_000):
        j = np.searchsorted(arrival, now, side="right")
        if j > i:
            net.update(t[i:j], e[i:j], m[i:j], x[i:j])
            newest = max(newest, int(t[i:j].max()))
            i = j
        rows = net.check_silence(newest - LATENESS)
        for r in rows[(rows["classification"] == "silence") & (rows["end_ms"] < 0)]:
            k = int(topo.index_of([int(r["element_id"])])[0])
            flagged.setdefault(k, (int(r["start_ms"]), now, float(r["value"])))
    return flagged


def test_a_failure_is_flagged_a_lateness_sooner_a_late_file_and_a_collection_stop_are_not():
    before = _replay(False, np.random.default_rng(3))
    after = _replay(True, np.random.default_rng(3))
    assert set(before) == set(after) == {5, 13}  # element 9's late file is no silence either way
    assert before[5][0] == after[5][0] == 29 * PM and before[13][0] == after[13][0] == 34 * PM
    # the failure: flagged once most elements' reports of PM 31 came in (its PM 30 missing on both
    # sources for a whole interval), a lateness (15 min) before the watermark flags it
    assert after[5][1] == 32 * PM and before[5][1] - after[5][1] == LATENESS
    assert after[5][2] == 2 * PM  # no report for 10 min on the reports' clock (not the watermark's)
    assert after[13] == before[13]  # its latency kept coming: judged on the watermark, as before


def test_other_reports_are_tracked_grown_checked_and_checkpointed():
    m = SilenceMonitor(3, min_reports=2)
    m.observe_other([PM, 0, 2 * PM], [1, 1, 1])  # any arrival order
    assert m.other_ts.tolist() == [-1, 2 * PM, -1] and m.n_other.tolist() == [0, 3, 0]
    assert m.other_gap_ms[1] == PM
    with pytest.raises(ValueError, match="differ in length"):
        m.observe_other([0, 1], [0])
    with pytest.raises(ValueError, match="call grow"):
        m.observe_other([0], [3])
    m.grow(5)
    assert len(m.other_ts) == len(m.other_gap_ms) == len(m.n_other) == len(m.last_early) == 5
    back = SilenceMonitor.from_state(m.to_state())
    for f in ("other_ts", "other_gap_ms", "n_other"):
        np.testing.assert_array_equal(getattr(back, f), getattr(m, f))
    assert (
        back.confirm_other
        and not SilenceMonitor.from_state(SilenceMonitor(2, confirm_other=False).to_state()).confirm_other
    )
    old = m.to_state()
    for f in ("confirm_other", "other_ts", "other_gap_ms", "n_other"):
        del old[f]  # a checkpoint written before the other reports were tracked
    back = SilenceMonitor.from_state(old)
    assert back.confirm_other and back.n_other.tolist() == [0] * 5 and back.other_ts.tolist() == [-1] * 5
    assert not SilenceMonitor(2).early().any()  # nothing tracked
    assert SilenceMonitor(2).clock(7) == 7
