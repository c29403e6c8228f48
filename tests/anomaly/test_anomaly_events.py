"""Event preparation kernels of the network detector (``kernels.anomaly_events``) against NumPy
references, and the replay component's compiled path against the events built with NumPy."""

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernels import anomaly_events as K
from telcoanalytics.anomaly.detector import AnomalyDetector, DetectorConfig
from telcoanalytics.pipeline.components import AnomalyComponent
from telcoanalytics.pipeline.contract import RoutedBatch
from telcoanalytics.records import DTYPES
from telcoanalytics.synth.network import generate

times = st.lists(st.integers(0, 5), min_size=1, max_size=40).map(lambda v: np.array(v, dtype=np.int64) * 60_000)


@given(ts=times, seed=st.integers(0, 2**32 - 1))
def test_pair_events_is_the_stable_sort_of_both_halves(ts, seed):
    rng = np.random.default_rng(seed)
    n = len(ts)
    elem, a, b = rng.integers(0, 9, n), rng.normal(size=n), rng.normal(size=n)
    cat_ts = np.concatenate([ts, ts])
    o2 = np.argsort(cat_ts, kind="stable")
    want = (
        cat_ts[o2],
        np.concatenate([elem, elem])[o2],
        np.repeat(np.array([6, 7]), n)[o2],
        np.concatenate([a, b])[o2],
    )
    out = np.empty(2 * n, np.int64), np.empty(2 * n, np.int64), np.empty(2 * n, np.int64), np.empty(2 * n)
    K.pair_events(np.argsort(ts, kind="stable"), ts, elem, a, b, 6, 7, *out)
    for got, exp in zip(out, want):
        np.testing.assert_array_equal(got, exp)


@given(ts=times)
def test_gather_and_is_sorted(ts):
    n = len(ts)
    o = np.argsort(ts, kind="stable")
    m32 = (ts // 60_000).astype(np.int32)
    out = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n)
    K.gather_events(o, ts, ts + 1, m32, ts * 0.5, *out)
    for got, exp in zip(out, (ts[o], ts[o] + 1, m32[o].astype(np.int64), ts[o] * 0.5)):
        np.testing.assert_array_equal(got, exp)
    assert K.is_sorted(ts) == bool(np.all(np.diff(ts) >= 0))
    assert K.is_sorted(ts[o])


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 30))
def test_prepare_events_matches_numpy(seed, n):
    rng = np.random.default_rng(seed)
    n_el, nm = 4, 3
    elem, metric = rng.integers(0, n_el, n), rng.integers(0, nm, n)
    value = rng.choice(np.array([-2.0, -0.0, 0.0, 0.5, 7.0, np.nan, np.inf, -np.inf]), n)
    log_offset = np.array([np.nan, 1.0, 0.25])
    alive = np.array([True, False, True])
    slot, scored, pos, arg = np.empty(n, np.int64), np.empty(n), np.empty(n, np.int64), np.empty(n)
    bad_e, bad_m, n_log, n_alive = K.prepare_events(
        elem, metric, value, n_el, nm, log_offset, alive, slot, scored, pos, arg
    )
    scored[pos[:n_log]] = np.log(arg[:n_log])
    off = log_offset[metric]
    want = value.copy()
    lm = ~np.isnan(off)
    with np.errstate(invalid="ignore"):
        want[lm] = np.log(np.maximum(value[lm], 0.0) + off[lm])
    assert (bad_e, bad_m, n_alive) == (-1, -1, int(alive[metric].sum()))
    np.testing.assert_array_equal(slot, elem * nm + metric)
    np.testing.assert_array_equal(scored, want)
    np.testing.assert_array_equal(pos[:n_log], np.flatnonzero(lm))


def test_prepare_events_reports_the_first_bad_index():
    args = (np.array([0.0, 1.0, 2.0]), 2, 2, np.full(2, np.nan), np.ones(2, bool))
    bufs = np.empty(3, np.int64), np.empty(3), np.empty(3, np.int64), np.empty(3)
    assert K.prepare_events(np.array([0, 2, 0]), np.array([0, 0, 5]), *args, *bufs)[:2] == (1, -1)
    assert K.prepare_events(np.array([0, 1, -1]), np.array([0, -1, 0]), *args, *bufs)[:2] == (-1, 1)


def _reference_events(comp, batch):
    """The events as the component built them with NumPy: concatenated, stable-sorted by time."""
    ts, e, m, v = comp._events(batch.source, batch.rows, batch.element_index)
    o = np.argsort(ts, kind="stable")
    return ts[o], e[o], m[o], v[o]


@pytest.fixture(scope="module")
def small_day():
    return generate(n_elements=60, n_regions=2, days=0.15, seed=3)


