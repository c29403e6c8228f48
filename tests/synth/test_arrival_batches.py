"""arrival_batches: the synthetic day's raw batches from a time on, built without the skipped ones.

Reference: ``SynthDay.raw_batches`` (rows merged with ``np.insert``) filtered in Python by each
batch's first arrival, as the replay did before.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telcoanalytics.synth.network import SynthConfig, generate
from telcoanalytics.synth.stream import arrival_batches


@pytest.fixture(scope="module")
def day():
    return generate(SynthConfig(n_elements=40, days=0.5, seed=3, complaints=1.0, p_corrupt=0.01, p_duplicate=0.01))


def _reference(day, batch_ms, from_ms):
    out = []
    for source, rows, arr, _org in day.raw_batches(batch_ms=batch_ms, with_arrival=True):
        if from_ms is None or (len(arr) and arr[0] >= from_ms):
            out.append((source, rows))
    return out


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
