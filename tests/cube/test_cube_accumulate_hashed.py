"""kernels.cube.cube_accumulate over a hashed index (the prefetch of the home slot HASH_AHEAD
events ahead) against a plain Python fold: cells in first-seen order, counts, sums, minima,
maxima and missing values per key, rejected rows, and the resumption when the table grows; the
same compiled and with NUMBA_DISABLE_JIT=1."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.cube import HASH_AHEAD
from telcoanalytics.cube.table import CellTable


def _reference(keys, vals):
    """{key: [count, sum0, min0, max0, miss0, sum1, ...]} in first-seen order, and the rejected count."""
    cells, rej = {}, 0
    for i, k in enumerate(keys.tolist()):
        if k < 0:
            rej += 1
            continue
        c = cells.setdefault(k, [0] + [0.0, np.inf, -np.inf, 0] * vals.shape[0])
        c[0] += 1
        for f in range(vals.shape[0]):
            x = float(vals[f, i])
            if x != x:
                c[1 + 4 * f + 3] += 1
                continue
            c[1 + 4 * f] += x
            c[1 + 4 * f + 1] = min(c[1 + 4 * f + 1], x)
            c[1 + 4 * f + 2] = max(c[1 + 4 * f + 2], x)
    return cells, rej


@given(
    n=st.integers(0, 6 * HASH_AHEAD),
    n_keys=st.integers(1, 300),
    n_fields=st.integers(0, 2),
    n_batches=st.integers(1, 3),
    seed=st.integers(0, 2**31 - 1),
)
@settings(max_examples=60, deadline=None)
def test_hashed_accumulate_equals_a_python_fold(n, n_keys, n_fields, n_batches, seed):
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 1 << 40, n_keys)  # wide keys: many probes collide and wrap
    tab = CellTable(1 << 40, False, n_fields, 0, 4, 0, 0, capacity=1)  # grows inside the batches
    all_keys, all_vals = [], []
    for _ in range(n_batches):
        keys = pool[rng.integers(0, n_keys, n)]
        keys[rng.random(n) < 0.1] = -1  # rejected rows
        vals = np.round(rng.normal(0, 100, (n_fields, n)))  # whole numbers: sums exact in any order
        vals[rng.random((n_fields, n)) < 0.1] = np.nan
        z = np.zeros(0, np.int64)
        rej = tab.accumulate(keys, _Batch(n, vals), np.arange(n_fields), np.zeros(n_fields, bool), z, z, 0.0, 1.0)
        assert rej == int((keys < 0).sum())
        all_keys.append(keys)
        all_vals.append(vals)
    cells, n_rej = _reference(np.concatenate(all_keys), np.concatenate(all_vals, axis=1))
    m = tab.n_cells
    assert m == len(cells) and int(tab.counters[1]) == n_rej
    np.testing.assert_array_equal(tab.cell_key[:m], np.array(list(cells), np.int64))  # first-seen order
    ref = np.array(list(cells.values()), np.float64).reshape(m, 1 + 4 * n_fields)
    np.testing.assert_array_equal(tab.cnt[:m], ref[:, 0])
    for f in range(n_fields):
        np.testing.assert_array_equal(tab.fsum[:m, f], ref[:, 1 + 4 * f])
        np.testing.assert_array_equal(tab.fmin[:m, f], ref[:, 2 + 4 * f])
        np.testing.assert_array_equal(tab.fmax[:m, f], ref[:, 3 + 4 * f])
        np.testing.assert_array_equal(tab.fmiss[:m, f], ref[:, 4 + 4 * f])
    for k, c in zip(cells, range(m)):  # every key is found at its cell through the hashed index
        s = int(np.flatnonzero(tab.tab_keys == k)[0])
        assert tab.tab_cell[s] == c


class _Batch:
    """The fields of ``BatchArrays`` that ``CellTable.accumulate`` reads."""

    def __init__(self, n, vals):
        self.n = n
        self.vals = np.ascontiguousarray(vals, np.float64)
        self.hashes = np.zeros((0, n), np.int64)
