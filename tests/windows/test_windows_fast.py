"""The fast paths of the window and EW kernels: decay-factor table, reciprocal bucket arithmetic,
software-pipelined passes (batches of any size, state carried across batches)."""

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from kernels import ewm as ke
from telcoanalytics.windows.decay import EWStats, decay_table, half_life_coefs
from telcoanalytics.windows.sliding import STAT_FIELDS, SlidingWindows
from tests.reference.windows import ref_status, ref_window_stats

T0 = 1_700_000_000_000


def test_decay_table_entries():
    coef = half_life_coefs((60.0, np.inf))
    tab = decay_table(coef)
    assert tab.shape == (ke.TABLE_LEVELS, 1 << ke.TABLE_BITS, 2)
    i = np.arange(1 << ke.TABLE_BITS)
    for lev in range(ke.TABLE_LEVELS):
        # each entry is one exp of an exactly scaled argument: equal to NumPy's exp to 1 ulp
        np.testing.assert_allclose(
            tab[lev, :, 0], np.exp(coef[0] * (i * 2.0 ** (ke.TABLE_BITS * lev))), rtol=3e-16, atol=0
        )
    assert np.all(tab[:, :, 1] == 1.0)  # infinite half-life: factor exactly 1


def _weight_after_two_events(dt_ms, late, half_lives_s=(60.0, 3600.0, 86400.0)):
    """W at the reference time after events at T0 and T0 + dt (the later one first if late)."""
    n = len(dt_ms)
    ew = EWStats(n, half_lives_s)
    s = np.arange(n, dtype=np.int64)
    first, second = (T0 + dt_ms, np.full(n, T0)) if late else (np.full(n, T0), T0 + dt_ms)
    ew.update(np.concatenate([first, second]).astype(np.int64), np.concatenate([s, s]), np.ones(2 * n))
    return ew


DTS = np.array(
    [
        0,
        1,
        1023,
        1024,
        1025,
        (1 << 20) - 1,
        1 << 20,
        3_600_000,
        86_400_000,
        (1 << 30) - 1,
        1 << 30,
        (1 << 30) + 12_345,
        40 * 86_400_000,
    ],
    dtype=np.int64,
)


def test_table_factor_equals_exp_in_order_and_late():
    for late in (False, True):
        ew = _weight_after_two_events(DTS, late)
        for h, hl in enumerate((60.0, 3600.0, 86400.0)):
            exact = 1.0 + np.exp2(-DTS / (hl * 1000.0))
            # three correctly rounded table entries (or exp past 2**30 ms): a few ulp
            np.testing.assert_allclose(ew.state[:, 1 + 3 * h], exact, rtol=1e-14, atol=0, err_msg=f"late={late}")
        np.testing.assert_array_equal(ew.state[:, 0], T0 + DTS)  # reference time = newest event


def test_non_integer_reference_time_falls_back_to_exp():
    ew = EWStats(1, (60.0,))
    ew.state[0] = [T0 + 0.5, 1.0, 2.0, 0.0]  # e.g. a state restored from elsewhere
    ew.update(np.array([T0 + 60_000]), np.array([0]), np.array([4.0]))
    a = 2.0 ** (-59_999.5 / 60_000.0)
    assert math.isclose(ew.state[0, 1], a + 1.0, rel_tol=1e-14)
    assert math.isclose(ew.state[0, 2], (2.0 * a + 4.0) / (a + 1.0), rel_tol=1e-14)


def test_reciprocal_quotient_needs_the_correction():
    t, w = 1_565_128_590_399_528, 49  # the case the kernel corrects
    assert math.floor(float(t) * (1.0 / w)) == t // w - 1


def _check_windows(ts, sl, x, n_slots, res, lateness):
    w = SlidingWindows(n_slots, res, allowed_lateness_ms=lateness)
    status = w.update(ts, sl, x).status
    np.testing.assert_array_equal(status, ref_status(ts, None, lateness))
    ok = status == 0
    tq = int(ts[ok].max())
    for r, (width, nb) in enumerate(res):
        got = w.query(tq, width * nb, resolution=r)
        ref = ref_window_stats(ts[ok], sl[ok], x[ok], n_slots, width, nb, tq, np.ones(nb), max_ts=w.max_ts_ms)
        for f in STAT_FIELDS:
            # Welford/Chan vs the fsum two-pass reference: 1e-9 relative (floor 1e-12 near 0)
            np.testing.assert_allclose(got[f], ref[f], rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=f"{f} {width}")


def test_bucket_arithmetic_awkward_widths_large_negative_and_huge_times(rng):
    res = ((3, 7), (7, 10), (10, 3), (49, 4), (1_000, 5))
    n = 3000
    for base in (1_565_128_590_399_528 - 100, 2**51 - 12_345, -(10**12) - 1, 2**53 + 17, 0):
        # 1565128590399528 // 49: the reciprocal product floors one too low and is corrected
        # (found by search); beyond 2**52 the exact integer division takes over
        ts = base + np.sort(rng.integers(0, 200, n)) - rng.integers(0, 30, n)
        sl = rng.integers(0, 3, n)
        x = rng.normal(0.0, 1.0, n)
        _check_windows(ts.astype(np.int64), sl.astype(np.int64), x, 3, res, lateness=25)


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 300), n_cuts=st.integers(0, 6))
def test_any_batching_gives_the_same_state(seed, n, n_cuts):
    rng = np.random.default_rng(seed)
    ts = (T0 + np.sort(rng.integers(0, 400_000, n)) - rng.integers(0, 90_000, n)).astype(np.int64)
    sl = rng.integers(0, 5, n).astype(np.int64)
    x = rng.normal(10.0, 3.0, n)
    x[rng.random(n) < 0.03] = np.nan
    kw_ = dict(resolutions=((1_000, 60), (60_000, 5)), allowed_lateness_ms=60_000, half_lives_s=(30.0, np.inf))
    one, parts = SlidingWindows(5, **kw_), SlidingWindows(5, **kw_)
    s_one = one.update(ts, sl, x).status
    cuts = np.unique(np.concatenate([[0, n], rng.integers(0, n + 1, n_cuts)]))
    s_parts = np.concatenate([parts.update(ts[a:b], sl[a:b], x[a:b]).status for a, b in zip(cuts[:-1], cuts[1:])])
    # batch boundaries change nothing: same side output, bit-identical cells and EW state
    np.testing.assert_array_equal(s_one, s_parts)
    np.testing.assert_array_equal(one.cells, parts.cells)
    np.testing.assert_array_equal(one.ew.state, parts.ew.state)
    np.testing.assert_array_equal(one.n_expired, parts.n_expired)
    assert (one.n_accepted, one.n_late, one.n_invalid) == (parts.n_accepted, parts.n_late, parts.n_invalid)
