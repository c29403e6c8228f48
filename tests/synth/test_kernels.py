"""The generator's compiled passes against their NumPy expressions (and NumPy's own functions).

The kernels are called directly, so they run compiled in the normal pass and as plain Python
under ``NUMBA_DISABLE_JIT=1`` (where the generator itself takes the NumPy twins).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from telcoanalytics.records import EQUIP_DTYPE, METRICS
from telcoanalytics.synth import _kernels as K

SETTINGS = settings(max_examples=60, deadline=None)


@SETTINGS
@given(
    hnp.arrays(np.int64, st.integers(0, 300), elements=st.integers(-(2**40), 2**40)),
    st.sampled_from([1, 7, 5000, 2**20, 2**40]),
)
def test_stable_argsort_equals_numpy_stable(raw, width):
    keys = raw % width + 1_772_409_600_000  # few distinct values (many ties) up to wide spans
    got = K.stable_argsort_kernel(keys)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, np.argsort(keys, kind="stable"))
    np.testing.assert_array_equal(K.stable_argsort(keys), np.argsort(keys, kind="stable"))


def test_stable_argsort_extremes():
    keys = np.array([2**62 - 1, -(2**62), 0, 2**62 - 1, -1, 5], np.int64)  # a span just below 2**63
    np.testing.assert_array_equal(K.stable_argsort_kernel(keys), np.argsort(keys, kind="stable"))
    with pytest.raises(ValueError, match="2\\*\\*63"):
        K.stable_argsort_kernel(np.array([np.iinfo(np.int64).max, np.iinfo(np.int64).min]))
    for n in (0, 1):
        np.testing.assert_array_equal(K.stable_argsort_kernel(np.zeros(n, np.int64)), np.arange(n))


@SETTINGS
@given(hnp.arrays(np.bool_, st.integers(0, 400)), st.data())
def test_nth_true_equals_flatnonzero(mask, data):
    hits = np.flatnonzero(mask)
    ranks = np.array(
        data.draw(st.lists(st.integers(0, max(len(hits) - 1, 0)), max_size=30 if len(hits) else 0)), np.int64
    )
    want = hits[ranks]
    np.testing.assert_array_equal(K._nth_true(mask, ranks), want)
    np.testing.assert_array_equal(K.nth_true(mask, ranks), want)


@SETTINGS
@given(st.integers(0, 200), st.integers(1, 6), st.integers(0, 2**31))
def test_group_starts_and_expansion(n, n_distinct, seed):
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, n_distinct, n)) * 300_000
    el = rng.integers(0, 3, n)
    el = el[np.lexsort((el, ts))]  # rows sorted by (ts, el): runs of equal pairs are the groups
    rows = np.empty(n, [("ts", "i8"), ("el", "i8"), ("pad", "i4")])  # strided fields, as in the tables
    rows["ts"], rows["el"] = ts, el
    want = K.group_starts_numpy(rows["ts"], rows["el"])
    # plain Python reference: a row starts a group when its pair differs from the row before
    ref = [i for i in range(n) if i == 0 or (ts[i], el[i]) != (ts[i - 1], el[i - 1])]
    np.testing.assert_array_equal(want, ref)
    np.testing.assert_array_equal(K.group_starts_kernel(rows["ts"], rows["el"]), want)
    np.testing.assert_array_equal(K.group_starts(rows["ts"], rows["el"]), want)
    size = np.diff(np.append(want, n))
    g_arr = rng.integers(0, 5, len(want)) + ts[want]
    g_ord = np.argsort(g_arr, kind="stable")
    order, arrival = K.expand_groups_kernel(want, size, g_ord, g_arr, n)
    ref_order = [int(want[g]) + r for g in g_ord for r in range(int(size[g]))]
    ref_arrival = [int(g_arr[g]) for g in g_ord for _ in range(int(size[g]))]
    np.testing.assert_array_equal(order, ref_order)
    np.testing.assert_array_equal(arrival, ref_arrival)
    for got in (K.expand_groups_numpy(want, size, g_ord, g_arr, n), K.expand_groups(want, size, g_ord, g_arr, n)):
        np.testing.assert_array_equal(got[0], ref_order)
        np.testing.assert_array_equal(got[1], ref_arrival)


@SETTINGS
@given(st.integers(0, 12), st.integers(0, 9), st.integers(1, 4), st.integers(0, 2**31))
def test_equip_table_equals_masked_gather(n_t, n_e, env_every, seed):
    rng = np.random.default_rng(seed)
    n_m = len(METRICS)
    times = 1_772_409_600_000 + 300_000 * np.arange(n_t, dtype=np.int64)
    ids = rng.integers(1, 10**9, n_e)
    has = rng.random((n_e, n_m)) < 0.6
    present = rng.random((n_t, n_e)) < 0.8
    slow = np.zeros(n_m, bool)
    slow[rng.integers(n_m)] = True
    on_env = np.arange(n_t) % env_every == 0
    grids = rng.normal(size=(n_m, n_t, n_e))
    # plain Python reference: the loops in (interval, element, metric) order
    ref = [
        (times[t], ids[e], m, grids[m, t, e])
        for t in range(n_t)
        for e in range(n_e)
        if present[t, e]
        for m in range(n_m)
        if has[e, m] and (on_env[t] or not slow[m])
    ]
    ref = np.array(ref, dtype=EQUIP_DTYPE) if ref else np.empty(0, EQUIP_DTYPE)
    args = (times, ids, has, present, slow, on_env, grids, EQUIP_DTYPE)
    for fn in (K.equip_table_kernel, K.equip_table_numpy, K.equip_table):
        got = fn(*args)
        assert got.dtype == EQUIP_DTYPE
        assert got.tobytes() == ref.tobytes()
