"""Key sets per event-time bucket (``ingest.dedup.TimeBucketKeySet``) against a plain Python set."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.dedup import EMPTY
from telcoanalytics.ingest.dedup import DedupSet, TimeBucketKeySet
from tests.reference.ingest import reference_dedup

H = 3_600_000  # horizon of the tests: 1 h, buckets of 150 s
T0 = 1_700_000_000_000


def _key(ident: int, t: int) -> int:
    """A key that contains its event time (as the natural keys of measurements do)."""
    return (ident << 42) ^ (t - T0)


ROWS = st.lists(st.tuples(st.integers(0, 30), st.integers(0, H - 1)), max_size=60)


@settings(deadline=None, max_examples=60)
@given(batches=st.lists(ROWS, max_size=8), seed=st.integers(0, 2**32 - 1))
def test_within_the_horizon_equals_a_python_set(batches, seed):
    """Every row within the horizon of the clock: exactly the duplicates a set that never forgets finds."""
    s = TimeBucketKeySet(H)
    rng = np.random.default_rng(seed)
    seen: set = set()
    for rows in batches:
        keys = np.array([_key(i, T0 + t) for i, t in rows], dtype=np.int64)
        t = np.array([T0 + t for _, t in rows], dtype=np.int64)
        active = rng.random(len(rows)) < 0.9
        ref = reference_dedup(keys, active)  # duplicates inside the batch
        ref = [a and (r or int(k) in seen) for k, a, r in zip(keys, active, ref)]
        dup = s.check_insert(keys, t, active, clock_ms=T0 + H // 2)
        assert dup.tolist() == ref
        seen.update(int(k) for k, a in zip(keys, active) if a)
    assert len(s) == len(seen)


@settings(deadline=None, max_examples=60)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 3 * H), st.lists(st.tuples(st.integers(0, 20), st.integers(-2 * H, H)), max_size=40)),
        max_size=10,
    )
)
def test_over_several_horizons_no_false_duplicate_and_none_missed_within(steps):
    """The clock moves on over hours; rows are late, on time and ahead of it. A duplicate is only
    reported for a key seen before, and always when its event time is within the horizon behind
    the clock (or its first copy came less than a horizon of clock ago)."""
    s = TimeBucketKeySet(H)
    clock = T0
    first_seen: dict = {}  # key -> clock when first inserted
    for advance, rows in steps:
        clock += advance
        t = np.array([clock + dt for _, dt in rows], dtype=np.int64)
        keys = np.array([_key(i, int(x)) for (i, _), x in zip(rows, t)], dtype=np.int64)
        dup = s.check_insert(keys, t, np.ones(len(rows), bool), clock_ms=clock).tolist()
        batch: set = set()
        for k, x, d in zip(keys.tolist(), t.tolist(), dup):
            before = k in first_seen or k in batch
            if d:
                assert before, "a key reported as a duplicate was never inserted"
            elif before:
                in_batch = k in batch
                recent = k in first_seen and clock - first_seen[k] < H
                within = x >= clock - H
                assert not (in_batch or recent or within), "a duplicate within the horizon was missed"
            batch.add(k)
        for k in batch:
            first_seen.setdefault(k, clock)
        # memory: the ring's live buckets cover about two horizons (plus the rows outside it)
        assert s.tables.shape[0] <= 64


def test_state_round_trip_rows_ahead_and_min_key():
    s = TimeBucketKeySet(H)
    t = T0 + np.array([0, 1000, 5 * H, 2000])  # one row five hours ahead of the clock
    keys = np.array([EMPTY, 5, 6, 7], dtype=np.int64)
    assert not s.check_insert(keys, t, np.ones(4, bool), clock_ms=T0 + 2000).any()
    assert len(s._pend[0]) == 1  # waits outside the ring for its bucket to come within reach
    r = TimeBucketKeySet.from_state(s.to_state())
    assert r.check_insert(keys, t, np.ones(4, bool), clock_ms=T0 + 2000).all()
    # once the clock reaches it, the row ahead has moved into its bucket: still caught there
    for x in (s, r):
        assert x.check_insert(keys[2:3], t[2:3], np.ones(1, bool), clock_ms=T0 + 5 * H)[0]
        assert len(x._pend[0]) == 0
    assert not s.check_insert(keys[:0], t[:0], np.ones(0, bool)).any()
    with pytest.raises(ValueError, match="needs a horizon_ms"):
        TimeBucketKeySet(None)
    with pytest.raises(ValueError, match="bucket_ms"):
        TimeBucketKeySet(H, bucket_ms=0)


def test_one_call_spanning_a_day_then_memory_shrinks(rng):
    """A whole day in one array (the benchmark's case): every duplicate caught, the ring at its
    steady size, everything forgotten two horizons later."""
    n = 60_000
    t = np.sort(T0 + rng.integers(0, 86_400_000, n))
    keys = (rng.integers(0, 500, n) << 42) ^ (t - T0)
    dup = TimeBucketKeySet(H).check_insert(keys, t, np.ones(n, bool), clock_ms=int(t[-1]))
    ref = np.zeros(n, bool)
    _, first = np.unique(keys, return_index=True)
    ref[:] = True
    ref[first] = False
    np.testing.assert_array_equal(dup, ref)
    s = TimeBucketKeySet(H)
    s.check_insert(keys, t, np.ones(n, bool), clock_ms=int(t[-1]))
    # the ring holds the horizon's buckets; the older rows of the call went to the one-table set
    assert s.tables.shape[0] == 64
    assert len(s) == len(np.unique(keys))
    # two horizons later every key of the day is forgotten: memory is bounded
    s.check_insert(keys[-10:], t[-10:] + 3 * H, np.ones(10, bool), clock_ms=int(t[-1]) + 3 * H)
    assert len(s) <= 10


def test_legacy_one_table_checkpoint_is_still_honoured():
    """A checkpoint of the one-table design restores into the bucket set: its keys stay found."""
    from telcoanalytics.ingest.ingestor import Ingestor
    from telcoanalytics.records import empty

    a = empty("equip", 50)
    a["ts_ms"] = T0 + np.arange(50) * 1000
    a["element_id"] = 3
    ing = Ingestor("equip")
    ing.dedup = DedupSet(2 * 3_600_000)  # the former default
    assert ing.ingest(a).n_accepted == 50
    st_ = ing.to_state()
    back = Ingestor.from_state(st_)
    assert isinstance(back.dedup, TimeBucketKeySet) and back.dedup.legacy is not None
    assert back.ingest(a).by_reason == {"duplicate_id": 50}
    b = a.copy()
    b["ts_ms"] += 10 * 3_600_000  # far later: the legacy keys are forgotten
    back.ingest(b)
    assert back.dedup.legacy is None


@settings(deadline=None, max_examples=60)
@given(
    batches=st.lists(st.lists(st.tuples(st.integers(0, 10**6), st.booleans()), max_size=90), max_size=8),
)
def test_dedup_clock_follows_the_event_clock_rule(batches):
    """The compiled clock of the duplicate horizon equals EventClock fed the same valid rows."""
    from telcoanalytics.ingest.clock import EventClock
    from telcoanalytics.ingest.dedup import DedupClock

    ref, clock = EventClock(), DedupClock()
    for rows in batches:
        t = np.array([T0 + x for x, _ in rows], dtype=np.int64)
        ok = np.array([v for _, v in rows], dtype=bool)
        want = ref.observe(t[ok])
        got = clock.observe(t, ok)
        assert got == (None if want == np.iinfo(np.int64).min else want)
    with pytest.raises(ValueError, match="outliers"):
        DedupClock(window=4, outliers=4)


@pytest.mark.parametrize("source", ["equip", "flow", "qos"])
def test_row_key_kernels_equal_the_column_hash(source, rng):
    """The per-record key kernels hash exactly what natural_key_hash does on the key columns
    (keys in checkpoints stay valid)."""
    from kernels.dedup import natural_key_hash
    from telcoanalytics.ingest.ingestor import _ROW_KEYS
    from telcoanalytics.records import NATURAL_KEY, empty

    a = empty(source, 300)
    for f in NATURAL_KEY[source]:
        a[f] = rng.integers(-(2**31), 2**31, 300)
    cols = [a[f].astype(np.int64) for f in NATURAL_KEY[source]] + [np.zeros(300, np.int64)]
    want, got = np.empty(300, np.int64), np.empty(300, np.int64)
    with np.errstate(over="ignore"):
        natural_key_hash(cols[0], cols[1], cols[2], want)
        _ROW_KEYS[source](a, got)
    np.testing.assert_array_equal(got, want)
