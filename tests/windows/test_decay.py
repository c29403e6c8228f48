"""Decay profiles and continuous EW statistics (EWStats) against closed-form references."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from telcoanalytics.windows.decay import EW_FIELDS, Decay, EWStats, as_decay
from tests.reference.windows import ref_ew

T0 = 1_700_000_000_000


def test_decay_profiles():
    age = np.arange(5) * 30.0
    np.testing.assert_array_equal(Decay.none().weights(5, 30.0), np.ones(5))
    np.testing.assert_allclose(Decay.exponential(60.0).weights(5, 30.0), 2.0 ** (-age / 60.0), rtol=1e-15)
    np.testing.assert_array_equal(Decay.exponential(np.inf).weights(3, 30.0), np.ones(3))
    np.testing.assert_allclose(Decay.linear(90.0).weights(5, 30.0), [1, 2 / 3, 1 / 3, 0, 0], rtol=1e-15)
    np.testing.assert_allclose(Decay.power(2.0, 30.0).weights(5, 30.0), (1 + age / 30.0) ** -2.0, rtol=1e-15)
    np.testing.assert_allclose(Decay.gaussian(60.0).weights(5, 30.0), np.exp(-(age**2) / 7200.0), rtol=1e-15)
    np.testing.assert_array_equal(Decay.step(60.0).weights(5, 30.0), [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(Decay.function(lambda a: a + 1).weights(3, 30.0), [1, 31, 61])
    np.testing.assert_array_equal(Decay.weights_of([3, 2, 1]).weights(2, 30.0), [3, 2])
    assert as_decay(None).kind == "none"
    assert as_decay([1.0]).kind == "weights"
    assert as_decay(np.ones(2)).kind == "weights"
    assert as_decay(lambda a: a).kind == "function"
    d = Decay.step(1.0)
    assert as_decay(d) is d


def test_decay_errors():
    with pytest.raises(ValueError, match="half_life_s must be a positive"):
        Decay.exponential(0)
    with pytest.raises(ValueError, match="span_s must be a positive finite"):
        Decay.linear(np.inf)
    with pytest.raises(ValueError, match="sigma_s"):
        Decay.gaussian(float("nan"))
    with pytest.raises(ValueError, match="exponent"):
        Decay.power(-1)
    with pytest.raises(ValueError, match="cutoff_s"):
        Decay.step(-2)
    with pytest.raises(TypeError, match="needs a callable"):
        Decay.function(3)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        Decay.weights_of([])
    with pytest.raises(ValueError, match="entry 1 is -1"):
        Decay.weights_of([1, -1])
    with pytest.raises(ValueError, match="returned shape"):
        Decay.function(lambda a: np.ones(2)).weights(3, 1.0)
    with pytest.raises(ValueError, match="entry 0 is nan"):
        Decay.function(lambda a: a * np.nan).weights(3, 1.0)
    with pytest.raises(ValueError, match="spans 3 buckets"):
        Decay.weights_of([1, 1]).weights(3, 1.0)
    with pytest.raises(ValueError, match="unknown decay kind"):
        Decay("cubic").weights(2, 1.0)
    with pytest.raises(TypeError, match="decay must be"):
        as_decay("exp")


def events(rng, n, n_slots, span_ms, loc=5.0):
    ts = T0 + rng.integers(0, span_ms, n)
    return ts.astype(np.int64), rng.integers(0, n_slots, n).astype(np.int64), rng.normal(loc, 2.0, n)


def test_ew_matches_closed_form_irregular_unsorted(rng):
    ts, sl, x = events(rng, 4000, 6, 6 * 3_600_000)  # random order: out-of-order everywhere
    hl = (60.0, 3600.0, 86400.0, np.inf)
    ew = EWStats(6, hl)
    for i in range(0, len(ts), 1000):
        ew.update(ts[i : i + 1000], sl[i : i + 1000], x[i : i + 1000])
    tq = int(ts.max()) + 5_000
    got = ew.values(tq)
    ref = ref_ew(ts, sl, x, 6, hl, tq)
    # incremental West updates over 700 events/slot vs fsum closed form: 1e-9 relative
    for f in ("weight", "sum", "mean", "var"):
        np.testing.assert_allclose(got[f], ref[f], rtol=1e-9, err_msg=f)
    np.testing.assert_allclose(got["std"], np.sqrt(ref["var"]), rtol=1e-9)
    assert got.shape == (6, 4) and got.dtype.names == EW_FIELDS


def test_ew_equals_pandas_ewm_times(rng):
    ts, sl, x = events(rng, 300, 1, 3_600_000)
    ts.sort()
    ew = EWStats(1, (600.0,))
    ew.update(ts, sl, x)
    s = pd.Series(x, index=pd.to_datetime(ts, unit="ms"))
    m = s.ewm(halflife=pd.Timedelta(seconds=600), times=s.index).mean().iloc[-1]
    # pandas has no ewm(times=).var(): the biased variance is E_w[x^2] - E_w[x]^2
    m2 = (s * s).ewm(halflife=pd.Timedelta(seconds=600), times=s.index).mean().iloc[-1]
    v = m2 - m * m
    got = ew.values(int(ts[-1]))
    # pandas computes the same weighted moments recursively: agree to 1e-9 relative (x ~ 5 +- 2,
    # so the E[x^2] - E[x]^2 cancellation costs under one digit)
    assert got["mean"][0, 0] == pytest.approx(m, rel=1e-9)
    assert got["var"][0, 0] == pytest.approx(v, rel=1e-9)


def test_ew_variance_stable_near_1e9(rng):
    ts, sl, x = events(rng, 3000, 2, 3_600_000, loc=1e9)
    ew = EWStats(2, (900.0,))
    ew.update(ts, sl, x)
    tq = int(ts.max())
    ref = ref_ew(ts, sl, x, 2, (900.0,), tq)
    # spread 2 on top of 1e9: ulp noise ~1e-7 relative to the spread bounds the error
    np.testing.assert_allclose(ew.values(tq)["var"], ref["var"], rtol=1e-6)


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 120))
def test_infinite_half_life_is_plain_sums(seed, n):
    rng = np.random.default_rng(seed)
    ts, sl, x = events(rng, n, 3, 10**9)
    ew = EWStats(3, (np.inf,))
    ew.update(ts, sl, x)
    v = ew.values(int(ts.max()) + 10**9)
    for s in range(3):
        xs = x[sl == s]
        assert v["weight"][s, 0] == len(xs)  # exact count
        if len(xs):
            # running Welford vs NumPy's pairwise sums: 1e-12 relative / 1e-9 absolute near 0
            assert v["sum"][s, 0] == pytest.approx(xs.sum(), rel=1e-12, abs=1e-9)
            assert v["var"][s, 0] == pytest.approx(xs.var(), rel=1e-10, abs=1e-9)
        else:
            assert np.isnan(v["mean"][s, 0])


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 150), cut=st.floats(0, 1))
def test_ew_merge_any_split_and_order(seed, n, cut):
    rng = np.random.default_rng(seed)
    ts, sl, x = events(rng, n, 3, 2 * 3_600_000)
    part = rng.random(n) < cut
    hl = (60.0, 3600.0)
    one, a, b = EWStats(3, hl), EWStats(3, hl), EWStats(3, hl)
    one.update(ts, sl, x)
    a.update(ts[part], sl[part], x[part])
    p = rng.permutation(int((~part).sum()))
    b.update(ts[~part][p], sl[~part][p], x[~part][p])
    a.merge(b)
    tq = int(ts.max()) if n else T0
    va, vo = a.values(tq), one.values(tq)
    for f in ("weight", "mean", "var"):
        # decayed weights span 2^-120; compare relative to 1e-10 with an absolute floor
        np.testing.assert_allclose(va[f], vo[f], rtol=1e-10, atol=1e-12, equal_nan=True)
    assert a.n_events == n


def test_ew_rollup_state_and_errors(rng):
    ts, sl, x = events(rng, 500, 4, 3_600_000)
    ew = EWStats(4, (300.0,))
    st_ = ew.update(ts, sl, np.where(np.arange(500) == 7, np.nan, x))
    assert st_[7] == 3 and ew.n_invalid == 1 and ew.n_events == 499
    up = ew.rollup(np.array([0, 0, 1, 1]), 2)
    keep = np.arange(500) != 7
    one = EWStats(2, (300.0,))
    one.update(ts[keep], sl[keep] // 2, x[keep])
    tq = int(ts.max())
    np.testing.assert_allclose(up.values(tq)["var"], one.values(tq)["var"], rtol=1e-10)
    d = ew.to_state()
    ew2 = EWStats.from_state(d)
    np.testing.assert_array_equal(ew2.values(tq, slots=[1, 3])["mean"], ew.values(tq, slots=[1, 3])["mean"])
    assert ew2.nbytes == 4 * 4 * 8 + 3 * 1024 * 8  # state + decay-factor table
    with pytest.raises(ValueError, match="not an EWStats"):
        EWStats.from_state({"kind": "SlidingWindows"})
    d["state"] = d["state"][:2]
    with pytest.raises(ValueError, match="state array has shape"):
        EWStats.from_state(d)
    with pytest.raises(ValueError, match="n_slots must be >= 1"):
        EWStats(0)
    with pytest.raises(ValueError, match="half_lives_s must be positive"):
        EWStats(1, (60.0, 0.0))
    with pytest.raises(ValueError, match="1-D sequence"):
        EWStats(1, [[1.0]])
    with pytest.raises(TypeError, match="only merge EWStats"):
        ew.merge(3)
    with pytest.raises(ValueError, match="same slots and half-lives"):
        ew.merge(EWStats(4, (60.0,)))


def test_ew_single_event_and_query_before_reference():
    ew = EWStats(1, (60.0,))
    ew.update(np.array([T0 + 60_000]), np.array([0]), np.array([4.0]))
    v = ew.values(T0)  # one half-life before the reference: weight 2
    assert v["weight"][0, 0] == pytest.approx(2.0, rel=1e-15)
    assert v["var"][0, 0] == 0.0 and v["mean"][0, 0] == 4.0
    assert math.isclose(ew.values(T0 + 120_000)["sum"][0, 0], 2.0, rel_tol=1e-15)
