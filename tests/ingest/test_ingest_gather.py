"""The clean-ingest speed-ups keep every decision: natural keys hashed block by block, the kept rows
gathered by the duplicate check as it decides them, and large calls of a steady feed that skip the
pass over their times. References: the key hash of the fields, NumPy boolean indexing, a plain
Python set of natural keys, and the same calls with the pass forced."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.dedup import KEY_BLOCK, natural_key_hash, natural_keys
from kernels.dedup_batch import ring_dedup_compact, valid_ends
from telcoanalytics.ingest.dedup import DedupClock, TimeBucketKeySet
from telcoanalytics.ingest.ingestor import Ingestor
from telcoanalytics.records import NATURAL_KEY, empty
from telcoanalytics.topology.model import Topology

T0 = 1_700_000_000_000
H = 2 * 3_600_000
IDS = 5000 + 3 * np.arange(64, dtype=np.int64)


def _topology():
    return Topology.from_columns(IDS, {"region": np.arange(len(IDS)) // 16, "site": np.arange(len(IDS)) // 4})


def _rows(source: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = empty(source, n)
    a["ts_ms"] = T0 + np.sort(rng.integers(0, 3_600_000, n))
    if source == "equip":
        a["element_id"] = IDS[rng.integers(0, len(IDS), n)]
        a["metric_id"] = rng.integers(0, 3, n)
        a["value"] = rng.random(n)
    elif source == "flow":
        a["src_element_id"] = IDS[rng.integers(0, len(IDS), n)]
        a["dst_element_id"] = IDS[rng.integers(0, len(IDS), n)]
        a["bytes"] = rng.integers(0, 1000, n)
        a["flows"] = 1
    else:
        a["element_id"] = IDS[rng.integers(0, len(IDS), n)]
        a["latency_ms"] = 10.0
        a["mos"] = 4.0
    return a


@pytest.mark.parametrize("source", ["equip", "flow", "qos"])
@pytest.mark.parametrize("n", [1, KEY_BLOCK - 1, KEY_BLOCK, 3 * KEY_BLOCK + 7])
def test_block_keys_are_the_hash_of_the_fields(source, n):
    a = _rows(source, 2 * n, seed=n)[::2]  # a strided view too
    cols = [a[f].astype(np.int64) for f in NATURAL_KEY[source]]
    if len(cols) == 2:
        cols.append(np.zeros(len(a), np.int64))
    want = np.empty(len(a), np.int64)
    got = np.empty(len(a), np.int64)
    with np.errstate(over="ignore"):
        natural_key_hash(cols[0], cols[1], cols[2], want)
        natural_keys(a, got)
    assert np.array_equal(got, want)


@given(
    t=st.lists(st.integers(0, 50), min_size=0, max_size=30),
    bad=st.lists(st.booleans(), min_size=30, max_size=30),
)
def test_valid_ends_match_numpy(t, bad):
    t = np.array(t, dtype=np.int64)
    code = np.array(bad[: len(t)], dtype=np.int8)
    out = np.zeros(2, np.int64)
    ok = np.flatnonzero(code == 0)
    assert valid_ends(t, code, out) == (len(ok) > 0)
    if len(ok):
        assert out.tolist() == [t[ok[0]], t[ok[-1]]]


def _keys(rows):
    out = np.empty(len(rows), np.int64)
    with np.errstate(over="ignore"):
        natural_keys(rows, out)
    return out


def _gather(rows, pre_bad, eidx, key_set=None, clock=None):
    """One batch through ring_dedup_compact, as ``TimeBucketKeySet.check_rows`` drives it."""
    s = key_set if key_set is not None else TimeBucketKeySet(H)
    clock = clock if clock is not None else DedupClock()
    code = pre_bad.astype(np.int8).copy()
    fld = np.full(len(rows), -1, np.int8)
    acc = np.empty(len(rows), rows.dtype)
    acc_eidx = None if eidx is None else np.empty(len(rows), np.int64)
    with np.errstate(over="ignore"):
        s.check_rows(rows, ring_dedup_compact, clock, (9, 3), code, fld, _keys, (eidx, acc, acc_eidx))
    return s, code, acc, acc_eidx


@settings(deadline=None, max_examples=60)
@given(
    source=st.sampled_from(["equip", "flow", "qos"]),
    n=st.integers(1, 700),
    n_dup=st.integers(0, 40),
    n_bad=st.integers(0, 5),
    with_idx=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_gathered_rows_are_the_kept_rows(source, n, n_dup, n_bad, with_idx, seed):
    rng = np.random.default_rng(seed)
    a = _rows(source, n, seed)
    if n_dup:  # copies of earlier rows, in place of later ones (a duplicate may be the first rejection)
        src = rng.integers(0, n, n_dup)
        dst = np.maximum(src, rng.integers(0, n, n_dup))
        a[dst] = a[src]
    pre = np.zeros(n, bool)
    pre[rng.integers(0, n, n_bad)] = True
    eidx = np.arange(n, dtype=np.int64) * 7 if with_idx else None
    s, code, acc, acc_eidx = _gather(a, pre, eidx)
    # reference: a Python set of natural keys over the rows not rejected before
    seen, keep = set(), np.zeros(n, bool)
    for i, r in enumerate(a):
        k = tuple(int(r[f]) for f in NATURAL_KEY[source])
        if not pre[i] and k not in seen:
            seen.add(k)
            keep[i] = True
    assert np.array_equal(code == 0, keep)
    if pre.all():  # no row to check: nothing gathered, the caller compacts
        assert s.kept is None
    elif keep.all():
        assert s.kept == -1
    else:
        assert s.kept == int(keep.sum())
        assert acc[: s.kept].tobytes() == a[keep].tobytes()
        if with_idx:
            assert np.array_equal(acc_eidx[: s.kept], eidx[keep])


def test_gathering_resumes_where_a_full_bucket_stopped():
    """A batch that fills its bucket's table (the kernel stops, the table grows, it resumes) after
    its first rejection: the gathered rows are still the kept rows."""
    a = _rows("equip", 5000, seed=4)
    a["ts_ms"] = T0 + np.arange(len(a))  # one bucket
    a["element_id"] = 5000 + np.arange(len(a))  # distinct keys
    a[3] = a[1]  # the first rejection, early
    s = TimeBucketKeySet(H)
    assert s.tables.shape[1] < len(a)  # the first table is far too small: several stops
    eidx = np.arange(len(a), dtype=np.int64)
    s, code, acc, acc_eidx = _gather(a, np.zeros(len(a), bool), eidx, s)
    keep = np.ones(len(a), bool)
    keep[3] = False
    assert np.array_equal(code == 0, keep) and s.kept == len(a) - 1
    assert acc[: s.kept].tobytes() == a[keep].tobytes() and np.array_equal(acc_eidx[: s.kept], eidx[keep])


def test_rows_outside_the_ring_leave_the_gathering_to_the_caller():
    s, clock = TimeBucketKeySet(H), DedupClock()
    first = _rows("qos", 50, seed=1)
    _gather(first, np.zeros(50, bool), None, s, clock)
    assert s.kept == -1  # every row kept: nothing gathered, the batch is the answer
    old = _rows("qos", 20, seed=2)
    old["ts_ms"] -= 10 * H  # far behind the horizon: the side set decides them
    old[5] = old[2]
    s, code, _, _ = _gather(old, np.zeros(20, bool), None, s, clock)
    assert s.kept is None
    assert (code != 0).sum() == 1 and code[5] != 0


@pytest.mark.parametrize("source", ["equip", "flow", "qos"])
@pytest.mark.parametrize("batch", [20_000, 777])
def test_steady_batches_skip_the_pass_and_decide_the_same(monkeypatch, source, batch):
    """Large calls whose first and last rows are within the horizon skip the pass over their times
    once the tables are sized: the decisions (accepted rows, element indices, reasons) equal those
    of the same calls with the pass forced, over hours with copies spread through them and copies
    far behind the clock at the end. (Rows dated ahead of the ring send a batch to the separate
    steps, without the pass.)"""
    rng = np.random.default_rng(7)
    n = 120_000
    a = empty(source, n)
    a["ts_ms"] = T0 + np.sort(rng.integers(0, 6 * 3_600_000, n))  # a batch of 20,000 spans 1 h
    el = IDS[rng.integers(0, len(IDS), n)]
    if source == "flow":
        a["src_element_id"] = el
        a["dst_element_id"] = IDS[rng.integers(0, len(IDS), n)]
        a["flows"] = 1
    else:
        a["element_id"] = el
        if source == "equip":
            a["metric_id"] = rng.integers(0, 3, n)
        else:
            a["latency_ms"] = 5.0
            a["mos"] = 4.0
    late = rng.integers(0, n, 3000)
    a = np.concatenate([a, a[late]])  # copies, many far behind the clock at the end
    pos = rng.permutation(len(a))[:2000]
    a[pos] = a[rng.integers(0, len(a), 2000)]  # copies spread through the hours
    topo = _topology()
    calls = {"skipped": 0}
    real = TimeBucketKeySet._sized_for

    def counting(self, **kw):
        r = real(self, **kw)
        calls["skipped"] += r
        return r

    def results(force_pass: bool):
        monkeypatch.setattr(TimeBucketKeySet, "_sized_for", (lambda self, **kw: False) if force_pass else counting)
        ing = Ingestor(source, topology=topo)
        out = []
        for i in range(0, len(a), batch):
            r = ing.ingest(a[i : i + batch])
            out.append((r.accepted.tobytes(), r.element_index.tobytes(), r.by_reason, r.accepted_rows().tobytes()))
        return out, ing.by_reason

    got, got_by = results(False)
    want, want_by = results(True)
    assert got == want and got_by == want_by
    assert got_by.get("duplicate_id", 0) > 1000
    if batch >= TimeBucketKeySet.LARGE_CALL:
        assert calls["skipped"] > 0


@settings(deadline=None, max_examples=60)
@given(
    source=st.sampled_from(["equip", "flow", "qos"]),
    n=st.integers(1, 300),
    seed=st.integers(0, 2**16),
)
def test_checks_and_lookup_in_one_pass_mark_as_the_two_steps(source, n, seed):
    """``kernels.validate.*_check_route`` against the row checks followed by the lookup, and the
    element index against a dict of the topology's ids."""
    from kernels import validate as V
    from telcoanalytics.ingest import ingestor as I

    rng = np.random.default_rng(seed)
    a = _rows(source, n, seed)
    ef = "src_element_id" if source == "flow" else "element_id"
    pick = rng.random(n)
    a[ef][pick < 0.1] = 1  # below the ids
    a[ef][(pick >= 0.1) & (pick < 0.2)] = IDS[-1] + 100  # above
    a[ef][(pick >= 0.2) & (pick < 0.3)] = IDS[0] + 1  # inside the range, not an id
    bad = rng.random(n) < 0.2
    if source == "equip":
        a["value"][bad] = rng.choice([np.nan, -1.0, 1e12], int(bad.sum()))
        a["metric_id"][rng.random(n) < 0.05] = 99
    elif source == "flow":
        a["bytes"][bad] = rng.choice([-1, 2**62], int(bad.sum()))
    else:
        a["latency_ms"][bad] = rng.choice([np.inf, -3.0, 1e9], int(bad.sum()))
    a["ts_ms"][rng.random(n) < 0.05] = 5
    pre = rng.random(n) < 0.1  # rows rejected before (parse failures)
    lookup = I._ElementLookup(IDS, np.arange(len(IDS), dtype=np.int64))
    lo, hi = I.DEFAULT_TIME_RANGE_MS
    args = I._route_limits(source, lo, hi)
    want_code = np.where(pre, 1, 0).astype(np.int8)
    want_field = np.full(n, -1, np.int8)
    got_code, got_field = want_code.copy(), want_field.copy()
    I._row_checks(source, a, lo, hi, False, type("S", (), {"code": want_code, "field": want_field})())
    want_idx = np.empty(n, np.int64)
    V.lookup_mark_unknown(a[ef], lookup.lut_small, *lookup.id_range, want_idx, 42, want_code, want_field, 17)
    got_idx = np.empty(n, np.int64)
    route = np.array([*lookup.id_range, 42, 17], np.int64)
    I._ROUTE_CHECKS[source](a, *args, got_code, got_field, lookup.lut_small, route, got_idx)
    assert np.array_equal(got_code, want_code) and np.array_equal(got_field, want_field)
    pos = {int(x): k for k, x in enumerate(IDS)}
    assert [pos.get(int(x), -1) for x in a[ef]] == got_idx.tolist()
