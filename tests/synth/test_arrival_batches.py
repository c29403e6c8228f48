"""arrival_batches and raw_batches: the synthetic day's arrival-ordered batches, built in one
output array each (arrival_batches from a time on, without building the skipped ones).

Reference: a plain re-statement of the stream (every window's clean rows gathered by their
arrival order, the extra rows merged in with ``np.insert``, windows in order, sources in
``SOURCES`` order), filtered in Python by each batch's first arrival.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telcoanalytics.synth.network import SynthConfig, generate
from telcoanalytics.synth.stream import arrival_batches, arrival_edges


@pytest.fixture(scope="module")
def day():
    return generate(SynthConfig(n_elements=40, days=0.5, seed=3, complaints=1.0, p_corrupt=0.01, p_duplicate=0.01))


_CACHE: dict = {}


def _reference_full(day, batch_ms):
    """[(k, source order, source, rows, arrival, origin)] of every non-empty window, in stream order."""
    key = (id(day), batch_ms)
    if key not in _CACHE:
        _CACHE[key] = _build_reference(day, batch_ms)
    return _CACHE[key]


def _build_reference(day, batch_ms):
    edges = arrival_edges(day._streams, batch_ms)
    out = []
    for j, s in enumerate(day.sources):
        st_, clean = day._streams[s], getattr(day, s)
        for k in range(len(edges) - 1):
            cm = (st_.clean_arrival_sorted >= edges[k]) & (st_.clean_arrival_sorted < edges[k + 1])
            em = (st_.extra_arrival >= edges[k]) & (st_.extra_arrival < edges[k + 1])
            if not cm.any() and not em.any():
                continue
            rows = clean[st_.clean_order[cm]]
            arr = st_.clean_arrival_sorted[cm]
            org = np.zeros(len(rows), np.int8)
            pos = np.searchsorted(arr, st_.extra_arrival[em], side="right")
            rows = np.insert(rows, pos, st_.extra[em])
            org = np.insert(org, pos, st_.extra_origin[em])
            arr = np.insert(arr, pos, st_.extra_arrival[em])
            out.append((k, j, s, rows, arr, org))
    out.sort(key=lambda b: (b[0], b[1]))
    return out


def _reference(day, batch_ms, from_ms):
    return [
        (s, rows)
        for _k, _j, s, rows, arr, _org in _reference_full(day, batch_ms)
        if from_ms is None or arr[0] >= from_ms
    ]


def _arrays(day):
    return {s: getattr(day, s) for s in day.sources}


def _same(a, b):
    assert [s for s, _ in a] == [s for s, _ in b]
    for (_, ra), (_, rb) in zip(a, b, strict=True):
        assert ra.dtype == rb.dtype
        assert ra.tobytes() == rb.tobytes()


def test_extras_are_merged(day):
    """The fixture has batches with duplicates and corrupted rows merged in (the path under test)."""
    n_extra = sum(len(st.extra) for st in day._streams.values())
    assert n_extra > 50
    assert "complaint" in day.sources


@settings(max_examples=15, deadline=None)
@given(
    batch_ms=st.sampled_from([1_000, 7_000, 60_000, 600_000, 3_600_000]),
    frac=st.one_of(st.none(), st.floats(-0.1, 1.1)),
)
def test_equals_filtered_raw_batches(day, batch_ms, frac):
    from_ms = None if frac is None else int(day.start_ms + frac * (day.end_ms - day.start_ms))
    got = list(arrival_batches(_arrays(day), day._streams, batch_ms, from_ms=from_ms))
    _same(got, _reference(day, batch_ms, from_ms))


@pytest.mark.parametrize("start", [0, 1, 17, 10**9])
def test_start_skips_batches(day, start):
    from_ms = day.start_ms + 3_600_000
    ref = _reference(day, 60_000, from_ms)
    got = list(arrival_batches(_arrays(day), day._streams, 60_000, from_ms=from_ms, start=start))
    _same(got, ref[start:])


def test_unaligned_start_keeps_first_row_rule(day):
    """A window straddling from_ms is kept only when its first row arrives at or after it."""
    st_ = day._streams["equip"]
    t = int(st_.clean_arrival_sorted[len(st_.clean_arrival_sorted) // 2])
    for from_ms in (t, t + 1, t - 1):
        _same(
            list(arrival_batches(_arrays(day), day._streams, 60_000, from_ms=from_ms)), _reference(day, 60_000, from_ms)
        )


@pytest.mark.parametrize("bad", [0, -5, 1.5])
def test_bad_batch_ms(day, bad):
    with pytest.raises(ValueError, match="batch_ms"):
        next(arrival_batches(_arrays(day), day._streams, bad))


@pytest.mark.parametrize("bad", [-1, 2.5])
def test_bad_start(day, bad):
    with pytest.raises(ValueError, match="start"):
        next(arrival_batches(_arrays(day), day._streams, 60_000, start=bad))


def test_rows_counted(day):
    n = sum(len(r) for _, r in arrival_batches(_arrays(day), day._streams, 60_000))
    assert n == sum(day.stats["n_arrived"][s] for s in day.sources)
    assert np.all([len(r) > 0 for _, r in arrival_batches(_arrays(day), day._streams, 60_000)])


@pytest.mark.parametrize("batch_ms", [7_000, 60_000])
def test_raw_batches_with_arrival_and_origin(day, batch_ms):
    ref = _reference_full(day, batch_ms)
    got = list(day.raw_batches(batch_ms=batch_ms, with_arrival=True))
    assert len(got) == len(ref)
    for (s, rows, arr, org), (_k, _j, rs, rrows, rarr, rorg) in zip(got, ref, strict=True):
        assert s == rs and rows.tobytes() == rrows.tobytes()
        np.testing.assert_array_equal(arr, rarr)
        np.testing.assert_array_equal(org, rorg)
    plain = list(day.raw_batches(batch_ms=batch_ms))
    _same(plain, [(s, rows) for s, rows, _a, _o in got])
