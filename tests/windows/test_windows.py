"""SlidingWindows against references recomputed from raw events, plus invariants."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernels import windows as kw
from telcoanalytics.topology.model import Topology
from telcoanalytics.windows.decay import Decay
from telcoanalytics.windows.sliding import STAT_FIELDS, SlidingWindows, busiest_summary, topology_groups
from tests.reference.windows import ref_status, ref_window_stats

T0 = 1_700_000_000_000  # a realistic epoch in ms
RES = ((1_000, 30), (60_000, 20), (3_600_000, 6))
DECAYS = [
    None,
    Decay.none(),
    Decay.exponential(90.0),
    Decay.linear(600.0),
    Decay.power(1.5, 60.0),
    Decay.gaussian(300.0),
    Decay.step(240.0),
    (lambda age: 1.0 / (1.0 + age)),
    np.linspace(1.0, 0.1, 20),
]


def make_events(rng, n, n_slots, span_ms, jitter_ms=0, t0=T0, loc=50.0, scale=10.0):
    ts = np.sort(rng.integers(0, span_ms, n)) + t0
    if jitter_ms:
        ts = ts + rng.integers(-jitter_ms, 1, n)
    sl = rng.integers(0, n_slots, n)
    x = rng.normal(loc, scale, n)
    return ts.astype(np.int64), sl.astype(np.int64), x


def assert_stats(got, ref, rtol, msg=""):
    for f in STAT_FIELDS:
        np.testing.assert_allclose(got[f], ref[f], rtol=rtol, atol=0, equal_nan=True, err_msg=f"{f} {msg}")


@pytest.mark.parametrize("decay", DECAYS, ids=lambda d: type(d).__name__ if not isinstance(d, Decay) else d.kind)
def test_query_matches_reference_every_decay(rng, decay):
    ts, sl, x = make_events(rng, 3000, 7, 20 * 60_000, jitter_ms=5_000)
    w = SlidingWindows(7, RES, allowed_lateness_ms=10_000)
    st_ = w.update(ts, sl, x)
    ok = st_.status == 0
    np.testing.assert_array_equal(st_.status, ref_status(ts, None, 10_000))
    tq = int(ts.max()) + 1234
    from telcoanalytics.windows.decay import as_decay

    weights = as_decay(decay).weights(20, 60.0)
    got = w.query(tq, 20 * 60_000, decay=decay)
    ref = ref_window_stats(ts[ok], sl[ok], x[ok], 7, 60_000, 20, tq, weights, max_ts=w.max_ts_ms)
    # sums/means: Chan's one-pass combination vs fsum two-pass, values O(50): 1e-9 relative
    assert_stats(got, ref, rtol=1e-9)


def test_every_resolution_and_span(rng):
    ts, sl, x = make_events(rng, 2000, 5, 2 * 3_600_000)
    w = SlidingWindows(5, RES)
    w.update(ts, sl, x)
    tq = int(ts.max())
    for r, (width, nb) in enumerate(RES):
        for n_span in (1, nb // 2, nb):
            got = w.query(tq, n_span * width, resolution=r)
            ref = ref_window_stats(ts, sl, x, 5, width, nb, tq, np.ones(n_span), max_ts=tq)
            assert_stats(got, ref, rtol=1e-9, msg=f"res {r} span {n_span}")  # same bound as above


def test_variance_stable_near_1e9(rng):
    n = 5000
    ts, sl, x = make_events(rng, n, 3, 3_600_000, loc=1e9, scale=1.0)
    w = SlidingWindows(3, ((600_000, 6),))
    w.update(ts, sl, x)
    got = w.query(int(ts.max()), 3_600_000, decay=Decay.exponential(1800.0))
    ref = ref_window_stats(ts, sl, x, 3, 600_000, 6, int(ts.max()), Decay.exponential(1800.0).weights(6, 600.0))
    # values carry ulp(1e9) ~ 1.2e-7 of absolute noise against a spread of 1: relative error on
    # the variance is bounded by ~1e-7; naive sum-of-squares would lose every digit (see below)
    np.testing.assert_allclose(got["var"], ref["var"], rtol=1e-6)
    np.testing.assert_allclose(got["mean"], ref["mean"], rtol=1e-12)
    m = sl == 0
    naive = np.mean(x[m] ** 2) - np.mean(x[m]) ** 2
    assert abs(naive - np.var(x[m])) > 1e-3  # the textbook formula fails here


def test_late_events_side_output_and_right_bucket(rng):
    ts = np.array([T0 + 100_000, T0 + 50_000, T0 + 20_000, T0 + 170_000, T0 + 99_000], dtype=np.int64)
    sl = np.zeros(5, dtype=np.int64)
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    w = SlidingWindows(1, ((60_000, 10),), allowed_lateness_ms=60_000)
    st_ = w.update(ts, sl, x)
    # 50_000 is inside the lateness (>= 100_000 - 60_000); 20_000 is not; after 170_000 the
    # watermark is 110_000 so 99_000 is late too
    np.testing.assert_array_equal(st_.status, [0, 0, 1, 0, 1])
    np.testing.assert_array_equal(st_.late_idx, [2, 4])
    assert (w.n_late, w.n_accepted) == (2, 3)
    assert w.watermark_ms == T0 + 110_000
    q = w.query(T0 + 179_999, 180_000, decay=np.array([1.0, 10.0, 100.0]))
    # buckets: T0+170k -> age 0, T0+100k -> age 1, T0+50k -> age 2 (bucket starts are aligned to
    # wall-clock minutes: T0 is a multiple of 60 s)
    assert T0 % 60_000 == 20_000
    b = (np.array([170_000, 100_000, 50_000]) + T0) // 60_000
    assert list((T0 + 179_999) // 60_000 - b) == [0, 1, 2]
    assert q["count"][0] == 1 + 10 + 100
    assert q["sum"][0] == pytest.approx(4 * 1 + 1 * 10 + 2 * 100, rel=1e-12)


def test_expired_per_resolution_when_lateness_exceeds_fine_span():
    w = SlidingWindows(1, ((1_000, 5), (60_000, 10)), allowed_lateness_ms=60_000)
    st_ = w.update(
        np.array([T0 + 30_000, T0 + 10_000], dtype=np.int64), np.zeros(2, dtype=np.int64), np.array([1.0, 2.0])
    )
    np.testing.assert_array_equal(st_.status, [0, 0])
    np.testing.assert_array_equal(w.n_expired, [1, 0])  # too old for the 5 s ring only
    assert w.query(T0 + 30_000, 600_000)["count"][0] == 2
    assert w.query(T0 + 30_000, 5_000)["count"][0] == 1


def test_dedup_by_record_id(rng):
    n = 400
    ts, sl, x = make_events(rng, n, 4, 600_000)
    rid = np.arange(n, dtype=np.int64) + 10**12
    dup = rng.choice(n, 100, replace=False)
    ts2 = np.concatenate([ts, ts[dup]])
    sl2 = np.concatenate([sl, sl[dup]])
    x2 = np.concatenate([x, x[dup]])
    rid2 = np.concatenate([rid, rid[dup]])
    perm = rng.permutation(len(ts2))
    ts2, sl2, x2, rid2 = ts2[perm], sl2[perm], x2[perm], rid2[perm]
    w = SlidingWindows(4, ((60_000, 10),), allowed_lateness_ms=600_000, dedup=True)
    # several small batches so the id table is rebuilt and grown on the way
    status = np.concatenate(
        [
            w.update(ts2[i : i + 97], sl2[i : i + 97], x2[i : i + 97], record_id=rid2[i : i + 97]).status
            for i in range(0, len(ts2), 97)
        ]
    )
    np.testing.assert_array_equal(status, ref_status(ts2, rid2, 600_000))
    assert w.n_duplicate == 100 and w.n_accepted == n
    one = SlidingWindows(4, ((60_000, 10),))
    one.update(ts, sl, x)
    tq = int(ts.max())
    assert_stats(w.query(tq, 600_000), one.query(tq, 600_000), rtol=1e-12)  # same events, other order


def test_dedup_table_forgets_ids_behind_watermark():
    w = SlidingWindows(1, ((60_000, 10),), allowed_lateness_ms=1_000, dedup=True)
    n = 3000
    for i in range(4):
        t = T0 + np.arange(n, dtype=np.int64) * 10 + i * 100_000
        w.update(t, np.zeros(n, dtype=np.int64), np.ones(n), record_id=np.arange(n) + i * n)
    # only ids inside the lateness need to be kept: the table does not grow with the stream
    assert len(w.dedup_keys) <= 4 * 2 * n
    assert w.n_accepted == 4 * n
    # a repeat of the newest ids within the lateness is still caught
    st_ = w.update(
        np.array([T0 + 3 * 100_000 + (n - 1) * 10]),
        np.zeros(1, dtype=np.int64),
        np.ones(1),
        record_id=np.array([4 * n - 1]),
    )
    np.testing.assert_array_equal(st_.duplicate_idx, [0])


def test_invalid_values_reported():
    w = SlidingWindows(2, ((60_000, 3),), half_lives_s=(60.0,))
    st_ = w.update(np.array([T0, T0, T0]), np.array([0, 1, 1]), np.array([np.nan, np.inf, 2.0]))
    np.testing.assert_array_equal(st_.invalid_idx, [0, 1])
    np.testing.assert_array_equal(st_.accepted_idx, [2])
    assert w.n_invalid == 2 and w.n_accepted == 1
    assert w.ew_values(T0)["weight"][1, 0] == 1.0


def test_gap_of_days_costs_nothing_and_old_buckets_vanish():
    w = SlidingWindows(2, ((1_000, 60), (86_400_000, 7)), half_lives_s=(60.0, np.inf))
    w.update(np.array([T0, T0 + 500]), np.array([0, 1]), np.array([1.0, 2.0]))
    jump = T0 + 10**5 * 86_400_000  # 100,000 days later: a loop over the gap would hang
    w.update(np.array([jump]), np.array([0]), np.array([7.0]))
    q = w.query(jump, 60_000)
    assert q["count"].tolist() == [1.0, 0.0] and q["mean"][0] == 7.0 and np.isnan(q["mean"][1])
    qd = w.query(jump, 7 * 86_400_000)
    assert qd["count"].tolist() == [1.0, 0.0]
    ew = w.ew_values(jump)
    assert ew["mean"][0, 0] == 7.0 and ew["weight"][0, 0] == 1.0  # 60 s half-life forgot
    assert ew["weight"][0, 1] == 2.0 and ew["mean"][0, 1] == 4.0  # infinite: plain mean


def test_empty_windows_documented_values():
    w = SlidingWindows(3, ((60_000, 5),))
    q = w.query(T0, 300_000)
    assert q["count"].tolist() == [0.0] * 3 and q["sum"].tolist() == [0.0] * 3
    assert q["rate_per_s"].tolist() == [0.0] * 3 and q["sum_per_s"].tolist() == [0.0] * 3
    for f in ("mean", "var", "std", "min", "max"):
        assert np.all(np.isnan(q[f]))
    assert w.max_ts_ms is None and w.watermark_ms is None
    assert busiest_summary(w) == []
    # zero weights everywhere: empty as well
    w.update(np.array([T0]), np.array([0]), np.array([1.0]))
    assert w.query(T0, 300_000, decay=np.zeros(5))["count"][0] == 0.0


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 150))
def test_order_independence_within_lateness(seed, n):
    rng = np.random.default_rng(seed)
    lateness = 120_000
    ts, sl, x = make_events(rng, n, 3, lateness + 1)  # all within the lateness
    a = SlidingWindows(3, RES[:2], allowed_lateness_ms=lateness, half_lives_s=(30.0, np.inf))
    b = SlidingWindows(3, RES[:2], allowed_lateness_ms=lateness, half_lives_s=(30.0, np.inf))
    a.update(ts, sl, x)
    p = rng.permutation(n)
    sb = b.update(ts[p], sl[p], x[p])
    assert b.n_accepted == n and np.all(sb.status == 0)
    tq = int(ts.max())
    for span, r in ((20_000, 0), (600_000, 1)):
        qa, qb = a.query(tq, span, resolution=r), b.query(tq, span, resolution=r)
        for f in ("count", "min", "max"):
            np.testing.assert_array_equal(qa[f], qb[f])  # exact: counts and extremes
        for f in ("sum", "mean", "var"):
            # floating sums in another order: 1e-12 relative, plus an absolute floor for var ~ 0
            np.testing.assert_allclose(qa[f], qb[f], rtol=1e-12, atol=1e-9, equal_nan=True)
    ea, eb = a.ew_values(tq), b.ew_values(tq)
    for f in ("weight", "mean", "var"):
        np.testing.assert_allclose(ea[f], eb[f], rtol=1e-11, atol=1e-9, equal_nan=True)


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 200), cut=st.floats(0, 1))
def test_merge_of_any_split_equals_one_pass(seed, n, cut):
    rng = np.random.default_rng(seed)
    ts, sl, x = make_events(rng, n, 4, 3_600_000)
    part = rng.random(n) < cut
    kw_ = dict(resolutions=RES, allowed_lateness_ms=0, half_lives_s=(60.0, 3600.0))
    one, a, b = SlidingWindows(4, **kw_), SlidingWindows(4, **kw_), SlidingWindows(4, **kw_)
    one.update(ts, sl, x)
    a.update(ts[part], sl[part], x[part])
    b.update(ts[~part], sl[~part], x[~part])
    a.merge(b)
    assert a.n_accepted == one.n_accepted == n and a.max_ts_ms == one.max_ts_ms
    tq = int(ts.max()) if n else T0
    for r, (width, nb) in enumerate(RES):
        qa, qo = a.query(tq, width * nb, resolution=r), one.query(tq, width * nb, resolution=r)
        for f in ("count", "min", "max"):
            np.testing.assert_array_equal(qa[f], qo[f])  # exact
        for f in ("sum", "mean", "var", "rate_per_s"):
            np.testing.assert_allclose(qa[f], qo[f], rtol=1e-12, atol=1e-9, equal_nan=True)  # sums to 1e-12
    np.testing.assert_allclose(a.ew_values(tq)["mean"], one.ew_values(tq)["mean"], rtol=1e-12, equal_nan=True)


def test_merge_newer_bucket_wins_and_dedup_tables_unite():
    a = SlidingWindows(1, ((60_000, 2),), allowed_lateness_ms=10**9, dedup=True)
    b = SlidingWindows(1, ((60_000, 2),), allowed_lateness_ms=10**9, dedup=True)
    a.update(np.array([0, 120_000]), np.array([0, 0]), np.array([1.0, 5.0]), record_id=np.array([1, 2]))
    b.update(np.array([5_000]), np.array([0]), np.array([3.0]), record_id=np.array([3]))
    b.update(np.array([125_000]), np.array([0]), np.array([4.0]), record_id=np.array([2]))  # id 2 again
    # a: bucket 2 (5.0) sits where bucket 0 was; b: bucket 0 (3.0) and then bucket 2 (4.0)
    a.merge(b)
    q = a.query(179_999, 120_000)
    assert q["count"][0] == 2 and q["mean"][0] == 4.5
    st_ = a.update(np.array([130_000, 131_000]), np.array([0, 0]), np.array([1.0, 1.0]), record_id=np.array([3, 9]))
    np.testing.assert_array_equal(st_.status, [2, 0])  # id 3 came from b


def test_rollup_equals_one_pass_over_groups(rng):
    topo = Topology.from_columns(np.array([11, 12, 13, 14, 15]), {"site": np.array([1, 1, 2, 2, 2])})
    n_metrics = 2
    n_slots = topo.n_elements * n_metrics
    ts, sl, x = make_events(rng, 1500, n_slots, 3_600_000)
    w = SlidingWindows(n_slots, RES, half_lives_s=(300.0,))
    w.update(ts, sl, x)
    site = topo.element_to("site")
    g = site[np.arange(n_slots) // n_metrics] * n_metrics + np.arange(n_slots) % n_metrics
    n_groups = topo.n_nodes("site") * n_metrics
    g2, n2 = topology_groups(topo, "site", n_metrics)
    np.testing.assert_array_equal(g, g2)
    assert n2 == n_groups
    with pytest.raises(ValueError, match="n_metrics must be >= 1"):
        topology_groups(topo, "site", 0)
    up = w.rollup(g, n_groups)
    one = SlidingWindows(n_groups, RES, half_lives_s=(300.0,))
    one.update(ts, g[sl], x)
    tq = int(ts.max())
    assert_stats(up.query(tq, 3_600_000), one.query(tq, 3_600_000), rtol=1e-12)  # sums to 1e-12
    np.testing.assert_allclose(up.ew_values(tq)["var"], one.ew_values(tq)["var"], rtol=1e-10)
    assert up.n_accepted == w.n_accepted


def test_state_round_trip(rng):
    ts, sl, x = make_events(rng, 500, 3, 600_000)
    w = SlidingWindows(3, RES, allowed_lateness_ms=5_000, half_lives_s=(60.0,), dedup=True)
    w.update(ts[:300], sl[:300], x[:300], record_id=np.arange(300))
    d = w.to_state()
    for v in d.values():
        assert isinstance(v, (np.ndarray, int, float, str, bool))
    w2 = SlidingWindows.from_state(d)
    w.update(ts[300:], sl[300:], x[300:], record_id=np.arange(300, 500))
    w2.update(ts[300:], sl[300:], x[300:], record_id=np.arange(300, 500))
    tq = int(ts.max())
    assert_stats(w.query(tq, 600_000), w2.query(tq, 600_000), rtol=0)  # bit-identical
    np.testing.assert_array_equal(w.ew_values(tq)["mean"], w2.ew_values(tq)["mean"])
    with pytest.raises(ValueError, match="not a SlidingWindows state"):
        SlidingWindows.from_state({"kind": "x"})
    d["cells"] = d["cells"][:5]
    with pytest.raises(ValueError, match="cells has shape"):
        SlidingWindows.from_state(d)
    plain = SlidingWindows(2, RES)
    assert "ew_state" not in plain.to_state()
    assert SlidingWindows.from_state(plain.to_state()).ew is None


def test_nbytes_formula():
    w = SlidingWindows(100, RES, half_lives_s=(60.0, 3600.0, 86400.0))
    n_b = sum(nb for _, nb in RES)
    assert w.nbytes == 8 * 100 * (7 * n_b + 1 + 9) + 3 * 1024 * 3 * 8 + 16 * 1  # + EW decay-factor table
    assert SlidingWindows(10, RES, dedup=True).nbytes == 8 * 10 * 7 * n_b + 16 * 1024
    assert w.resolutions == list(RES) and len(w.half_lives_s) == 3


def test_busiest_summary(rng):
    topo = Topology.from_columns(np.array([101, 102, 103]), {"site": np.array([1, 1, 2])})
    n_metrics = 2
    sl = np.array([0, 0, 0, 3, 3, 5], dtype=np.int64)
    ts = T0 + np.arange(6, dtype=np.int64) * 1000
    w = SlidingWindows(6, ((60_000, 60),))
    w.update(ts, sl, np.arange(6.0))
    lines = busiest_summary(w, topo, k=5, n_metrics=n_metrics, metric_names=("cpu_util_pct", "temperature_c"))
    assert len(lines) == 3
    assert lines[0].startswith("element 101 cpu_util_pct: n=3 mean=1")
    assert lines[1].startswith("element 102 temperature_c: n=2")
    plain = busiest_summary(w, k=1, span_ms=60_000)
    assert plain == [plain[0]] and plain[0].startswith("slot 0: n=3")
    assert busiest_summary(w, k=2, n_metrics=2)[1].startswith("slot 3 metric 1")


def test_errors():
    with pytest.raises(ValueError, match="n_slots"):
        SlidingWindows(0)
    with pytest.raises(ValueError, match="pairs"):
        SlidingWindows(1, resolutions=(60_000, 5))
    with pytest.raises(ValueError, match="positive integers"):
        SlidingWindows(1, resolutions=((60_000.5, 5),))
    with pytest.raises(ValueError, match="allowed_lateness_ms"):
        SlidingWindows(1, allowed_lateness_ms=-1)
    w = SlidingWindows(2, ((60_000, 5),))
    with pytest.raises(ValueError, match=r"slot\[1\] = 2 is outside 0..1"):
        w.update(np.array([0, 0]), np.array([0, 2]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="same length"):
        w.update(np.array([0, 0]), np.array([0, 1]), np.array([1.0]))
    with pytest.raises(ValueError, match="integer milliseconds"):
        w.update(np.array([0.5]), np.array([0]), np.array([1.0]))
    with pytest.raises(ValueError, match="slot must hold integer"):
        w.update(np.array([0]), np.array([0.0]), np.array([1.0]))
    with pytest.raises(ValueError, match="1-D"):
        w.update(np.zeros((1, 1), dtype=np.int64), np.array([0]), np.array([1.0]))
    with pytest.raises(ValueError, match="dedup=False"):
        w.update(np.array([0]), np.array([0]), np.array([1.0]), record_id=np.array([1]))
    wd = SlidingWindows(2, ((60_000, 5),), dedup=True)
    with pytest.raises(ValueError, match="pass record_id"):
        wd.update(np.array([0]), np.array([0]), np.array([1.0]))
    with pytest.raises(ValueError, match="record_id must be an integer array"):
        wd.update(np.array([0]), np.array([0]), np.array([1.0]), record_id=np.array([1.0]))
    with pytest.raises(ValueError, match="span_ms must be positive"):
        w.query(0, 0)
    with pytest.raises(ValueError, match="no resolution covers"):
        w.query(0, 90_000)
    with pytest.raises(ValueError, match="out of range"):
        w.query(0, 60_000, resolution=3)
    with pytest.raises(ValueError, match="not a whole number"):
        w.query(0, 600_000, resolution=0)
    with pytest.raises(ValueError, match="slots must"):
        w.query(0, 60_000, slots=[5])
    with pytest.raises(ValueError, match="slots must be a 1-D integer"):
        w.query(0, 60_000, slots=[0.5])
    with pytest.raises(ValueError, match="no continuous EW"):
        w.ew_values(0)
    with pytest.raises(TypeError, match="only merge SlidingWindows"):
        w.merge(object())
    with pytest.raises(ValueError, match="cannot merge windows with resolutions"):
        w.merge(SlidingWindows(2, ((1_000, 5),)))
    with pytest.raises(ValueError, match="use rollup"):
        w.merge(SlidingWindows(3, ((60_000, 5),)))
    with pytest.raises(ValueError, match="group_of_slot must be an integer array"):
        w.rollup([0], 1)
    with pytest.raises(ValueError, match="group_of_slot must lie"):
        w.rollup([0, 3], 2)


def test_kernel_constants_consistent():
    assert kw.N_AGG == 7 and (kw.ACCEPTED, kw.LATE, kw.DUPLICATE, kw.INVALID) == (0, 1, 2, 3)


def test_dedup_insert_probes_past_collisions():
    from kernels.dedup import hashset_slot

    home = {}
    for k in range(200):
        home.setdefault(int(hashset_slot(k, 7)), []).append(k)
    a, b = next(v for v in home.values() if len(v) >= 2)[:2]
    keys = np.zeros(8, dtype=np.int64)
    tss = np.full(8, kw.NO_TIME, dtype=np.int64)
    clock = np.zeros(2, dtype=np.int64)
    st_ = np.empty(3, dtype=np.int8)
    n_new = kw.dedup_insert(np.array([a, b, b]), np.array([5, 6, 9]), keys, tss, clock, st_)
    assert n_new == 2 and st_.tolist() == [0, 0, 1] and clock[1] == 2
    assert sorted(tss[tss != kw.NO_TIME].tolist()) == [5, 9]  # the later time is kept
    w = SlidingWindows(1, ((60_000, 2),), allowed_lateness_ms=10**6, dedup=True)
    st2 = w.update(np.array([1, 2, 3]), np.zeros(3, dtype=np.int64), np.ones(3), record_id=np.array([a, b, b]))
    assert st2.status.tolist() == [0, 0, 2]


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 200), lateness_s=st.integers(0, 90))
def test_side_output_matches_reference_and_conserves_counts(seed, n, lateness_s):
    rng = np.random.default_rng(seed)
    ts = (T0 + rng.integers(0, 300_000, n)).astype(np.int64)  # arbitrary arrival order
    sl = rng.integers(0, 3, n).astype(np.int64)
    x = rng.normal(0.0, 1.0, n)
    x[rng.random(n) < 0.05] = np.nan
    lateness = lateness_s * 1000
    w = SlidingWindows(3, ((1_000, 400), (60_000, 6)), allowed_lateness_ms=lateness)
    half = n // 2  # two batches: state carries over
    status = np.concatenate(
        [w.update(ts[:half], sl[:half], x[:half]).status, w.update(ts[half:], sl[half:], x[half:]).status]
    )
    ref = ref_status(ts, None, lateness, x)
    np.testing.assert_array_equal(status, ref)
    assert (w.n_accepted, w.n_late, w.n_invalid) == tuple(int((ref == c).sum()) for c in (0, 1, 3))
    assert w.n_accepted + w.n_late + w.n_duplicate + w.n_invalid == n
    ok = ref == 0
    tq = int(ts[ok].max()) if ok.any() else T0
    for r, (width, nb) in enumerate(((1_000, 400), (60_000, 6))):
        got = w.query(tq, width * nb, resolution=r)
        exp = ref_window_stats(ts[ok], sl[ok], x[ok], 3, width, nb, tq, np.ones(nb), max_ts=w.max_ts_ms)
        # tiny samples of N(0, 1): relative 1e-9 plus an absolute floor for values near 0
        for f in STAT_FIELDS:
            np.testing.assert_allclose(got[f], exp[f], rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=f)


def test_rounding_negative_m2_gives_zero_variance():
    w = SlidingWindows(1, ((60_000, 2),), half_lives_s=(60.0,))
    w.update(np.array([T0]), np.array([0]), np.array([1e9]))
    w.cells[:, kw.M2] = np.where(np.isnan(w.cells[:, kw.BUCKET]), 0.0, -1e-9)  # as if rounded
    w.ew.state[0, 3] = -1e-9
    q = w.query(T0, 60_000)
    assert q["var"][0] == 0.0 and q["std"][0] == 0.0
    e = w.ew_values(T0)
    assert e["var"][0, 0] == 0.0 and e["std"][0, 0] == 0.0
