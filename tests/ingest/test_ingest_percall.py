"""The per-call paths of ingest: rejected rows and counts in one compiled call, the quarantine of
records in one gather, field names kept without a conversion per row."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.validate import rejected_rows
from telcoanalytics.ingest.ingestor import Ingestor
from telcoanalytics.ingest.quarantine import REASON_CODE, REASONS, Quarantine, _field_names, truncate
from telcoanalytics.records import empty

T0 = 1_700_000_000_000


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 300),
    st.floats(0.0, 1.0),
    st.integers(0, 2**31 - 1),
)
def test_rejected_rows_equals_numpy(n, p, seed):
    """Indices and per-code counts equal flatnonzero and bincount (any length: whole words of
    eight codes and a tail; rare and dense rejections)."""
    rng = np.random.default_rng(seed)
    code = np.where(rng.random(n) < p, rng.integers(1, len(REASONS) + 1, n), 0).astype(np.int8)
    counts = np.zeros(len(REASONS) + 1, np.int64)
    idx = rejected_rows(code, counts)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, np.flatnonzero(code))
    ref = np.bincount(code, minlength=len(REASONS) + 1)
    ref[0] = 0  # accepted rows are not counted
    np.testing.assert_array_equal(counts, ref)


def test_rejected_rows_adds_to_counts():
    code = np.array([0, 3, 0, 0, 0, 0, 0, 0, 0, 3, 12], np.int8)
    counts = np.zeros(len(REASONS) + 1, np.int64)
    counts[3] = 5
    assert rejected_rows(code, counts).tolist() == [1, 9, 10]
    assert counts[3] == 7 and counts[12] == 1 and counts.sum() == 8


def _records(source, n, rng):
    a = empty(source, n)
    a["ts_ms"] = T0 + np.arange(n) * 1000
    if source == "qos":
        a["element_id"] = rng.integers(0, 5, n)
        a["latency_ms"] = rng.random(n) * 50
        a["mos"] = 4.0
    return a


def test_quarantine_of_records_equals_columns():
    """A structured array of rejected rows is kept as the dict of its fields would be: the same
    records, originals and table; the block does not alias the caller's array."""
    rng = np.random.default_rng(3)
    recs = _records("qos", 6, rng)
    recs["latency_ms"][2] = np.inf
    rows = np.arange(6, dtype=np.int64) * 7
    codes = np.full(6, REASON_CODE["out_of_domain"], np.int8)
    fields = np.array(["latency_ms"] * 6, dtype=object)
    a, b = Quarantine(), Quarantine(max_kept=4)
    ref, ref4 = Quarantine(), Quarantine(max_kept=4)
    for q in (a, b):
        q.add("qos", rows, codes, fields, recs, batch=2)
    cols = {f: recs[f].copy() for f in recs.dtype.names}
    for q in (ref, ref4):
        q.add("qos", rows, codes, fields, cols, batch=2)
    recs["latency_ms"][:] = -1.0  # the caller's array changes afterwards
    assert a.records() == ref.records()
    assert b.records() == ref4.records() and b.n_not_kept == 2
    for k, v in ref.table().items():
        assert a.table()[k].tolist() == v.tolist()
    assert a.records()[2]["original"]["latency_ms"] == "inf"
    assert Quarantine.from_state(a.to_state()).records() == ref.records()  # the checkpoint as before
    assert Quarantine().merge(a).records() == ref.records()


def test_quarantine_of_records_with_text_fields():
    """Records with a text field keep it as truncated variable-length text (the per-column path)."""
    recs = np.zeros(2, dtype=[("name", "U2000"), ("v", "f8")])
    recs["name"] = ["x" * 1500, "ok"]
    q = Quarantine()
    q.add("user", np.arange(2), np.full(2, 1, np.int8), np.array(["name", "v"], dtype=object), recs)
    orig = [r["original"] for r in q.records()]
    assert orig[0]["name"] == truncate("x" * 1500) and orig[1] == {"name": "ok", "v": "0.0"}


