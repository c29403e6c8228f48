"""One ring kernel and one natural-key kernel serve equipment counters, flows and QoS probes: the key
each record type gets, and a clear error for a record type without a key by event time."""

import numpy as np
import pytest

from kernels.dedup import natural_key_hash, natural_keys, row_key
from kernels.dedup_batch import ring_dedup, ring_dedup_equip, ring_dedup_flow, ring_dedup_qos
from telcoanalytics.ingest.ingestor import Ingestor
from telcoanalytics.records import NATURAL_KEY, empty

T0 = 1_700_000_000_000


def _rows(source: str, n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = empty(source, n)
    for f in NATURAL_KEY[source]:
        a[f] = rng.integers(0, 4, n) if f != "ts_ms" else T0 + 60_000 * rng.integers(0, 3, n)
    return a


@pytest.mark.parametrize("source", ["equip", "flow", "qos"])
def test_natural_keys_are_the_hash_of_the_key_fields(source):
    a = _rows(source, 200)
    cols = [a[f].astype(np.int64) for f in NATURAL_KEY[source]]
    if len(cols) == 2:
        cols.append(np.zeros(len(a), np.int64))
    want = np.empty(len(a), np.int64)
    got = np.empty(len(a), np.int64)
    with np.errstate(over="ignore"):
        natural_key_hash(cols[0], cols[1], cols[2], want)
        natural_keys(a, got)
        one = row_key(a[5])
    assert np.array_equal(got, want) and one == want[5]
    # equal keys exactly when the key fields are equal (a Python reference)
    tuples = [tuple(int(r[f]) for f in NATURAL_KEY[source]) for r in a]
    assert len(set(tuples)) == len(set(got.tolist())) < len(a)


@pytest.mark.parametrize("source", ["equip", "flow", "qos"])
def test_one_ring_kernel_marks_what_a_python_set_marks(source):
    assert ring_dedup_equip is ring_dedup_flow is ring_dedup_qos is ring_dedup
    a = _rows(source, 500, seed=11)
    ing = Ingestor(source)
    r = ing.ingest(a)
    seen, dup = set(), 0
    for row in a:
        k = tuple(int(row[f]) for f in NATURAL_KEY[source])
        dup += k in seen
        seen.add(k)
    assert dup > 0 and r.by_reason.get("duplicate_id", 0) == dup and r.n_accepted == len(seen)


def test_a_record_type_without_a_key_by_time_is_refused():
    cdr = empty("cdr", 2)
    with pytest.raises(Exception, match="no natural key by event time"):
        natural_keys(cdr, np.empty(2, np.int64))


@pytest.mark.parametrize("source", ["cdr", "complaint"])
def test_one_id_kernel_marks_what_a_python_set_marks(source):
    from kernels.dedup import id_times, row_id
    from kernels.dedup_batch import idset_dedup, idset_dedup_cdr, idset_dedup_complaint

    assert idset_dedup_cdr is idset_dedup_complaint is idset_dedup
    key, tf = {"cdr": ("record_id", "start_ms"), "complaint": ("complaint_id", "ts_ms")}[source]
    rng = np.random.default_rng(5)
    a = empty(source, 400)
    a[key] = rng.integers(0, 150, len(a))
    assert row_id(a[7]) == a[key][7] and np.array_equal(id_times(a), a[tf])
    ing = Ingestor(source)
    ids = a[key]
    dup = len(ids) - len(set(ids.tolist()))
    codes = np.zeros(len(a), np.int8)
    fields = np.zeros(len(a), np.int8)
    ing.dedup.check_rows(a, idset_dedup, ing._dedup_clock, (9, 2), codes, fields)
    first = {}
    for i, k in enumerate(ids.tolist()):
        first.setdefault(k, i)
    want = np.array([first[k] != i for i, k in enumerate(ids.tolist())])
    assert dup > 0 and np.array_equal(codes == 9, want) and np.all(fields[want] == 2)


def test_a_record_type_without_an_id_key_is_refused():
    from kernels.dedup import row_id

    with pytest.raises(Exception, match="no id key"):
        row_id(empty("equip", 1)[0])
