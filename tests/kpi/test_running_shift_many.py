"""``kernels.kpi.kpi_running_shift_many`` against a NumPy reference: both of its passes (only the
elements with counts, every element) give, cell for cell, ``out + ((0 + ring[add]) - ring[sub])``."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import kpi as K


def _reference(ring, add_slot, sub_slots, col_ptr, cols, outs):
    res = []
    for i, out in enumerate(outs):
        c = cols[col_ptr[i] : col_ptr[i + 1]]
        acc = np.zeros((ring.shape[1], len(c)))
        if add_slot >= 0:
            acc = acc + ring[add_slot][:, c].astype(np.float64)
        if sub_slots[i] >= 0:
            acc = acc - ring[sub_slots[i]][:, c].astype(np.float64)
        res.append(out + acc)
    return res


def _world(seed, n, m, width, density, n_out, integer):
    rng = np.random.default_rng(seed)
    row_used = rng.random((m, n)) < density
    ring = np.zeros((m, n, width), np.float32)
    k = int(row_used.sum())
    vals = rng.integers(0, 50, (k, width)) if integer else rng.random((k, width)) * 1e3
    vals[rng.random((k, width)) < 0.5] = 0  # rows with counts hold zero cells too
    ring[row_used] = vals
    sizes = rng.integers(1, width + 1, n_out)
    cols = np.concatenate([rng.choice(width, s, replace=False) for s in sizes]).astype(np.int64)
    col_ptr = np.zeros(n_out + 1, np.int64)
    np.cumsum(sizes, out=col_ptr[1:])
    # running sums as a ring would have left them: sums of float32 cells (never -0.0)
    outs = tuple(np.abs(rng.integers(0, 100, (n, s))).astype(np.float64) * (1.0 if integer else 0.25) for s in sizes)
    return rng, ring, row_used, col_ptr, cols, outs


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 300),
    density=st.sampled_from([0.0, 0.01, 0.05, 0.3, 1.0]),
    n_out=st.integers(1, 6),
    integer=st.booleans(),
    no_add=st.booleans(),
)
def test_shift_many_equals_reference(seed, n, density, n_out, integer, no_add):
    m, width = 12, 9
    rng, ring, row_used, col_ptr, cols, outs = _world(seed, n, m, width, density, n_out, integer)
    add_slot = -1 if no_add else int(rng.integers(0, m))
    sub_slots = rng.integers(-1, m, n_out).astype(np.int64)
    want = _reference(ring, add_slot, sub_slots, col_ptr, cols, outs)
    K.kpi_running_shift_many(ring, row_used, add_slot, sub_slots, col_ptr, cols, outs)
    for got, exp in zip(outs, want):
        np.testing.assert_array_equal(got, exp)
        assert not np.signbit(got[got == 0]).any()


@pytest.mark.parametrize("density", [0.02, 0.5])
def test_both_passes_in_one_call(density):
    """One aggregate whose minutes are nearly empty (the pass over the elements with counts) and one
    whose leaving minute is full (the pass over every element), in the same call."""
    n, m, width = 400, 6, 5
    rng, ring, row_used, col_ptr, cols, outs = _world(3, n, m, width, density, 2, True)
    row_used[4] = True
    ring[4] = rng.integers(1, 9, (n, width))
    row_used[0] = row_used[1] = False
    ring[0] = ring[1] = 0
    sub_slots = np.array([1, 4], np.int64)
    assert (0 + row_used[1].sum()) * K.DENSE_SHIFT_DIV < n <= (0 + row_used[4].sum()) * K.DENSE_SHIFT_DIV
    want = _reference(ring, 0, sub_slots, col_ptr, cols, outs)
    before = [o.copy() for o in outs]
    K.kpi_running_shift_many(ring, row_used, 0, sub_slots, col_ptr, cols, outs)
    for got, exp in zip(outs, want):
        np.testing.assert_array_equal(got, exp)
    np.testing.assert_array_equal(outs[0], before[0])  # nothing entered or left the first one
    assert not np.array_equal(outs[1], before[1])
