"""concat_rows: opaque-record concatenation equals np.concatenate field by field."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telcoanalytics.pipeline.coalesce import concat_rows
from telcoanalytics.records import DTYPES


def _rows(dtype, n, seed):
    rng = np.random.default_rng(seed)
    a = np.zeros(n, dtype)
    for f in dtype.names:
        kind = dtype[f].kind
        a[f] = rng.integers(-(10**9), 10**9, n) if kind in "iu" else rng.normal(size=n)
    return a


@settings(max_examples=30, deadline=None)
@given(
    source=st.sampled_from(sorted(DTYPES)),
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=6),
    step=st.sampled_from([1, 2, 3]),
)
def test_equals_concatenate(source, sizes, step):
    dt = DTYPES[source]
    parts = [_rows(dt, n * step, i)[::step] for i, n in enumerate(sizes)]  # strided parts too
    got = concat_rows(parts)
    ref = np.concatenate(parts)
    assert got.dtype == ref.dtype
    assert len(got) == len(ref)
    for f in dt.names:
        np.testing.assert_array_equal(got[f], ref[f])


def test_plain_and_mixed_dtypes_fall_back():
    np.testing.assert_array_equal(concat_rows([np.arange(3), np.arange(2)]), [0, 1, 2, 0, 1])
    a = np.zeros(2, [("t", "i8")])
    b = np.zeros(1, [("t", "i4")])
    assert concat_rows([a, b]).dtype == np.concatenate([a, b]).dtype
    o = np.array([(1, "x")], dtype=[("t", "i8"), ("s", object)])
    assert concat_rows([o, o])["s"].tolist() == ["x", "x"]


def test_mismatched_fields_raise_like_concatenate():
    a = np.zeros(1, [("t", "i8")])
    b = np.zeros(1, [("u", "i8")])
    with pytest.raises(TypeError):
        np.concatenate([a, b])
    with pytest.raises(TypeError):
        concat_rows([a, b])
