"""Duplicate detection: the Numba hash set against a Python set, growth, horizon, state."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernels.dedup import EMPTY, hashset_contains, hashset_insert, hashset_rehash, hashset_slot
from telcoanalytics.ingest.ingestor import DedupSet
from tests.reference.ingest import reference_dedup

KEYS = st.lists(
    st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-3, 40), st.sampled_from([EMPTY, 2**63 - 1, 0, -1])),
    max_size=300,
)


@given(keys=KEYS, seed=st.integers(0, 2**32 - 1))
def test_kernel_matches_python_set(keys, seed):
    k = np.array(keys, dtype=np.int64)
    active = np.random.default_rng(seed).random(len(k)) < 0.8
    table = np.full(1 << max(4, (2 * len(k)).bit_length()), EMPTY, dtype=np.int64)
    meta = np.zeros(2, dtype=np.int64)
    dup = np.zeros(len(k), dtype=np.bool_)
    n_new = hashset_insert(k, active, table, meta, dup)
    assert dup.tolist() == reference_dedup(k, active)
    distinct = set(k[active].tolist())
    assert n_new == len(distinct) == meta[0]
    assert meta[1] == int(EMPTY in distinct)
    # every inserted key is found, absent ones are not
    probe = np.concatenate([k, np.array([12345678901, -98765], dtype=np.int64)])
    found = np.zeros(len(probe), dtype=np.bool_)
    hashset_contains(probe, np.ones(len(probe), dtype=np.bool_), table, meta, found)
    assert found.tolist() == [x in distinct for x in probe.tolist()]
    none = np.zeros(len(probe), dtype=np.bool_)
    hashset_contains(probe, np.zeros(len(probe), dtype=np.bool_), table, meta, none)
    assert not none.any()


def test_rehash_keeps_keys_and_slots_spread(rng):
    k = rng.integers(-(2**63), 2**63 - 1, 5000)
    small = np.full(1 << 14, EMPTY, dtype=np.int64)
    meta = np.zeros(2, dtype=np.int64)
    hashset_insert(k, np.ones(len(k), np.bool_), small, meta, np.zeros(len(k), np.bool_))
    big = np.full(1 << 16, EMPTY, dtype=np.int64)
    hashset_rehash(small, big)
    found = np.zeros(len(k), np.bool_)
    hashset_contains(k, np.ones(len(k), np.bool_), big, meta, found)
    assert found.all() and np.count_nonzero(big != EMPTY) == 5000
    # sequential and strided ids spread over the table (no pathological clustering)
    for keys in (np.arange(4096), np.arange(4096) << 32, np.arange(4096) << 20):
        slots = np.array([hashset_slot(int(x), (1 << 13) - 1) for x in keys])
        assert len(np.unique(slots)) > 0.6 * len(keys)


@given(batches=st.lists(st.lists(st.integers(0, 500), max_size=80), max_size=6))
def test_dedupset_lifetime_matches_python_set(batches):
    s = DedupSet(horizon_ms=None, initial_capacity=4)  # forces several doublings
    seen = set()
    for b in batches:
        k = np.array(b, dtype=np.int64)
        dup = s.check_insert(k, np.ones(len(k), dtype=np.bool_))
        ref = []
        for x in b:
            ref.append(x in seen)
            seen.add(x)
        assert dup.tolist() == ref
    assert len(s) == len(seen)
    r = DedupSet.from_state(s.to_state())
    k = np.array(sorted(seen) + [10**9], dtype=np.int64)
    assert r.check_insert(k, np.ones(len(k), np.bool_)).tolist() == [True] * len(seen) + [False]


def test_dedupset_horizon_generations():
    s = DedupSet(horizon_ms=100)
    one = np.ones(1, dtype=np.bool_)
    assert not s.check_insert(np.array([1]), one, t_max_ms=0)[0]
    assert s.check_insert(np.array([1]), one, t_max_ms=99)[0]  # same generation
    assert not s.check_insert(np.array([2]), one, t_max_ms=150)[0]  # rotates: 1 now in prev
    assert s.check_insert(np.array([1]), one, t_max_ms=150)[0]  # still found in prev
    assert not s.check_insert(np.array([3]), one, t_max_ms=260)[0]  # rotates again: 1 forgotten
    assert not s.check_insert(np.array([1]), one, t_max_ms=260)[0]
    st_ = s.to_state()
    r = DedupSet.from_state(st_)
    assert r.horizon_ms == 100 and r.cur_start_ms == s.cur_start_ms
    assert r.check_insert(np.array([2, 3, 9]), np.ones(3, np.bool_), t_max_ms=260).tolist() == [True, True, False]
    assert not s.check_insert(np.array([5]), one, t_max_ms=10**6)[0]  # two horizons: both dropped
    assert len(s) == 1
    assert s.check_insert(np.array([5]), np.zeros(1, np.bool_)).tolist() == [False]  # inactive: ignored
    with pytest.raises(ValueError, match="dedup_horizon_ms must be a positive int"):
        DedupSet(horizon_ms=0)


def test_dedupset_state_keeps_min_key():
    s = DedupSet(horizon_ms=None)
    s.check_insert(np.array([EMPTY, 4], dtype=np.int64), np.ones(2, np.bool_))
    r = DedupSet.from_state(s.to_state())
    assert len(r) == 2
    assert r.check_insert(np.array([EMPTY, 4, 5], dtype=np.int64), np.ones(3, np.bool_)).tolist() == [True, True, False]


@given(
    ids=st.lists(st.integers(-(2**63) + 1, 2**63 - 1), min_size=0, max_size=300, unique=True),
    probes=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=50),
)
def test_element_lookup_sparse_ids_match_a_dict(ids, probes):
    """The hash-map path (ids too sparse for a table) equals a dict lookup, unknown ids -1."""
    from telcoanalytics.ingest.ingestor import _ElementLookup

    ids = np.array(ids + [10**15, 2 * 10**15], dtype=np.int64)  # a wide range: never the table path
    index = np.arange(len(ids), dtype=np.int64)[::-1].copy()
    lk = _ElementLookup(ids, index)
    assert lk.lut is None
    q = np.array(list(ids) + probes + [EMPTY], dtype=np.int64)
    ref = {int(k): int(v) for k, v in zip(ids, index)}
    np.testing.assert_array_equal(lk(q), [ref.get(int(k), -1) for k in q])
    out = np.zeros(len(q), dtype=np.int64)
    assert lk(q, out) is out


def test_element_lookup_colliding_keys_and_empty_map():
    """Keys with the same home slot probe on; an empty id set answers -1 everywhere."""
    from kernels.dedup import hashmap_build, hashmap_lookup

    mask = 15
    home = hashset_slot(np.int64(12345), mask)
    same = [k for k in range(10**6, 10**6 + 5000) if hashset_slot(np.int64(k), mask) == home][:3]
    keys = np.array(same, dtype=np.int64)
    tk, tv = np.full(16, EMPTY, dtype=np.int64), np.full(16, -1, dtype=np.int64)
    assert hashmap_build(keys, np.array([7, 8, 9], dtype=np.int64), tk, tv) == 3
    out = np.empty(4, dtype=np.int64)
    np.testing.assert_array_equal(hashmap_lookup(np.append(keys, 5).astype(np.int64), tk, tv, -1, out), [7, 8, 9, -1])
    from telcoanalytics.ingest.ingestor import _ElementLookup

    np.testing.assert_array_equal(
        _ElementLookup(np.zeros(0, np.int64), np.zeros(0, np.int64))(np.array([1, 2])), [-1, -1]
    )
