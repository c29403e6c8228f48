"""Quarantine blocks kept as a copy of the rejected records: their text, columns and merge against
a plain value-by-value reference (the columns path is checked in ``test_quarantine_fast``)."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from telcoanalytics.ingest.quarantine import REASONS, Quarantine

INTS = st.integers(min_value=-(2**63), max_value=2**63 - 1)
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)


def _text(x) -> str:
    """The documented text of an original value, written out per value (no code under test)."""
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (float, np.floating)):
        f = float(x)
        return repr(f) if math.isfinite(f) else str(f)
    return str(int(x))


def _records(ints, floats, with_bool: bool) -> np.ndarray:
    k = len(ints)
    fields = [("t", "i8"), ("u", "u2"), ("x", "f8"), ("g", "f4"), ("m", "i4")]
    if with_bool:
        fields.append(("b", "?"))
    a = np.zeros(k, dtype=fields)
    a["t"] = ints
    a["u"] = [abs(v) % 2**16 for v in ints]
    a["x"] = floats
    with np.errstate(over="ignore"):
        a["g"] = np.array(floats, dtype=np.float32)
    a["m"] = [v % 1000 for v in ints]
    if with_bool:
        a["b"] = [v % 2 == 0 for v in ints]
    return a


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(1, 7),
    ints=st.lists(INTS, min_size=7, max_size=7),
    floats=st.lists(FLOATS, min_size=7, max_size=7),
    with_bool=st.booleans(),
    strided=st.booleans(),
)
def test_record_blocks_read_as_the_values_written_out(k, ints, floats, with_bool, strided):
    a = _records(ints[:k], floats[:k], with_bool)
    if strided:  # a strided view of the records (not one contiguous block): copied field-wise
        b = np.zeros(2 * k, dtype=a.dtype)
        b[::2] = a
        a = b[::2]
    expect = [{f: _text(a[f][i]) for f in a.dtype.names} for i in range(k)]
    q = Quarantine()
    q.add("equip", np.arange(k) + 5, np.full(k, 4, np.int8), np.array(["t"] * k, dtype=object), a, batch=3)
    a["t"] += 1  # the store holds a copy: the caller's array may change
    recs = q.records()
    assert [r["original"] for r in recs] == expect
    assert [r["row"] for r in recs] == list(range(5, 5 + k))
    assert all(r["reason"] == REASONS[3] and r["batch"] == 3 and r["field"] == "t" for r in recs)
    cols = q._blocks[0].columns  # the columns as views of the kept rows, the values written
    assert list(cols) == list(a.dtype.names)
    assert [[_text(v) for v in cols[f]] for f in cols] == [[e[f] for e in expect] for f in a.dtype.names]
    # merged into another store (and cut to its max_kept) the rows read the same
    m = Quarantine(max_kept=max(1, k - 1)).merge(q)
    assert [r["original"] for r in m.records()] == expect[: max(1, k - 1)]
    # and through a checkpoint
    assert Quarantine.from_state(q.to_state()).records() == recs


def test_record_blocks_and_dict_columns_give_the_same_lines(tmp_path):
    a = _records([1, -2, 3], [0.5, float("nan"), -float("inf")], with_bool=False)
    cols = {f: a[f].copy() for f in a.dtype.names}
    q1, q2 = Quarantine(), Quarantine()
    for q, c in ((q1, a), (q2, cols)):
        q.add("qos", [0, 1, 2], [3, 3, 3], np.array(["x"] * 3, dtype=object), c)
    assert q1.write_jsonl(tmp_path / "a.jsonl") == 3 and q2.write_jsonl(tmp_path / "b.jsonl") == 3
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert {k: v.tolist() for k, v in q1.table().items()} == {k: v.tolist() for k, v in q2.table().items()}
