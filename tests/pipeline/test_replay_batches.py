"""The replay's synthetic source gathers its batches as opaque records: the same batches (source,
dtype, bytes) as the day's own ``raw_batches`` (the reference: a structured gather per window)."""

import types

import numpy as np

from telcoanalytics.pipeline.replay import DEFAULTS, SyntheticSource, _opaque_sources


def _settings(**kw):
    return {**DEFAULTS, "elements": 60, "days": 0.05, "history_days": 0.05, "seed": 5, **kw}


def test_synthetic_source_batches_equal_the_days_raw_batches():
    src = SyntheticSource(_settings(), say=lambda m: None)
    got = list(src)
    # the replay's batches: those whose first row arrives at or after replay_from
    want = [(s, r) for s, r, arr, _ in src.day.raw_batches(60_000, with_arrival=True) if arr.min() >= src.replay_from]
    assert len(got) > 10 and sum(len(r) for _, r in got) > 1000
    assert [s for s, _ in got] == [s for s, _ in want]
    for (_, a), (_, b) in zip(got, want):
        assert a.dtype == b.dtype and a.dtype.names is not None
        assert a.tobytes() == b.tobytes()
    assert src.position() == len(got)
    # a source started after k batches continues with batch k
    again = list(SyntheticSource(_settings(), start=7, say=lambda m: None))
    assert [(s, r.tobytes()) for s, r in again] == [(s, r.tobytes()) for s, r in got[7:]]


def test_opaque_sources_leave_arrays_that_cannot_be_viewed():
    st = types.SimpleNamespace(extra=np.zeros(3, dtype=[("a", "i8"), ("b", "f8")]))
    arr = np.zeros(6, dtype=[("a", "i8"), ("b", "f8")])[::2]  # not contiguous
    day = types.SimpleNamespace(sources=["x", "y"], x=arr, y=np.zeros(2, st.extra.dtype), _streams={"x": st, "y": st})
    day._streams["y"] = types.SimpleNamespace(**vars(st))
    arrays, streams, dtypes = _opaque_sources(_as_dataclass_streams(day))
    assert arrays["x"] is day.x and "x" not in dtypes
    assert arrays["y"].dtype.kind == "V" and dtypes["y"] == st.extra.dtype
    assert streams["y"].extra.dtype.kind == "V" and streams["x"].extra.dtype.names == ("a", "b")


def _as_dataclass_streams(day):
    from telcoanalytics.synth.stream import SourceStream

    z = np.zeros(0, np.int64)
    for k, v in list(day._streams.items()):
        day._streams[k] = SourceStream(z, z, v.extra, z, np.zeros(0, np.int8))
    return day
