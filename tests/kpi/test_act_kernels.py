"""``kernels.kpi.kpi_act_cells`` and ``kpi_act_count`` (activity counts moved by a batch's late
rows) against a plain Python reference: the cells a batch writes, each once, and the change of
each cell's activity (any activity column > 0) added to the counts whose interval holds its minute."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import kpi as K


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_rows=st.integers(0, 60), n_runs=st.integers(1, 4))
def test_act_cells_and_count_equal_reference(seed, n_rows, n_runs):
    rng = np.random.default_rng(seed)
    m, n, width = 10, 7, 4
    head = 100
    late_bound = head - m
    minute = rng.integers(late_bound - 3, head + 2, n_rows).astype(np.int64)
    elem = rng.integers(0, n, n_rows).astype(np.int64)
    reason = np.where(rng.random(n_rows) < 0.2, 3, 0).astype(np.int8)
    lo, hi = int(rng.integers(late_bound - 2, head)), int(rng.integers(late_bound, head + 2))
    cs, ce, cm = K.kpi_act_cells(elem, minute, reason, late_bound, lo, hi, m, n)
    want = sorted(
        {
            (int(mi % m), int(e), int(mi))
            for e, mi, r in zip(elem, minute, reason)
            if r == 0 and late_bound < mi and lo <= mi < hi
        }
    )
    assert list(zip(cs.tolist(), ce.tolist(), cm.tolist())) == want

    ring = np.where(rng.random((m, n, width)) < 0.5, 0, rng.integers(1, 5, (m, n, width))).astype(np.float32)
    run_lo = rng.integers(late_bound - 2, head, n_runs).astype(np.int64)
    run_hi = run_lo + rng.integers(0, 8, n_runs)
    sizes = rng.integers(1, width + 1, n_runs)
    cols = np.concatenate([rng.choice(width, s, replace=False) for s in sizes]).astype(np.int64)
    col_ptr = np.zeros(n_runs + 1, np.int64)
    np.cumsum(sizes, out=col_ptr[1:])
    outs = tuple(rng.integers(0, 20, n).astype(np.int64) for _ in range(n_runs))
    exp = [o.copy() for o in outs]
    before = ring.copy()
    K.kpi_act_count(ring, cs, ce, cm, run_lo, run_hi, col_ptr, cols, -1, outs)
    for s_, e_, _ in want:  # the batch writes its cells
        ring[s_, e_] = np.where(rng.random(width) < 0.5, 0, rng.integers(1, 5, width))
    K.kpi_act_count(ring, cs, ce, cm, run_lo, run_hi, col_ptr, cols, 1, outs)
    for k in range(n_runs):
        c = cols[col_ptr[k] : col_ptr[k + 1]]
        for s_, e_, mi in want:
            if run_lo[k] <= mi < run_hi[k]:
                exp[k][e_] += int(ring[s_, e_, c].sum() > 0) - int(before[s_, e_, c].sum() > 0)
        np.testing.assert_array_equal(outs[k], exp[k])
