"""QuantileSketch: quantiles within the relative-error guarantee of numpy.quantile, merge, windows."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernels import sketch as ks
from telcoanalytics.windows.decay import Decay
from telcoanalytics.windows.sketch import QuantileSketch
from telcoanalytics.windows.sliding import SlidingWindows
from tests.reference.windows import ref_lower_quantile

QS = np.array([0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0])
T0 = 1_700_000_000_000


def within_guarantee(est, exact, alpha, min_value=0.0):
    # the guarantee: |est - x| <= alpha * x for the order statistic x (tiny slack for log
    # rounding); below min_value the value is represented by 0 (absolute error < min_value)
    ok = np.abs(est - exact) <= alpha * np.abs(exact) * (1 + 1e-9) + 1e-12
    low = exact < min_value
    ok[low] = (est[low] == 0.0) & (exact[low] < min_value)
    return bool(np.all(ok))


@pytest.mark.parametrize("alpha", [0.01, 0.05])
def test_quantiles_within_guarantee(rng, alpha):
    n = 20_000
    x = np.concatenate([rng.lognormal(3.0, 1.5, n // 2), rng.exponential(0.5, n // 2)])
    sl = rng.integers(0, 4, n)
    sk = QuantileSketch(4, alpha=alpha, min_value=1e-3, max_value=1e6)
    sk.update(np.zeros(n, dtype=np.int64), sl, x)
    got = sk.quantiles(QS)
    for s in range(4):
        exact = ref_lower_quantile(x[sl == s], QS)
        assert within_guarantee(got[s], exact, alpha, 1e-3), (s, got[s], exact)


def test_windowed_quantiles_span_and_decay(rng):
    n = 6000
    ts = np.sort(rng.integers(0, 10 * 60_000, n)) + T0
    x = rng.gamma(2.0, 20.0, n) + 0.5
    sl = np.zeros(n, dtype=np.int64)
    sk = QuantileSketch(1, alpha=0.01, min_value=0.1, max_value=1e4, width_ms=60_000, n_buckets=5)
    st_ = sk.update(ts, sl, x)
    assert np.all(st_ == 0)
    tq = int(ts.max())
    bq = tq // 60_000
    for n_span in (1, 3, 5):
        got, cnt = sk.quantiles(QS, t_query_ms=tq, span_ms=n_span * 60_000, return_count=True)
        m = ts // 60_000 > bq - n_span
        assert cnt[0] == m.sum()
        assert within_guarantee(got[0], ref_lower_quantile(x[m], QS), 0.01)
    # default query time: the newest bucket
    np.testing.assert_array_equal(sk.quantiles(QS), sk.quantiles(QS, t_query_ms=tq))
    # decay as a step equals a shorter span
    np.testing.assert_array_equal(
        sk.quantiles(QS, t_query_ms=tq, decay=Decay.step(120.0)), sk.quantiles(QS, t_query_ms=tq, span_ms=120_000)
    )
    # weights 10:1 between the newest and the older buckets: a weighted lower quantile
    wv = np.r_[10.0, np.ones(4)]
    got = sk.quantiles([0.5], t_query_ms=tq, decay=wv)[0, 0]
    age = bq - ts // 60_000
    vis = age < 5
    w = wv[age[vis]]
    order = np.argsort(x[vis])
    cum = np.cumsum(w[order])
    exact = x[vis][order][np.searchsorted(cum, 0.5 * (cum[-1] - 1), side="right")]
    assert abs(got - exact) <= 0.01 * exact * (1 + 1e-9)


def test_zeros_negatives_overflow_and_empty():
    sk = QuantileSketch(2, alpha=0.02, min_value=1.0, max_value=100.0)
    x = np.array([0.0, 0.5, -3.0, np.nan, 50.0, 1e6, 1.0])
    st_ = sk.update(np.zeros(7, dtype=np.int64), np.zeros(7, dtype=np.int64), x)
    np.testing.assert_array_equal(st_, [0, 0, 3, 3, 0, 0, 0])
    assert sk.n_invalid == 2 and sk.n_counted == 5 and sk.n_overflow == 1
    q = sk.quantiles([0.0, 0.5, 1.0])
    assert q[0, 0] == 0.0 and q[0, 2] == 100.0  # zero bin -> 0, overflow -> max_value
    assert abs(q[0, 1] - 1.0) <= 0.02 * (1 + 1e-9)  # median = 1.0 (lower rule)
    assert np.all(np.isnan(q[1]))  # empty slot
    act = np.array([True, False])
    st2 = sk.update(np.zeros(2, dtype=np.int64), np.array([1, 1]), np.array([5.0, 6.0]), active=act)
    np.testing.assert_array_equal(st2, [0, 5])
    # a total weight below 1 (one event at weight 0.5): every quantile is that event
    w1 = QuantileSketch(1, width_ms=1000, n_buckets=2)
    w1.update(np.array([0]), np.array([0]), np.array([7.0]))
    q1 = w1.quantiles([0.0, 1.0], t_query_ms=1000, decay=[1.0, 0.5])
    assert np.all(np.abs(q1 - 7.0) <= 0.07)


def test_expired_events_counted():
    sk = QuantileSketch(1, width_ms=1_000, n_buckets=3)
    st_ = sk.update(np.array([10_000, 5_000, 8_000]), np.zeros(3, dtype=np.int64), np.ones(3))
    np.testing.assert_array_equal(st_, [0, 4, 0])
    assert sk.n_expired == 1


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 300), cut=st.floats(0, 1))
def test_merge_equals_one_pass(seed, n, cut):
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, 5_000, n)).astype(np.int64)
    sl = rng.integers(0, 3, n)
    x = rng.lognormal(0, 2, n)
    part = rng.random(n) < cut
    mk = dict(alpha=0.01, min_value=1e-3, max_value=1e3, width_ms=1_000, n_buckets=3)
    one, a, b = QuantileSketch(3, **mk), QuantileSketch(3, **mk), QuantileSketch(3, **mk)
    one.update(ts, sl, x)
    a.update(ts[part], sl[part], x[part])
    b.update(ts[~part], sl[~part], x[~part])
    a.merge(b)
    tq = int(ts.max()) if n else 0
    qa, ca = a.quantiles(QS, t_query_ms=tq, return_count=True)
    qo, co = one.quantiles(QS, t_query_ms=tq, return_count=True)
    np.testing.assert_array_equal(ca, co)  # counts exact
    np.testing.assert_array_equal(qa, qo)  # same bins -> identical answers


def test_rollup_state_and_errors(rng):
    n = 2000
    sl = rng.integers(0, 4, n)
    x = rng.lognormal(1, 1, n)
    ts = np.zeros(n, dtype=np.int64)
    sk = QuantileSketch(4, alpha=0.01, min_value=1e-2, max_value=1e4)
    sk.update(ts, sl, x)
    up = sk.rollup(np.array([0, 1, 0, 1]), 2)
    one = QuantileSketch(2, alpha=0.01, min_value=1e-2, max_value=1e4)
    one.update(ts, sl % 2, x)
    np.testing.assert_array_equal(up.quantiles(QS), one.quantiles(QS))
    d = sk.to_state()
    for v in d.values():
        assert isinstance(v, (np.ndarray, int, float, str))
    np.testing.assert_array_equal(QuantileSketch.from_state(d).quantiles(QS, slots=[2]), sk.quantiles(QS, slots=[2]))
    w = QuantileSketch(2, width_ms=1000, n_buckets=4)
    assert QuantileSketch.from_state(w.to_state()).width_ms == 1000
    assert w.nbytes == 2 * 4 * (4 * w.n_bins + 8)
    assert w.quantiles([0.5]).shape == (2, 1)
    with pytest.raises(ValueError, match="not a QuantileSketch"):
        QuantileSketch.from_state({})
    d["counts"] = d["counts"][:1]
    with pytest.raises(ValueError, match="counts has shape"):
        QuantileSketch.from_state(d)
    for kwargs, msg in [
        (dict(n_slots=0), "n_slots"),
        (dict(n_slots=1, alpha=1.5), "alpha"),
        (dict(n_slots=1, min_value=5.0, max_value=1.0), "min_value < max_value"),
        (dict(n_slots=1, n_buckets=3), "needs a bucket width"),
        (dict(n_slots=1, width_ms=0), "width_ms must be positive"),
        (dict(n_slots=1, width_ms=10, n_buckets=0), "n_buckets must be >= 1"),
    ]:
        with pytest.raises(ValueError, match=msg):
            QuantileSketch(**kwargs)
    with pytest.raises(ValueError, match="active must be a boolean array"):
        sk.update(ts[:2], sl[:2], x[:2], active=[True])
    with pytest.raises(ValueError, match=r"quantiles must lie in \[0, 1\]"):
        sk.quantiles([1.5])
    with pytest.raises(ValueError, match="takes no span"):
        sk.quantiles([0.5], span_ms=1000)
    with pytest.raises(ValueError, match="multiple of width_ms"):
        w.quantiles([0.5], span_ms=1500)
    with pytest.raises(TypeError, match="only merge QuantileSketch"):
        sk.merge(None)
    with pytest.raises(ValueError, match="same parameters"):
        sk.merge(QuantileSketch(4, alpha=0.02))
    with pytest.raises(ValueError, match="use rollup"):
        sk.merge(QuantileSketch(2, alpha=0.01, min_value=1e-2, max_value=1e4))


def test_sketch_follows_window_side_output(rng):
    # the windows' accepted mask keeps late events out of the sketch too
    win = SlidingWindows(1, ((60_000, 5),), allowed_lateness_ms=0)
    sk = QuantileSketch(1, width_ms=60_000, n_buckets=5)
    ts = np.array([T0 + 100_000, T0 + 10_000, T0 + 110_000])
    x = np.array([1.0, 100.0, 3.0])
    st_ = win.update(ts, np.zeros(3, dtype=np.int64), x)
    sk.update(ts, np.zeros(3, dtype=np.int64), x, active=st_.status == 0)
    assert sk.n_counted == 2 and sk.quantiles([1.0])[0, 0] < 3.1


def test_bin_edges():
    g = 1.01 / 0.99
    inv = 1 / np.log(g)
    assert ks.sketch_bin(0.5, 1.0, inv, 10) == 0
    assert ks.sketch_bin(1.0, 1.0, inv, 10) == 1
    assert ks.sketch_bin(g**3 * 0.999, 1.0, inv, 10) == 3
    assert ks.sketch_bin(1e9, 1.0, inv, 10) == 11
