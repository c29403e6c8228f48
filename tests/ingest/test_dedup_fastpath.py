"""The per-key recent-time fast path of the duplicate check (``kernels.dedup_batch.ring_dedup_fast``:
a row newer than every key of its element (and metric) held is accepted without a probe) decides
exactly as the separate steps (clock, key array, key set: no fast path) and soundly against a plain
Python set of natural keys: rows in order and out of order, duplicates, rows late, ahead of the
clock and corrupt, checkpoints and topology changes in between, calls without the element index."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.dedup import EMPTY
from kernels.dedup_batch import G_FLOOR
from telcoanalytics.ingest.dedup import DedupClock, TimeBucketKeySet
from telcoanalytics.ingest.ingestor import Ingestor
from telcoanalytics.records import NATURAL_KEY
from telcoanalytics.topology.model import Topology
from tests.ingest.test_dedup_sources import T0, rows

H = 2 * 3_600_000
N_EL = 6
SOURCES = ("equip", "flow", "qos")
ELEMENT = {"equip": "element_id", "flow": "src_element_id", "qos": "element_id"}


def _topology(ids) -> Topology:
    ids = np.asarray(ids, np.int64)
    return Topology.from_columns(ids, {"region": np.zeros(len(ids), np.int64), "site": np.arange(len(ids))})


# one row: (element 0..N_EL (N_EL: not in the topology), metric 0..2, seconds from the batch's
# clock -9000..+9000 (beyond the 2 h horizon either way), corrupt?)
ROW = st.tuples(st.integers(0, N_EL), st.integers(0, 2), st.integers(-9000, 9000), st.booleans())
# a batch: (seconds the clock moves, in-order rows per element, out-of-order rows, repeat k earlier
# rows, checkpoint before?, drop the element index?, new topology?)
BATCH = st.tuples(
    st.integers(0, 1800),
    st.integers(0, 12),
    st.lists(ROW, max_size=12),
    st.integers(0, 8),
    st.booleans(),
    st.integers(0, 5),
    st.integers(0, 6),
)


def _rows(source: str, spec) -> np.ndarray:
    """Rows of ``source`` from (element, metric, time, corrupt) tuples."""
    a = rows(source, len(spec))
    el = np.array([1000 + e for e, _, _, _ in spec], np.int64)
    t = np.array([t for _, _, t, _ in spec], np.int64)
    bad = np.array([b for _, _, _, b in spec], bool) & (np.arange(len(spec)) % 4 == 1)
    a["ts_ms"] = t
    if source == "equip":
        a["element_id"] = el
        a["metric_id"] = [m for _, m, _, _ in spec]
        a["value"][bad] = np.nan
    elif source == "flow":
        a["src_element_id"] = el
        a["dst_element_id"] = 2000 + np.array([m for _, m, _, _ in spec])
        a["bytes"][bad] = -1
    else:
        a["element_id"] = el
        a["latency_ms"][bad] = np.inf
    return a


@settings(deadline=None, max_examples=60)
@given(source=st.sampled_from(SOURCES), batches=st.lists(BATCH, max_size=12), seed=st.integers(0, 2**16))
def test_fast_path_decides_as_the_separate_steps_and_a_python_set(source, batches, seed):
    rng = np.random.default_rng(seed)
    topo = _topology(1000 + np.arange(N_EL))
    fast, steps = Ingestor(source, topology=topo), Ingestor(source, topology=topo)
    steps.fused_dedup = False
    seen: set = set()
    sent: list = []
    clock = T0
    key_fields = NATURAL_KEY[source]
    newest = {}  # newest time per (element, metric) sent in order
    for advance, per_el, late, repeat, ckpt, drop, new_topo in batches:
        if ckpt:  # a checkpoint: both go on from their restored states
            fast = Ingestor.from_state(fast.to_state(), topology=fast.topology)
            steps = Ingestor.from_state(steps.to_state(), topology=steps.topology)
            steps.fused_dedup = False
        if new_topo == 0:  # elements added (and the dense index reordered): the per-key state starts over
            ids = np.r_[1000 + np.arange(N_EL), rng.integers(5000, 6000, 3)]
            fast.topology = steps.topology = _topology(rng.permutation(np.unique(ids)))
        clock += advance * 1000
        spec = []
        for e in range(N_EL):  # rows in time order per element and metric (some at the same ms)
            for _ in range(per_el):
                m = int(rng.integers(0, 3))
                t = max(newest.get((e, m), clock - 600_000), clock - 600_000) + int(rng.integers(0, 3)) * 1000
                newest[(e, m)] = t
                spec.append((e, m, t, False))
        spec += [(e, m, clock + s * 1000, b) for e, m, s, b in late]
        if sent and repeat:
            spec += [sent[int(i)] for i in rng.integers(0, len(sent), repeat)]
        order = rng.permutation(len(spec)) if seed % 3 == 0 else np.arange(len(spec))
        spec = [spec[int(i)] for i in order]
        sent += spec
        a = _rows(source, spec)
        if drop == 0:  # a call without the element index (no fast path): the state follows it
            r1 = _ingest_without_index(fast, a)
        else:
            r1 = fast.ingest(a)
        r2 = steps.ingest(a.copy())
        assert r1.by_reason == r2.by_reason
        assert r1.accepted.tobytes() == r2.accepted.tobytes()
        acc = set(r1.accepted_rows().tolist())
        n_dup = 0
        for i, x in enumerate(a):
            k = tuple(int(x[f]) for f in key_fields)
            if i in acc:
                seen.add(k)
            elif not _corrupt(source, x) and int(x[ELEMENT[source]]) < 1000 + N_EL:
                assert k in seen  # sound: a row marked a duplicate has a key accepted before
                n_dup += 1
        assert n_dup == r1.by_reason.get("duplicate_id", 0)
        again = fast.ingest(r1.accepted.copy())  # delivered again at once: duplicates within the horizon
        steps.ingest(r1.accepted.copy())
        now = fast._dedup_clock.now_ms
        if now is not None:
            t = r1.accepted["ts_ms"]
            within = int(((t >= now - H + 300_000) & (t <= now + H - 300_000)).sum())
            assert again.by_reason.get("duplicate_id", 0) >= within
    assert fast.n_accepted == steps.n_accepted and fast.by_reason == steps.by_reason


def _ingest_without_index(ing: Ingestor, a: np.ndarray):
    """One batch through the one-call path without the element index (``ring_dedup``)."""
    orig = ing._check_elements

    def no_index(data, st_):
        out = orig(data, st_)
        ing._dedup_index = None
        return out

    ing._check_elements = no_index
    try:
        return ing.ingest(a)
    finally:
        del ing._check_elements


def _corrupt(source: str, x) -> bool:
    if source == "equip":
        return bool(np.isnan(x["value"]))
    if source == "flow":
        return int(x["bytes"]) < 0
    return bool(np.isinf(x["latency_ms"]))


@pytest.mark.parametrize("source", SOURCES)
def test_rows_in_order_take_the_fast_path_and_decide_as_a_set(source, rng):
    """A day of rows in time order per element (10k rows, 100k-row and 700-row batches): no probe
    for the rows in order (their keys wait in the buckets' logs), a late copy of any of them is
    caught (the bucket's log moves into its table first), as by the separate steps."""
    n = 10_000
    ids = 1000 + np.arange(50)
    topo = _topology(ids)
    a = rows(source, n)
    a["ts_ms"] = T0 + np.sort(rng.integers(0, 6 * 3_600_000, n))
    el = ids[rng.integers(0, len(ids), n)]
    if source == "flow":
        a["src_element_id"] = el
        a["dst_element_id"] = rng.integers(0, 10**6, n)
    else:
        a["element_id"] = el
    if source == "equip":
        a["metric_id"] = rng.integers(0, 6, n)
    fast, steps = Ingestor(source, topology=topo), Ingestor(source, topology=topo)
    steps.fused_dedup = False
    for i in range(0, n, 700):
        r1, r2 = fast.ingest(a[i : i + 700]), steps.ingest(a[i : i + 700].copy())
        assert r1.by_reason == r2.by_reason and r1.accepted.tobytes() == r2.accepted.tobytes()
    d = fast.dedup
    assert int(d.nlog.sum()) > 0 and (d.fast_last != EMPTY).any()  # rows were accepted without a probe
    key = [a[f].astype(np.int64) for f in NATURAL_KEY[source]]
    distinct = len({tuple(x) for x in zip(*key, strict=True)})
    assert fast.n_accepted == distinct
    tail = a[-3000:][rng.permutation(3000)[:400]]  # late copies, out of order
    r1, r2 = fast.ingest(tail), steps.ingest(tail.copy())
    assert r1.by_reason == r2.by_reason == {"duplicate_id": 400}
    # a checkpoint: the per-key state starts over (rows up to the newest bucket held probe)
    back = Ingestor.from_state(fast.to_state(), topology=topo)
    assert back.dedup.fast_last.size == 0
    nxt = a[-50:].copy()
    nxt["ts_ms"] += 60_000
    r1 = back.ingest(nxt)
    assert r1.by_reason == steps.ingest(nxt.copy()).by_reason
    assert back.dedup.geo[G_FLOOR] >= int(a["ts_ms"].max())
    assert back.ingest(nxt).by_reason == {"duplicate_id": 50}


def test_a_bucket_that_fills_with_rows_in_order_grows_as_before():
    """Rows in order filling one bucket: the table grows at the same count (the log counts), and
    the keys of the log are in the grown table (a late copy is caught)."""
    topo = _topology(1000 + np.arange(2000))
    fast, steps = Ingestor("qos", topology=topo), Ingestor("qos", topology=topo)
    steps.fused_dedup = False
    plain = Ingestor("qos")  # one call per batch without the element index (no fast path)
    a = rows("qos", 2000)
    a["ts_ms"] = T0 + np.arange(2000) * 10  # one 5-min bucket
    a["element_id"] = 1000 + np.arange(2000)
    for part in (a[:5], a[5:1500], a[1500:]):
        r1, r2 = fast.ingest(part), steps.ingest(part.copy())
        assert r1.by_reason == r2.by_reason == plain.ingest(part.copy()).by_reason == {}
        assert fast.dedup.tables.shape == plain.dedup.tables.shape
    again = a[::7]
    assert fast.ingest(again).by_reason == steps.ingest(again.copy()).by_reason == {"duplicate_id": len(again)}


def test_key_set_direct_calls_mixed_with_the_separate_steps(rng):
    """``TimeBucketKeySet`` called with and without the element index and through ``check_insert``
    (keys put in another way raise the floor: the fast path never accepts a key held)."""
    from kernels.dedup import natural_keys
    from kernels.dedup_batch import ring_dedup

    s = TimeBucketKeySet(H)
    clock = DedupClock()
    a = rows("qos", 60)
    a["element_id"] = 1000 + np.arange(60) % 6
    a["ts_ms"] = T0 + np.arange(60) * 1000
    eidx = (a["element_id"] - 1000).astype(np.int64)
    keys = np.empty(60, np.int64)
    with np.errstate(over="ignore"):
        natural_keys(a, keys)

    def keys_of(r):
        out = np.empty(len(r), np.int64)
        with np.errstate(over="ignore"):
            natural_keys(r, out)
        return out

    def call(part, idx, token):
        code, fld = np.zeros(len(part), np.int8), np.zeros(len(part), np.int8)
        with np.errstate(over="ignore"):
            s.check_rows(part, ring_dedup, clock, (9, 1), code, fld, keys_of, idx, (6, token))
        return code

    assert not call(a[:20], eidx[:20], 1).any()
    # the next rows go in by the separate steps (keys with times up to row 39)
    dup = s.check_insert(
        keys[20:40], a["ts_ms"][20:40], np.ones(20, bool), clock.observe(a["ts_ms"][20:40], np.ones(20, bool))
    )
    assert not dup.any() and s.geo[G_FLOOR] == a["ts_ms"][39]
    # the same rows again with the index: every one caught (they probe: not above the floor)
    assert (call(a[:40], eidx[:40], 1) == 9).all()
    assert not call(a[40:50], None, None).any()  # without the index: the per-key state is dropped
    assert s._fast_token is None
    assert (call(a[:50], eidx[:50], 2) == 9).all()
    assert not call(a[50:], eidx[50:], 2).any()
    assert (call(a, eidx, 2) == 9).all()
    assert len(s) == 60


def test_a_day_in_one_call_with_the_element_index_decides_as_the_steps(rng):
    """A whole day in one array (copies of early rows at the end) and a batch with no valid row
    before the clock: with the element index, buckets behind the horizon kept for the call, the
    same decisions as the separate steps and a set."""
    n = 30_000
    ids = 1000 + np.arange(300)
    topo = _topology(ids)
    fast, steps = Ingestor("equip", topology=topo), Ingestor("equip", topology=topo)
    steps.fused_dedup = False
    bad = rows("equip", 3)
    bad["value"] = np.nan
    assert fast.ingest(bad).by_reason == steps.ingest(bad.copy()).by_reason == {"non_finite": 3}
    a = rows("equip", n)
    a["ts_ms"] = np.sort(T0 + rng.integers(0, 86_400_000, n) // 1000 * 1000)
    a["element_id"] = ids[rng.integers(0, len(ids), n)]
    a["metric_id"] = rng.integers(0, 6, n)
    a = np.concatenate([a, a[rng.integers(0, n // 4, 300)]])  # early rows again, at the end
    r1, r2 = fast.ingest(a), steps.ingest(a.copy())
    assert r1.by_reason == r2.by_reason
    assert r1.accepted.tobytes() == r2.accepted.tobytes()
    keys = {(int(x["element_id"]), int(x["metric_id"]), int(x["ts_ms"])) for x in a}
    assert r1.n_accepted == len(keys)


_U = (1 << 64) - 1
_K1, _K2, _K3 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _unfmix(x: int) -> int:
    """The inverse of splitmix64's finaliser (``kernels.dedup._fmix64``), on Python ints."""
    x ^= (x >> 31) ^ (x >> 62)
    x = (x * pow(_K3, -1, 1 << 64)) & _U
    x ^= (x >> 27) ^ (x >> 54)
    x = (x * pow(_K2, -1, 1 << 64)) & _U
    x ^= (x >> 30) ^ (x >> 60)
    return x


def test_a_key_hashing_to_the_empty_slot_marker_through_the_fast_path():
    """A QoS probe whose natural key hashes to the empty-slot value (an element id solved for
    it): accepted through the bucket's log, held by the bucket's flag when the log moves into the
    table, and its copies are duplicates; as the separate steps decide."""
    from kernels.dedup import natural_key_hash

    t = T0 + 7_000
    h2 = _unfmix(1 << 63) ^ _K3  # _mix3(a, t, 0) == 2**63 (EMPTY as int64)
    h1 = _unfmix(h2) ^ ((t * _K1 + _K2) & _U)
    a_id = (_unfmix(h1) - _K1) & _U
    a_id = a_id - (1 << 64) if a_id >= 1 << 63 else a_id
    out = np.empty(1, np.int64)
    with np.errstate(over="ignore"):
        natural_key_hash(np.array([a_id]), np.array([t]), np.zeros(1, np.int64), out)
    assert out[0] == EMPTY
    ids = np.array([a_id, 1000, 1001], np.int64)
    topo = _topology(ids)
    fast, steps = Ingestor("qos", topology=topo), Ingestor("qos", topology=topo)
    steps.fused_dedup = False
    a = rows("qos", 12)
    a["element_id"] = [1000, 1001] * 6
    a["ts_ms"] = T0 + np.arange(12) * 1000
    b = rows("qos", 4)
    b["element_id"] = [a_id, 1000, a_id, a_id]
    b["ts_ms"] = [t, T0, t, t + 1000]  # the marker key in order, a late row (the log moves), copies
    for part in (a, b, b[:1], b[2:]):
        r1, r2 = fast.ingest(part), steps.ingest(part.copy())
        assert r1.by_reason == r2.by_reason
        assert r1.accepted.tobytes() == r2.accepted.tobytes()
    assert fast.n_accepted == steps.n_accepted == 14


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
