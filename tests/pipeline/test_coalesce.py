"""Coalesced updates (components that only accumulate fold buffered batches at once) read the same
as one update per batch; the fast JSON lines of anomaly rows equal ``json.dumps``; flows aggregate
as a pandas group-by does."""

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telcoanalytics.analysis.component import AnalysisComponent, _aggregate
from telcoanalytics.pipeline.coalesce import BatchBuffer
from telcoanalytics.pipeline.components import (
    CubeComponent,
    _plain,
    json_lines_of_records,
    records_from_json_lines,
)
from telcoanalytics.pipeline.pipeline import Pipeline
from telcoanalytics.records import FLOW_DTYPE
from telcoanalytics.synth.network import generate


@pytest.fixture(scope="module")
def fed():
    """The same stream through per-batch (coalesce_rows=0) and coalesced cube and analysis components."""
    day = generate(n_elements=120, days=0.05, seed=3)
    comps = {
        "cube0": CubeComponent(day.topology, coalesce_rows=0),
        "cube": CubeComponent(day.topology, coalesce_rows=700),
        "an0": AnalysisComponent(day.topology, coalesce_rows=0),
        "an": AnalysisComponent(day.topology, coalesce_rows=5_000),
    }
    p = Pipeline(day.topology, components=comps)
    p.feed(day.raw_batches())
    return p


def test_coalesced_cubes_read_as_per_batch(fed):
    a, b = fed.components["cube0"], fed.components["cube"]
    assert b._buffer.n_rows > 0  # something is still buffered: the read must fold it
    for name in ("explore", "subscribers"):
        for dims in (("region", "service"), ("site",)) if name == "explore" else (("region", "service"),):
            qa, qb = a.cubes[name].query(dims), b.cubes[name].query(dims)
            assert qa.dtype == qb.dtype and len(qa) == len(qb) > 0
            for f in qa.dtype.names:
                if qa[f].dtype.kind == "f":
                    np.testing.assert_allclose(qb[f], qa[f], rtol=1e-12)
                else:
                    np.testing.assert_array_equal(qb[f], qa[f])
    assert b._buffer.n_rows == 0 and a.n == b.n


def test_coalesced_analysis_reads_as_per_batch(fed):
    a, b = fed.components["an0"], fed.components["an"]
    np.testing.assert_array_equal(b.flows, a.flows)
    for name in ("prb_util_pct", "latency_ms"):
        ta, xa = a.series.series(name)
        tb, xb = b.series.series(name)
        np.testing.assert_array_equal(tb, ta)
        np.testing.assert_allclose(xb, xa, rtol=1e-12)
    qa = a.cubes["localize"].query(("element",), measures=["count"])
    qb = b.cubes["localize"].query(("element",), measures=["count"])
    np.testing.assert_array_equal(qb, qa)
    assert a.n == b.n
    st_b = b.to_state()  # a checkpoint folds first: nothing buffered is lost
    back = AnalysisComponent.from_state(st_b, b.topology)
    np.testing.assert_array_equal(back.flows, a.flows)


def test_batch_buffer_errors_and_empty_batches():
    with pytest.raises(ValueError, match="coalesce_rows must be a non-negative integer"):
        BatchBuffer(-1)
    from telcoanalytics.pipeline.contract import RoutedBatch

    buf = BatchBuffer(0)
    z = np.zeros(0, dtype=[("ts_ms", "i8")])
    assert buf.add(RoutedBatch("cdr", z, np.zeros(0, np.int64), np.zeros(0, np.int64)))  # 0: drain every time
    assert buf.drain() == [] and buf.n_rows == 0


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 4), st.integers(0, 900_000), st.integers(0, 10**12)), max_size=60
    )
)
def test_flow_aggregation_equals_a_pandas_group_by(rows):
    r = np.zeros(len(rows), dtype=FLOW_DTYPE)
    for i, (s, d, t, b) in enumerate(rows):
        r[i] = (t, 100 + s, 200 + d, b, b % 7, 1)
    got = _aggregate(r, 300_000)
    df = pd.DataFrame({k: r[k] for k in FLOW_DTYPE.names})
    df["ts_ms"] = df["ts_ms"] // 300_000 * 300_000
    ref = df.groupby(["ts_ms", "src_element_id", "dst_element_id"], as_index=False).sum()
    assert len(got) == len(ref)
    for k in FLOW_DTYPE.names:
        np.testing.assert_array_equal(got[k], ref[k].to_numpy())


DT = np.dtype([("k", "i8"), ("d", "i1"), ("v", "f8"), ("s", "U8"), ("b", "S4"), ("ok", "?")])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-(2**62), 2**62),
            st.integers(-128, 127),
            st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(0.1)),
            st.text(alphabet='ab"\\\u00e9\n%', max_size=8),
            st.text(alphabet="abc", max_size=4).map(str.encode),
            st.booleans(),
        ),
        max_size=20,
    )
)
def test_json_lines_equal_json_dumps(rows):
    a = np.array(rows, dtype=DT)
    expected = [json.dumps(dict(zip(DT.names, (_plain(v) for v in r)))) for r in a.tolist()]
    assert json_lines_of_records(a) == expected


def test_json_lines_round_trip():
    a = np.array([(1, 2, np.nan, "x", b"y", True), (3, -1, 0.25, "z", b"", False)], dtype=DT)
    back = records_from_json_lines(json_lines_of_records(a), DT)
    assert back["k"].tolist() == [1, 3] and np.isnan(back["v"][0]) and back["v"][1] == 0.25
    assert back["s"].tolist() == ["x", "z"] and back["ok"].tolist() == [True, False]
    assert len(records_from_json_lines([], DT)) == 0 and json_lines_of_records(a[:0]) == []


def test_the_fold_at_finish_is_timed_with_its_component():
    """What a coalescing component folds at the end of input counts in its seconds."""
    day = generate(n_elements=60, days=0.02, seed=2)
    comp = CubeComponent(day.topology)  # 2^17 rows: nothing folds before finish here
    p = Pipeline(day.topology, components={"cube": comp})
    p.feed(day.raw_batches())
    before = p.seconds["cube"]
    assert comp._buffer.n_rows > 0
    p.advance(p.max_event_ms + 1)
    p.finish()
    assert comp._buffer.n_rows == 0 and p.seconds["cube"] > before
