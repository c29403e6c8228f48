"""The quarantine's column-wise text conversion and one-pass reason check keep every record and
error: references are the value-by-value ``_text`` and the reason range written out."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telcoanalytics.ingest.quarantine import REASONS, Quarantine, _text

VALUES = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
)


def _reference_original(columns: dict, i: int) -> dict:
    return {c: _text(v.tolist()[i] if hasattr(v, "tolist") else list(v)[i]) for c, v in columns.items()}


@settings(max_examples=80, deadline=None)
@given(
    k=st.integers(1, 6),
    ints=st.lists(st.integers(-(2**63), 2**63 - 1), min_size=6, max_size=6),
    floats=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=6, max_size=6),
    mixed=st.lists(VALUES, min_size=6, max_size=6),
)
def test_records_equal_the_value_by_value_text(k, ints, floats, mixed):
    with np.errstate(over="ignore"):  # large doubles overflow float32 to inf: text "inf"
        g = np.array(floats[:k], dtype=np.float32)
    cols = {
        "i": np.array(ints[:k], dtype=np.int64),
        "u": np.array([abs(x) % 2**16 for x in ints[:k]], dtype=np.uint16),
        "f": np.array(floats[:k], dtype=np.float64),
        "g": g,
        "b": np.array([x % 2 == 0 for x in ints[:k]]),
        "o": np.array(mixed[:k], dtype=object),
    }
    q = Quarantine()
    q.add("qos", np.arange(k), np.full(k, 3, np.int8), np.array(["f"] * k, dtype=object), cols, batch=2)
    kept = q._blocks[0].columns  # the values as kept (text truncated, numbers copied)
    recs = q.records()
    assert [r["original"] for r in recs] == [_reference_original(kept, i) for i in range(k)]
    assert [r["row"] for r in recs] == list(range(k)) and all(r["reason"] == REASONS[2] for r in recs)
    for r, x in zip(recs, floats[:k]):
        assert r["original"]["f"] == (repr(x) if math.isfinite(x) else str(x))


def test_records_without_columns_and_with_files():
    q = Quarantine()
    q.add("cdr", [4, 5], [1, 2], ["a", "b"], {"<file>": np.array(["x.csv", None], dtype=object)})
    assert q.records() == [
        {"source": "cdr", "batch": 0, "file": "x.csv", "row": 4, "reason": REASONS[0], "field": "a", "original": {}},
        {"source": "cdr", "batch": 0, "row": 5, "reason": REASONS[1], "field": "b", "original": {}},
    ]


@pytest.mark.parametrize("bad", [0, -1, -128, len(REASONS) + 1, 127])
def test_reason_codes_outside_the_range_are_refused(bad):
    q = Quarantine()
    with pytest.raises(ValueError, match=rf"got \[{bad}\]"):
        q.add("qos", [0, 1], np.array([1, bad], dtype=np.int8), ["x", "y"], {})
    assert len(q) == 0


def test_counts_per_reason_over_several_adds():
    q = Quarantine(max_kept=0)
    q.add("qos", [0, 1, 2], np.array([1, 13, 13], dtype=np.int8), ["x"] * 3, {})
    q.add("qos", [3], np.array([13], dtype=np.int8), ["x"], {})
    assert q.counts() == {REASONS[0]: 1, REASONS[12]: 3} and q.n_not_kept == 4
