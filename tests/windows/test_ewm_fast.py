"""The three-half-life fast path of the EW kernel (``kernels.ewm.ewm_fold3``) against the general
loop (``ewm_fold_n``): the same arithmetic in the same order, so the states must be bit-identical,
for in-order and late events, empty slots, skipped statuses, non-finite values, gaps past the
table (``exp`` fallback) and non-integer reference times."""

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from kernels import ewm as ke
from telcoanalytics.windows.decay import EWStats, decay_table, half_life_coefs

T0 = 1_700_000_000_000
HALF_LIVES_S = (60.0, 3600.0, np.inf)  # an infinite half-life: factor exactly 1


def _events(rng, n, n_slots, span_ms):
    ts = T0 + np.sort(rng.integers(0, span_ms, n)).astype(np.int64)
    ts -= rng.integers(0, 5_000, n)  # out of order: late events
    slot = rng.integers(0, n_slots, n).astype(np.int64)
    x = rng.normal(100.0, 10.0, n)
    return ts, slot, x


def _fresh(n_slots, n_h):
    state = np.zeros((n_slots, 1 + 3 * n_h))
    state[:, 0] = np.nan
    return state


def _both(ts, slot, x, status, coef, state0):
    """States after ewm_fold (three half-lives: the fast path) and after the general loop."""
    table = decay_table(coef)
    fast = state0.copy()
    ke.ewm_fold(ts, slot, x, status, coef, table, fast)
    general = state0.copy()
    ke.ewm_fold_n(ts, slot, x, status, coef, table, general)
    return fast, general


def test_fast_path_bit_identical_with_gaps_and_skipped_events(rng):
    n, n_slots = 20_000, 50
    # a week of events over 50 slots, plus a jump of 20 days (past the 2**30 ms table limit)
    ts, slot, x = _events(rng, n, n_slots, 7 * 86_400_000)
    ts[n // 2 :] += 20 * 86_400_000
    status = rng.choice(np.array([0, 0, 0, 1, 2], dtype=np.int8), n)  # non-zero: skipped
    coef = half_life_coefs(HALF_LIVES_S)
    state0 = _fresh(n_slots + 5, 3)  # 5 slots never see an event
    state0[0] = [T0 + 0.5, 2.0, 50.0, 3.0, 2.0, 50.0, 3.0, 2.0, 50.0, 3.0]  # non-integer t_ref
    fast, general = _both(ts, slot, x, status, coef, state0)
    np.testing.assert_array_equal(fast, general)
    assert np.all(np.isnan(fast[n_slots:, 0]))  # untouched slots stay empty
    # the skipped events really were skipped: folding only the status-0 events gives the same
    ok = status == 0
    only, _ = _both(ts[ok], slot[ok], x[ok], np.zeros(int(ok.sum()), np.int8), coef, state0)
    np.testing.assert_array_equal(fast, only)


def test_update_sets_status_in_the_fold():
    ts = T0 + np.array([1_000, 1_500, 2_000, 3_000, 500, 4_000], dtype=np.int64)
    slot = np.array([0, 0, 1, 0, 0, 1], dtype=np.int64)
    x = np.array([1.0, np.nan, 2.0, np.inf, 4.0, -np.inf])
    coef = half_life_coefs((60.0, 3600.0, 86400.0))
    table = decay_table(coef)
    state = _fresh(2, 3)
    status = np.full(len(ts), 7, dtype=np.int8)
    n_ok = ke.ewm_update(ts, slot, x, coef, table, state, status)
    assert n_ok == 3
    np.testing.assert_array_equal(status, [0, 3, 0, 3, 0, 3])
    ok = status == 0
    ref = _fresh(2, 3)
    ke.ewm_fold_n(ts[ok], slot[ok], x[ok], np.zeros(3, np.int8), coef, table, ref)
    np.testing.assert_array_equal(state, ref)
    # the late event (T0 + 500) entered with weight 2 ** (-0.5 / half-life) at t_ref = T0 + 1000
    a = 2.0 ** (-0.5 / 60.0)
    assert math.isclose(state[0, 1], 1.0 + a, rel_tol=1e-14)
    assert math.isclose(state[0, 2], (1.0 + 4.0 * a) / (1.0 + a), rel_tol=1e-14)


def test_ewstats_three_half_lives_equal_one_at_a_time(rng):
    # each half-life column of the fast path equals a one-half-life EWStats (general loop)
    ts, slot, x = _events(rng, 5_000, 20, 3 * 86_400_000)
    three = EWStats(20, (60.0, 3600.0, 86400.0))
    three.update(ts, slot, x)
    for h, hl in enumerate((60.0, 3600.0, 86400.0)):
        one = EWStats(20, (hl,))
        one.update(ts, slot, x)
        np.testing.assert_array_equal(three.state[:, [0, 1 + 3 * h, 2 + 3 * h, 3 + 3 * h]], one.state)


@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(-2_000_000_000, 2_000_000_000), st.floats(-1e6, 1e6, allow_nan=False)),
        min_size=1,
        max_size=60,
    )
)
def test_fast_path_equals_general_loop_any_stream(events):
    slot = np.array([e[0] for e in events], dtype=np.int64)
    ts = T0 + np.array([e[1] for e in events], dtype=np.int64)
    x = np.array([e[2] for e in events])
    coef = half_life_coefs(HALF_LIVES_S)
    fast, general = _both(ts, slot, x, np.zeros(len(events), np.int8), coef, _fresh(4, 3))
    np.testing.assert_array_equal(fast, general)