def test_quarantine_records_errors():
    q = Quarantine()
    one = np.ones(1, np.int8)
    with pytest.raises(ValueError, match="structured"):
        q.add("qos", np.arange(1), one, np.array(["a"], dtype=object), np.zeros(1))
    with pytest.raises(ValueError, match="same length"):
        q.add("qos", np.arange(1), one, np.array(["a"], dtype=object), empty("qos", 2))
    assert len(q) == 0


@pytest.mark.parametrize(
    "values",
    [
        ["bytes", "ts_ms"] * 5,
        ["x" * 300, "a"],
        [1, "a", None, 2.5],
        [["unhashable"], "a"],
        [],
        [np.str_("numpy text"), "a"],
    ],
)
def test_field_names_as_truncate_str(values):
    f = np.empty(len(values), dtype=object)
    f[:] = values
    got = _field_names(f)
    assert got.dtype == object
    assert got.tolist() == [truncate(str(x), 200) for x in values]
    assert all(type(x) is str for x in got.tolist())


def test_ingest_quarantines_records_from_arrays_and_dicts_alike():
    """The quarantine of an ingest of canonical records equals that of the same rows given as a
    dict of columns (which takes the per-column path), and accepted_rows are the input rows
    that passed."""
    rng = np.random.default_rng(5)
    a = _records("qos", 40, rng)
    a["latency_ms"][[3, 17]] = -5.0
    a["mos"][[20]] = 9.0
    a[30] = a[29]  # a duplicate (same element and time)
    ia, idict = Ingestor("qos"), Ingestor("qos")
    ra = ia.ingest(a)
    rd = idict.ingest({f: a[f] for f in a.dtype.names})
    assert ra.by_reason == rd.by_reason == {"out_of_domain": 3, "duplicate_id": 1}
    assert ia.quarantine.records() == idict.quarantine.records()
    assert ra.accepted_rows().tolist() == [i for i in range(40) if i not in (3, 17, 20, 30)]
    assert rd.accepted_rows().tolist() == ra.accepted_rows().tolist()


def test_id_set_grows_four_times_while_small(monkeypatch):
    """Below EAGER_GROWTH_SLOTS a generation's table grows at least 4x (never beyond that size
    by this rule), and the decisions equal those of plain doubling and of a Python set."""
    from telcoanalytics.ingest.dedup import DedupSet

    rng = np.random.default_rng(11)
    keys = rng.integers(0, 3000, 6000).astype(np.int64)
    eager = DedupSet(None, initial_capacity=16)
    sizes = []
    dups = []
    for i in range(0, len(keys), 250):
        dups.append(eager.check_insert(keys[i : i + 250], np.ones(250, bool)))
        if not sizes or sizes[-1] != len(eager.cur):
            sizes.append(len(eager.cur))
    assert sizes[0] == 512 and len(sizes) >= 3  # (the first batch needs 512 slots at load <= 0.7)
    assert all(b == 4 * a for a, b in zip(sizes, sizes[1:]))
    seen, ref = set(), []
    for k in keys.tolist():
        ref.append(k in seen)
        seen.add(k)
    assert np.concatenate(dups).tolist() == ref
    monkeypatch.setattr(DedupSet, "EAGER_GROWTH_SLOTS", 0)
    plain = DedupSet(None, initial_capacity=16)
    got = [plain.check_insert(keys[i : i + 250], np.ones(250, bool)) for i in range(0, len(keys), 250)]
    assert np.concatenate(got).tolist() == ref
    assert len(plain.cur) <= len(eager.cur)
    monkeypatch.setattr(DedupSet, "EAGER_GROWTH_SLOTS", 64)
    capped = DedupSet(None, initial_capacity=16)
    capped.check_insert(np.arange(40, dtype=np.int64), np.ones(40, bool))  # needs 64 slots: 16 -> 64
    assert len(capped.cur) == 64
    capped.check_insert(np.arange(40, 60, dtype=np.int64), np.ones(20, bool))  # past the cap: doubling
    assert len(capped.cur) == 128