def test_component_update_scores_the_numpy_events(small_day):
    """The compiled event building gives the detector the events, in the order, that NumPy gives
    (late rows within batches included); findings and detector state are identical."""
    topo = small_day.topology
    fast, ref = AnomalyComponent(topo), AnomalyComponent(topo)
    ref.net.detector.warn_late = False
    n_late = 0
    for source, rows, _arr, _orig in small_day.raw_batches(batch_ms=600_000, with_arrival=True):
        if source not in ("equip", "qos"):
            continue
        keep = np.isin(rows["element_id"], topo.ids[topo.element_level])
        if source == "equip":  # the corrupted rows ingest would quarantine
            keep &= (rows["metric_id"] >= 0) & (rows["metric_id"] < 6)
        rows = rows[keep]
        idx = topo.index_of(rows["element_id"])
        batch = RoutedBatch(source, rows, idx, np.zeros(len(rows), np.int64))
        n_late += int(np.any(np.diff(rows["ts_ms"]) < 0))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the component does not warn about late rows
            fast.update(batch)
        found = ref.net.update(*_reference_events(ref, batch))
        if len(found):
            ref._pending.append(found)
    assert n_late > 0
    got = np.concatenate(fast._pending)
    want = np.concatenate(ref._pending)
    assert len(want) > 0 and got.tobytes() == want.tobytes()
    for a, b in zip(fast.net.detector.state, ref.net.detector.state):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fast.net.silence.gap_ms, ref.net.silence.gap_ms)
    empty = RoutedBatch("qos", np.zeros(0, DTYPES["qos"]), np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert fast.update(empty) == [] and len(fast._pending) == len(ref._pending)


def test_late_warning_names_the_caller_and_can_be_turned_off():
    det = AnomalyDetector(1, DetectorConfig.for_interval(60))
    args = (np.array([0, 60_000, 30_000], np.int64), np.zeros(3, np.int64), [1.0, 2.0, 3.0])
    with pytest.warns(UserWarning, match="1 event") as rec:
        det.update(*args)
    assert rec[0].filename == __file__
    det.warn_late = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        det.update(*args)
    assert det.n_backwards == 3  # again: 0 and 30 s are older than the 60 s seen


def test_only_the_silence_metrics_count_as_reports():
    """A batch mixing watched and unwatched metrics: the silence monitor sees the watched ones only."""
    from telcoanalytics.anomaly.detector import NetworkAnomalyDetector, SilenceMonitor
    from telcoanalytics.topology.model import Topology

    topo = Topology.from_columns([1, 2], {"region": [7, 7]})
    net = NetworkAnomalyDetector(topo, ("cpu_util_pct", "latency_ms"), silence_metrics=["cpu_util_pct"])
    ref = SilenceMonitor(2)
    t = np.array([0, 0, 60_000, 120_000, 300_000], np.int64)
    e = np.array([0, 1, 1, 0, 1])
    m = np.array([0, 1, 0, 1, 0])
    net.update(t, e, m, np.ones(5))
    ref.observe(t[m == 0], e[m == 0])
    for f in ("last_ts", "gap_ms", "n_reports"):
        np.testing.assert_array_equal(getattr(net.silence, f), getattr(ref, f))
    assert net.silence.last_ts.tolist() == [0, 300_000]


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 20), now=st.integers(0, 2_000_000))
def test_check_due_matches_numpy(seed, n, now):
    """The compiled silence check against the formula in NumPy, on random monitor states."""
    from kernels.silence import check_due

    rng = np.random.default_rng(seed)
    last = rng.choice(np.array([-1, 0, 300_000, 900_000, 1_200_000]), n).astype(np.int64)
    gap = rng.choice(np.array([0.0, 59_999.5, 300_000.0, 412_345.25]), n)
    n_rep = rng.integers(0, 5, n).astype(np.int64)
    since = rng.choice(np.array([-1, -1, 0, 600_000]), n).astype(np.int64)
    back_from = rng.choice(np.array([-1, 5, 700_000]), n).astype(np.int64)
    back_ts, flag_gap = rng.integers(-1, 9, n).astype(np.int64), rng.random(n)
    due = last + np.ceil(1.5 * gap).astype(np.int64) + 60_000
    silent = (n_rep >= 3) & (due >= 0) & (now > due)
    new_w, res_w = np.flatnonzero(silent & (since < 0)), np.flatnonzero(~silent & (since >= 0))
    want = [a.copy() for a in (since, back_from, back_ts, flag_gap)]
    want[0][new_w], want[1][new_w], want[2][new_w], want[3][new_w] = last[new_w], last[new_w], -1, gap[new_w]
    want[0][res_w] = -1
    newly, resumed = np.empty(n, np.int64), np.empty(n, np.int64)
    k_new, k_res, watching = check_due(
        now, 1.5, 60_000, 3, last, gap, n_rep, since, back_from, back_ts, flag_gap, newly, resumed
    )
    assert newly[:k_new].tolist() == new_w.tolist() and resumed[:k_res].tolist() == res_w.tolist()
    for got, exp in zip((since, back_from, back_ts, flag_gap), want):
        np.testing.assert_array_equal(got, exp)
    assert watching == bool((want[1] >= 0).any())
