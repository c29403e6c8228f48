"""The compiled helpers of the fast ingest path against plain NumPy / Python references."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.dedup import BUCKET_SLACK, EMPTY, M_BUCKET, bucketset_insert
from kernels.dedup_batch import MAX_COUNTED_BUCKETS, large_call_stats
from kernels.validate import lookup_mark_unknown
from telcoanalytics.ingest.ingestor import Ingestor
from telcoanalytics.ingest.readers import RawChunk

T0 = 1_700_000_000_000


def _stats_reference(t, code, b_ms):
    ta = t[code == 0]
    if not len(ta):
        return None
    in_order = bool(np.all(np.diff(ta) >= 0))
    return len(ta), int(ta.min()), int(ta.max()), int(ta[0]), int(ta[-1]), in_order


@settings(deadline=None, max_examples=150)
@given(
    steps=st.lists(st.integers(-200_000, 900_000), min_size=0, max_size=300),
    bad=st.lists(st.booleans(), min_size=300, max_size=300),
    b_ms=st.sampled_from([1, 7, 300_000, 3_600_000]),
    sort=st.booleans(),
)
def test_large_call_stats_match_numpy(steps, bad, b_ms, sort):
    t = T0 + np.cumsum(np.array(steps, dtype=np.int64))
    if sort:
        t = np.sort(t)
    code = np.array(bad[: len(t)], dtype=np.int8) * 3
    rec = np.zeros(len(t), dtype=[("ts_ms", "i8"), ("x", "f8")])  # a strided column, as in ingest
    rec["ts_ms"] = t
    out = np.zeros(6, np.int64)
    counts = large_call_stats(rec["ts_ms"], code, b_ms, out)
    ref = _stats_reference(t, code, b_ms)
    if ref is None:
        assert out[0] == 0
        return
    n_ok, t_min, t_max, first, last, in_order = ref
    assert out[:5].tolist() == [n_ok, t_min, t_max, first, last]
    ta = t[code == 0]
    span = int(ta[-1]) // b_ms - int(ta[0]) // b_ms
    assert bool(out[5]) == (in_order and 0 <= span < MAX_COUNTED_BUCKETS)
    if out[5]:
        # rows per bucket from the first row's: what searchsorted over the bucket edges gives
        edges = (int(ta[0]) // b_ms + np.arange(span + 2, dtype=np.int64)) * b_ms
        np.testing.assert_array_equal(counts, np.diff(np.searchsorted(ta, edges)))
        assert counts.sum() == n_ok


def test_large_call_stats_wide_span_and_no_valid_row():
    t = np.array([T0, T0 + 10, T0 + MAX_COUNTED_BUCKETS * 5], dtype=np.int64)
    out = np.zeros(6, np.int64)
    large_call_stats(t, np.zeros(3, np.int8), 5, out)
    assert out.tolist() == [3, T0, T0 + MAX_COUNTED_BUCKETS * 5, T0, T0 + MAX_COUNTED_BUCKETS * 5, 0]
    out[:] = 7
    large_call_stats(t, np.ones(3, np.int8), 5, out)
    assert out[0] == 0


@settings(deadline=None, max_examples=100)
@given(
    ids=st.lists(st.integers(-1000, 5000), min_size=1, max_size=60, unique=True),
    probes=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=30),
    near=st.lists(st.integers(-1100, 5100), max_size=60),
    failed=st.lists(st.booleans(), min_size=150, max_size=150),
)
def test_lookup_mark_unknown_matches_a_dict(ids, probes, near, failed):
    ids = np.array(ids, dtype=np.int64)
    lo, hi = int(ids.min()), int(ids.max())
    index = np.arange(len(ids), dtype=np.int64)[::-1].copy()
    lut = np.full(hi - lo + 3, -1, dtype=np.int64)  # the layout of _ElementLookup's table
    lut[ids - lo + 1] = index
    q = np.array(list(ids) + near + probes, dtype=np.int64)
    code = np.where(np.array(failed[: len(q)]), 4, 0).astype(np.int8)
    field = np.full(len(q), -1, np.int8)
    code0 = code.copy()
    out = np.empty(len(q), np.int64)
    n = lookup_mark_unknown(q, lut, lo, hi, out, 11, code, field, 2)
    ref = {int(k): int(v) for k, v in zip(ids, index)}
    want = np.array([ref.get(int(k), -1) for k in q], dtype=np.int64)
    np.testing.assert_array_equal(out, want)
    newly = (code0 == 0) & (want < 0)
    assert n == newly.sum()
    np.testing.assert_array_equal(code, np.where(newly, 11, code0))
    np.testing.assert_array_equal(field, np.where(newly, 2, -1))


def test_rows_at_equals_the_row_numbers_indexed():
    idx = np.array([0, 3, 4], dtype=np.int64)
    plain = RawChunk({"a": np.zeros(6)}, 6, row_offset=100)
    assert plain.rows_at(idx).tolist() == plain.rows()[idx].tolist() == [100, 103, 104]
    merged = RawChunk({"a": np.zeros(6)}, 6, row_numbers=np.array([9, 2, 7, 5, 1, 8], dtype=np.int64))
    assert merged.rows_at(idx).tolist() == merged.rows()[idx].tolist() == [9, 5, 1]


def test_bucket_tables_grow_when_the_load_07_rule_says():
    """A bucket table of ``cap`` slots is full at 0.7 of ``cap // BUCKET_SLACK`` keys (the rule
    the sizes were chosen by before the slack), whatever the slack."""
    for nominal in (16, 64):
        cap = nominal * BUCKET_SLACK
        tables = np.empty((4, cap), np.int64)
        meta = np.zeros((4, 3), np.int64)
        meta[:, M_BUCKET] = EMPTY
        keys = np.arange(1, 2 * nominal, dtype=np.int64) * 0x9E3779B97F4A7C1
        t = np.full(len(keys), 5, np.int64)
        out = np.zeros(len(keys), np.int8)
        geometry = np.array([10, 0, 0], np.int64)
        stop = bucketset_insert(keys, t, np.ones(len(keys), np.bool_), 0, geometry, tables, meta, out)
        assert stop == (7 * nominal) // 10 and not out.any()


_CORRUPT = {"equip": ("value", np.nan), "flow": ("bytes", -1), "qos": ("latency_ms", np.inf)}


def _same(fused, steps, a):
    r1, r2 = fused.ingest(a), steps.ingest(a.copy())
    assert r1.by_reason == r2.by_reason and r1.accepted.tobytes() == r2.accepted.tobytes()
    return r1.by_reason


def test_large_calls_rejected_ahead_and_out_of_order_decide_as_the_separate_steps():
    """Calls large enough for the one-pass sizing (``_prepare_large``): every row rejected; the
    valid rows all hours ahead of the clock (no bucket of the ring to count); a day out of time
    order (the NumPy fallback), then delivered again."""
    from telcoanalytics.ingest.dedup import TimeBucketKeySet
    from tests.ingest.test_dedup_sources import rows

    n = TimeBucketKeySet.LARGE_CALL + 4000
    for source, (field, bad) in _CORRUPT.items():
        fused, steps = Ingestor(source), Ingestor(source)
        steps.fused_dedup = False
        _same(fused, steps, rows(source, 100))  # the robust clock is set from here on
        a = rows(source, n, T0 + 3_600_000)
        a[field] = bad
        assert sum(_same(fused, steps, a).values()) == n
        a = rows(source, n, T0 + 5 * 3_600_000)
        a[field][3:] = bad
        assert sum(_same(fused, steps, a).values()) == n - 3
        again = a[:3].copy()
        assert _same(fused, steps, again) == {"duplicate_id": 3}
        day = rows(source, 3 * n, T0 + 6 * 3_600_000)
        day = day[np.random.default_rng(5).permutation(len(day))]
        first = _same(fused, steps, day)
        assert "duplicate_id" not in first
        assert _same(fused, steps, day)["duplicate_id"] > 0


def test_dense_element_lookup_call_matches_a_dict():
    """``_ElementLookup``'s table path called directly (the sparse-id path is tested elsewhere)."""
    from telcoanalytics.ingest.ingestor import _ElementLookup

    ids = np.array([5, 9, 12, 40], dtype=np.int64)
    lk = _ElementLookup(ids, np.array([3, 2, 1, 0], dtype=np.int64))
    assert lk.lut is not None
    q = np.array([5, 6, 40, 4, 41, 12, -(2**63), 2**63 - 1], dtype=np.int64)
    np.testing.assert_array_equal(lk(q), [3, -1, 0, -1, -1, 1, -1, -1])


def test_large_call_stats_rows_past_the_last_rows_bucket():
    """Rows in order up to hours past the last row's bucket, then back (the last row earlier than
    the middle ones, not than the first): counted as out of order, against NumPy (the in-order
    pass wrote past its per-bucket counts here before)."""
    from kernels.dedup_batch import large_call_stats

    b = 300_000
    t = np.array([0, 10, 5 * b, 9 * b + 7, 2 * b, b + 1], np.int64) + T0
    code = np.zeros(len(t), np.int8)
    code[1] = 3  # a rejected row is skipped
    out = np.empty(6, np.int64)
    large_call_stats(t, code, b, out)
    ok = t[code == 0]
    assert out.tolist() == [len(ok), ok.min(), ok.max(), ok[0], ok[-1], 0]
