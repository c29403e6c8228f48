"""``kernels.fold.stage_rows`` (selection, binning and staging in one pass) against a plain Python
reference: per cell, the selected rows' values added in row order (bit for bit), cells numbered in
first-seen order, the bin range, and resumption after the table filled."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.fold import empty_slots, rehash_pairs, stage_rows
from telcoanalytics.analysis.series import _Staged


def _reference(ts, elem, v, codes, code, bin_ms):
    cells = {}
    for i in range(len(ts)):
        if len(codes) and codes[i] != code:
            continue
        key = (int(elem[i]), int(ts[i]) // bin_ms)  # Python floor division, as np.floor_divide
        s, c = cells.get(key, (0.0, 0))
        cells[key] = (s + float(v[i]), c + 1)
    return cells


@settings(max_examples=80, deadline=None)
@given(
    st.integers(0, 400),
    st.integers(1, 30),
    st.integers(1, 10**6),
    st.booleans(),
    st.integers(0, 2**31),
    st.sampled_from([8, 64, 4096]),
)
def test_stage_rows_equals_a_python_reference(n, n_elem, bin_ms, every, seed, size):
    rng = np.random.default_rng(seed)
    ts = rng.integers(-(10**7), 10**7, n)
    elem = rng.integers(0, n_elem, n)
    v = rng.normal(size=n) * 10.0 ** rng.integers(-3, 6, n)
    codes = rng.integers(0, 3, n).astype(np.int32)
    code = 1
    st_ = _Staged(size)
    st_.add_rows(ts, elem, v, codes[:0] if every else codes, code, bin_ms)  # grows from small tables
    ref = _reference(ts, elem, v, codes[:0] if every else codes, code, bin_ms)
    a, b, s, c, m = st_.entries()
    assert m == len(ref)
    assert list(zip(a[:m].tolist(), b[:m].tolist())) == list(ref)  # first-seen order
    assert s[:m].tolist() == [x[0] for x in ref.values()]  # bit for bit
    assert c[:m].tolist() == [x[1] for x in ref.values()]
    if ref:
        bins = [k[1] for k in ref]
        assert (st_.bmin, st_.bmax) == (min(bins), max(bins))
    else:
        assert st_.bmin > st_.bmax


def test_stage_rows_stops_at_a_full_table_and_resumes():
    slots = empty_slots(8)  # room for 4 cells
    ka, kb = np.zeros(4, np.int64), np.zeros(4, np.int64)
    ps, pc = np.zeros(4), np.zeros(4, np.int64)
    ts = np.arange(6, dtype=np.int64) * 10
    elem = np.zeros(6, np.int64)
    v = np.arange(6, dtype=np.float64)
    bounds = np.array([np.iinfo(np.int64).max, np.iinfo(np.int64).min], np.int64)
    stop, n = stage_rows(slots, ka, kb, ps, pc, 0, ts, elem, v, np.zeros(0, np.int32), 0, 10, 0, bounds)
    assert (stop, n) == (4, 4) and bounds.tolist() == [0, 3]
    ka, kb = np.concatenate([ka, np.zeros(4, np.int64)]), np.concatenate([kb, np.zeros(4, np.int64)])
    ps, pc = np.concatenate([ps, np.zeros(4)]), np.concatenate([pc, np.zeros(4, np.int64)])
    slots = empty_slots(16)
    rehash_pairs(slots, ka, kb, n)
    stop, n = stage_rows(slots, ka, kb, ps, pc, n, ts, elem, v, np.zeros(0, np.int32), 0, 10, stop, bounds)
    assert (stop, n) == (6, 6) and bounds.tolist() == [0, 5]
    assert kb[:6].tolist() == list(range(6)) and ps[:6].tolist() == v.tolist()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 300), st.integers(1, 40), st.booleans(), st.integers(0, 2**31))
def test_staged_add_sums_cells_and_grows_as_a_python_fold(n, n_keys, with_values, seed):
    """``_Staged.add`` (``kernels.fold.stage_cells``, the complaints' path; with values too) from a
    table of 8 slots, so it fills and doubles: per cell, the values added in row order and the
    counts, against a plain Python dict."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, n_keys, n), rng.integers(-5, 5, n)
    v = rng.normal(size=n) if with_values else None
    cells = {}
    for i in range(n):
        s, c = cells.get((int(a[i]), int(b[i])), (0.0, 0))
        cells[(int(a[i]), int(b[i]))] = (s + (float(v[i]) if with_values else 0.0), c + 1)
    staged = _Staged(8)
    staged.add(a.astype(np.int64), b.astype(np.int64), v)
    key_a, key_b, part_sum, part_cnt, m = staged.entries()
    assert m == len(cells)
    got = {(int(key_a[j]), int(key_b[j])): (float(part_sum[j]), int(part_cnt[j])) for j in range(m)}
    if not with_values:
        got = {k: (0.0, c) for k, (_s, c) in got.items()}
    assert got == cells


def test_empty_batches_stage_nothing():
    """Batches with no rows (equipment, QoS, complaints) leave a series keeper without bins."""
    from telcoanalytics.analysis.series import SeriesKeeper
    from telcoanalytics.pipeline.contract import RoutedBatch
    from telcoanalytics.records import empty
    from telcoanalytics.topology import Topology

    topo = Topology.from_columns(np.arange(4) + 10, {"region": np.arange(4) % 2 + 1, "site": np.arange(4) + 100})
    k = SeriesKeeper(topo)
    for source in ("equip", "qos", "complaint"):
        k.stage_batch(RoutedBatch(source, empty(source), np.zeros(0, np.int64), np.zeros(0, np.int64)))
    k.flush()
    assert k.first_bin is None and len(k.times()) == 0
