"""records_from_json_lines: pyarrow's reader and the json module give the same records."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telcoanalytics.pipeline import components
from telcoanalytics.pipeline.components import json_lines_of_records, records_from_json_lines

DT = np.dtype([("k", "i8"), ("d", "i1"), ("v", "f8"), ("s", "U6"), ("ok", "?"), ("u", "u8")])


def _reference(lines, dtype):
    """Plain json: one dict per line, null floats as NaN."""
    out = np.zeros(len(lines), dtype)
    for i, line in enumerate(lines):
        rec = json.loads(line)
        out[i] = tuple(float("nan") if rec[n] is None else rec[n] for n in dtype.names)
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-(2**62), 2**62),
            st.integers(-128, 127),
            st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(0.1), st.just(1e300)),
            st.text(alphabet='ab"\\\u00e9\n%', max_size=8),
            st.booleans(),
            st.integers(0, 2**64 - 1),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_arrow_reader_equals_json(rows):
    a = np.array(rows, dtype=DT)
    lines = json_lines_of_records(a)
    out = np.zeros(len(lines), DT)
    chunk = components._ARROW_CHUNK
    try:
        components._ARROW_CHUNK = 7  # several reads
        assert components._records_from_json_lines_arrow(lines, DT, out)
    finally:
        components._ARROW_CHUNK = chunk
    ref = _reference(lines, DT)
    assert out.tobytes() == ref.tobytes()
    assert records_from_json_lines(lines, DT).tobytes() == ref.tobytes()


def test_arrow_reader_declines_what_it_cannot_read():
    out = np.zeros(1, DT)
    # Infinity (what json.dumps writes for inf) is read as inf by both
    line = '{"k": 1, "d": 0, "v": -Infinity, "s": "x", "ok": true, "u": 3}'
    assert records_from_json_lines([line], DT)["v"][0] == -np.inf
    # text that is not JSON: the json module's error
    assert not components._records_from_json_lines_arrow(['{"k": 1,'], DT, out)
    with pytest.raises(ValueError):
        records_from_json_lines(['{"k": 1,'], DT)
    # an empty line (the reader would skip it): the json module's error
    good = '{"k": 1, "d": 0, "v": 1, "s": "", "ok": true, "u": 0}'
    assert not components._records_from_json_lines_arrow([good, ""], DT, out)
    with pytest.raises(ValueError):
        records_from_json_lines([good, ""], DT)
    # a null where a float is not allowed, and a missing field: left to the json path
    assert not components._records_from_json_lines_arrow(
        ['{"k": null, "d": 0, "v": 1, "s": "", "ok": true, "u": 0}'], DT, out
    )
    assert not components._records_from_json_lines_arrow(['{"d": 0, "v": 1, "s": "", "ok": true, "u": 0}'], DT, out)
    # a field of a type the reader path does not convert (bytes)
    dt = np.dtype([("b", "S4")])
    assert not components._records_from_json_lines_arrow(['{"b": "x"}'], dt, np.zeros(1, dt))
    assert out.tobytes() == np.zeros(1, DT).tobytes()  # never touched
    # extra fields are ignored, as by the json path
    line = '{"k": 5, "d": -1, "v": null, "s": "q", "ok": false, "u": 1, "extra": [1, 2]}'
    got = records_from_json_lines([line], DT)
    assert got["k"][0] == 5 and np.isnan(got["v"][0]) and got["s"][0] == "q"
