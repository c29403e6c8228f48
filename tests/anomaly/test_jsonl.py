"""The compiled JSON lines of anomaly rows (``telcoanalytics.anomaly.jsonl``) against ``json.dumps``
of each row's Python values, and the component's findings log written with it."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telcoanalytics.anomaly.config import ANOMALY_DTYPE
from telcoanalytics.anomaly.jsonl import json_text_of_records


def _reference(rows: np.ndarray) -> str:
    """json.dumps of each row as a dict of its Python values, non-finite floats as JSON writes
    them except NaN as null."""
    out = []
    for r in rows.tolist():
        d = {n: (None if isinstance(v, float) and math.isnan(v) else v) for n, v in zip(rows.dtype.names, r)}
        out.append(json.dumps(d))
    return "\n".join(out)


DT = np.dtype([("i", "i8"), ("b", "i1"), ("u", "u4"), ("f", "f8"), ("g", "f4"), ("s", "U5"), ("t", "?"), ("h", "i2")])

plain = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=5)
row = st.tuples(
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-128, 127),
    st.integers(0, 2**32 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(width=32, allow_nan=True, allow_infinity=True),
    plain,
    st.booleans(),
    st.integers(-(2**15), 2**15 - 1),
)


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(row, max_size=12))
def test_text_is_json_dumps_of_each_row(rows):
    a = np.array(rows, dtype=DT)
    got = json_text_of_records(a)
    if any(('"' in r[5] or "\\" in r[5]) for r in rows):
        assert got is None  # JSON escapes those: left to the general path
        return
    assert got == _reference(a)


def test_extremes_and_non_finite_values():
    a = np.zeros(4, dtype=DT)
    a["i"] = [-(2**63), 2**63 - 1, 0, -1]
    a["f"] = [np.nan, np.inf, -np.inf, -0.0]
    a["g"] = [1e-7, -3.5, np.float32(0.1), 1e30]
    a["s"] = ["", "abcde", "a b", "~"]
    text = json_text_of_records(a)
    assert text == _reference(a)
    first, second, third, _ = text.split("\n")
    assert '"f": null' in first and '"f": Infinity' in second and '"f": -Infinity' in third
    assert '"i": -9223372036854775808' in first and '"i": 9223372036854775807' in second


def test_anomaly_rows_and_a_strided_view():
    rng = np.random.default_rng(5)
    a = np.zeros(50, ANOMALY_DTYPE)
    a["slot"] = rng.integers(0, 10**6, 50)
    a["element_id"] = rng.integers(10**7, 3 * 10**7, 50)
    a["metric"] = rng.choice(["latency_ms", "loss_pct", "throughput_mbps"], 50)
    a["classification"] = rng.choice(["fault", "change", "collection_gap"], 50)
    a["scope_level"] = "element"
    a["end_ms"] = np.where(rng.random(50) < 0.5, -1, 1_772_495_700_000)
    for f in ("peak_score", "baseline", "threshold", "value"):
        a[f] = rng.normal(size=50) * 10.0 ** rng.integers(-6, 18, 50)
    a["baseline"][::7] = np.nan
    assert json_text_of_records(a) == _reference(a)
    assert json_text_of_records(a[::3]) == _reference(a[::3])  # not contiguous: copied first
    assert json_text_of_records(a[:0]) == ""


@pytest.mark.parametrize(
    "text",
    ["é", "Ω", "a\tb", 'q"', "back\\", "\x7f~"],
)
def test_strings_outside_printable_ascii_are_left_to_the_general_path(text):
    """JSON escapes control characters, quotes, backslashes and (ensure_ascii) non-ASCII; DEL it
    does not, but the compiled path keeps to printable ASCII."""
    a = np.array([(1, text)], dtype=[("k", "i8"), ("s", "U8")])
    assert json_text_of_records(a) is None


def test_embedded_nul_is_refused_and_trailing_nuls_dropped():
    a = np.zeros(2, dtype=[("s", "U4")])
    a["s"] = ["ab", "ab"]
    raw = a.view(np.uint32).reshape(2, 4)
    raw[1, 0] = 0  # "\x00b": numpy keeps an inner NUL
    got = json_text_of_records(a)
    assert got is None
    assert json_text_of_records(a[:1]) == '{"s": "ab"}'


@pytest.mark.parametrize(
    "dtype",
    [
        [("k", "u8")],  # beyond int64
        [("k", "S4")],  # bytes
        [("k", "i8", (2,))],  # a sub-array
        [("k", "M8[ms]")],
        [("k", ">U4")],
        [],  # no fields
    ],
)
def test_unsupported_fields_are_left_to_the_general_path(dtype):
    assert json_text_of_records(np.zeros(2, dtype=dtype)) is None


def test_plain_array_is_an_error():
    with pytest.raises(ValueError, match="structured array"):
        json_text_of_records(np.zeros(3))


def test_component_log_is_the_lines_of_json_lines_of_records(tmp_path):
    """The component's findings log: each part's rows as the general path writes them, escaped
    strings included (that part through the general path)."""
    from telcoanalytics.pipeline.components import AnomalyComponent, json_lines_of_records
    from telcoanalytics.pipeline.run import OutputLog
    from telcoanalytics.synth.network import generate

    day = generate(n_elements=60, n_regions=2, days=0.15, seed=3)
    comp = AnomalyComponent(day.topology)
    a = np.zeros(3, ANOMALY_DTYPE)
    a["metric"], a["classification"], a["baseline"] = "latency_ms", "fault", [1.5, np.nan, 2.0]
    b = a.copy()
    b["metric"] = ['we"ird', "é", "x"]
    comp.attach_log(OutputLog(tmp_path / "anomalies.jsonl"))
    comp._write([a, a[:0], b])
    comp._log.close()
    want = json_lines_of_records(a) + json_lines_of_records(b)
    assert (tmp_path / "anomalies.jsonl").read_text() == "\n".join(want) + "\n"
