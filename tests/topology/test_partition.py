"""Partition (counting sort) and segment kernels against NumPy references, plus properties."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kernels.partition import (
    compose_parent,
    partition_by_key,
    partition_by_map,
    partition_by_map_into,
    partition_scatter,
    segment_count,
    segment_max,
    segment_min,
    segment_sum,
)

try:  # tests/ as a package (tests/__init__.py) or as a plain folder on sys.path
    from tests.reference.topology import ref_partition, ref_segment
except ImportError:
    from reference_topology import ref_partition, ref_segment

keys_st = st.integers(1, 12).flatmap(
    lambda nk: st.tuples(st.just(nk), hnp.arrays(np.int64, st.integers(0, 300), elements=st.integers(-3, nk + 2)))
)


def test_partition_matches_stable_argsort(rng):
    keys = rng.integers(-1, 50, 20_000)
    order, offsets = partition_by_key(keys, 50)
    r_order, r_offsets = ref_partition(keys, 50)
    np.testing.assert_array_equal(order, r_order)
    np.testing.assert_array_equal(offsets, r_offsets)
    assert offsets.shape == (52,)


def test_partition_empty_and_unrouted_only():
    order, offsets = partition_by_key(np.zeros(0, dtype=np.int64), 3)
    assert order.shape == (0,) and offsets.tolist() == [0, 0, 0, 0, 0]
    order, offsets = partition_by_key(np.array([-1, 7, -5]), 3)
    assert order.tolist() == [0, 1, 2] and offsets.tolist() == [0, 0, 0, 0, 3]


@given(keys_st)
def test_partition_properties(arg):
    n_keys, keys = arg
    order, offsets = partition_by_key(keys, n_keys)
    n = len(keys)
    # a permutation of the rows
    assert np.array_equal(np.sort(order), np.arange(n))
    # offsets consistent: monotone, from 0 to n, slice sizes are the key counts
    assert offsets[0] == 0 and offsets[-1] == n and np.all(np.diff(offsets) >= 0)
    routed = (keys >= 0) & (keys < n_keys)
    np.testing.assert_array_equal(np.diff(offsets)[:n_keys], np.bincount(keys[routed], minlength=n_keys))
    for k in range(n_keys + 1):
        rows = order[offsets[k] : offsets[k + 1]]
        if k < n_keys:
            assert np.all(keys[rows] == k)
        else:
            assert not np.any(routed[rows])
        assert np.all(np.diff(rows) > 0)  # stable: input order within a partition


@given(keys_st)
def test_scatter_equals_gather(arg):
    n_keys, keys = arg
    values = np.arange(len(keys), dtype=np.float64) * 1.5
    out, offsets = partition_scatter(keys, n_keys, values)
    order, offsets2 = partition_by_key(keys, n_keys)
    np.testing.assert_array_equal(out, values[order])
    np.testing.assert_array_equal(offsets, offsets2)


def test_scatter_keeps_integer_dtype(rng):
    keys = rng.integers(0, 4, 100)
    vals = rng.integers(0, 1000, 100).astype(np.int32)
    out, _ = partition_scatter(keys, 4, vals)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, vals[np.argsort(keys, kind="stable")])


@given(
    st.integers(1, 9).flatmap(
        lambda nk: st.tuples(
            st.just(nk),
            hnp.arrays(np.int64, st.integers(1, 40), elements=st.integers(-1, nk - 1)),
            hnp.arrays(np.int64, st.integers(0, 200), elements=st.integers(-3, 45)),
        )
    )
)
def test_partition_by_map_equals_key_partition(arg):
    n_keys, table, index = arg
    m = len(table)
    order, offsets, n_invalid = partition_by_map(index, table, n_keys)
    keys = np.where((index >= 0) & (index < m), table[np.clip(index, 0, m - 1)], -1)
    r_order, r_offsets = ref_partition(keys, n_keys)
    np.testing.assert_array_equal(order, r_order)
    np.testing.assert_array_equal(offsets, r_offsets)
    assert n_invalid == int(np.sum((index < -1) | (index >= m)))


def test_partition_into_reuses_buffers_and_int16_scratch(rng):
    table = rng.integers(0, 7, 500)
    order = np.full(3000, -9, dtype=np.int64)
    kbuf = np.empty(3000, dtype=np.int16)
    index = rng.integers(0, 500, 2000)
    offsets, n_invalid = partition_by_map_into(index, table, 7, order, kbuf)
    assert n_invalid == 0
    np.testing.assert_array_equal(order[:2000], np.argsort(table[index], kind="stable"))
    assert np.all(order[2000:] == -9)  # the rest of the buffer is untouched
    assert offsets[-1] == 2000


@pytest.mark.parametrize(
    "how,kern", [("sum", segment_sum), ("count", segment_count), ("min", segment_min), ("max", segment_max)]
)
def test_segment_kernels_match_reference(rng, how, kern):
    n, k, n_seg = 3000, 3, 40
    values = rng.normal(size=(n, k))
    values[rng.random((n, k)) < 0.1] = np.nan
    seg = rng.integers(-1, n_seg, n)  # -1 rows are skipped
    seg[seg == 5] = 6  # segment 5 stays empty
    out = kern(values, seg, n_seg)
    ref = ref_segment(values[seg >= 0], seg[seg >= 0], n_seg, how)
    # sums of 3000 normals: the kernel adds in row order, the reference per segment in the same
    # order, so they agree to the last few ulps
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    if how == "sum":
        # cross-check with np.add.at on NaN-zeroed values
        ref2 = np.zeros((n_seg, k))
        ok = seg >= 0
        np.add.at(ref2, seg[ok], np.nan_to_num(values[ok]))
        np.testing.assert_allclose(out, ref2, rtol=1e-12, atol=1e-12)
        assert np.all(out[5] == 0.0)
    elif how == "count":
        assert out.dtype == np.int64 and np.all(out[5] == 0)
        np.testing.assert_array_equal(
            out[:, 0], np.bincount(seg[(seg >= 0) & ~np.isnan(values[:, 0])], minlength=n_seg)
        )
    else:
        assert np.all(np.isnan(out[5]))


def test_segment_skips_out_of_range_segments():
    values = np.array([[1.0], [2.0], [4.0]])
    seg = np.array([0, 9, 1])
    assert segment_sum(values, seg, 2).ravel().tolist() == [1.0, 4.0]
    assert segment_count(values, seg, 2).ravel().tolist() == [1, 1]
    assert segment_min(values, seg, 2).ravel().tolist() == [1.0, 4.0]
    assert segment_max(values, seg, 2).ravel().tolist() == [1.0, 4.0]


def test_compose_parent():
    out = compose_parent(np.array([0, 2, -1, 5, 1]), np.array([7, 8, 9]))
    assert out.tolist() == [7, 9, -1, -1, 8]
