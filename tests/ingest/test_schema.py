"""Schema registry: every evolution case of every built-in version, detection, errors."""

import math

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from telcoanalytics.ingest.schema import (
    REGISTRY,
    Rule,
    SchemaError,
    SchemaRegistry,
    SchemaVersion,
    default_registry,
    parse_column,
    register,
)
from telcoanalytics.records import CDR_DTYPE, METRIC_CODE, NO_TIME_MS, SERVICE_CODE, empty

T0_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z
T0_ISO = "2023-11-14T22:13:20Z"


def _map(source, cols, version=None):
    reg = default_registry()
    sv = reg.resolve(source, list(cols), version)
    n = len(next(iter(cols.values())))
    data, st, fcol, names = sv.to_canonical({k: np.asarray(v) for k, v in cols.items()}, n)
    return sv, data, st, fcol, names


# ---- cdr ----------------------------------------------------------------------------------------
CDR_V1 = {  # legacy: seconds, duration, cell_id, service names, digit-string ids, switch_id, no imsi
    "record_id": ["9007199254740993", "12"],  # > 2**53: must stay exact
    "start_s": [T0_MS / 1000, T0_MS / 1000 + 0.5],
    "answer_s": [T0_MS / 1000 + 2.25, np.nan],  # NaN = not answered
    "duration_s": [60.0, 1.5],
    "calling_id": [1, 2],
    "called_id": [3, 4],
    "cell_id": ["501", "502"],
    "service": ["voice", "data"],
    "cause": [16, 34],
    "bytes_up": [0, 10],
    "bytes_down": [0, 20],
    "switch_id": ["sw1", "sw2"],
}


def test_cdr_v1_rename_default_duration_units_retype():
    sv, d, st, _, _ = _map("cdr", CDR_V1)
    assert sv.version == 1 and st is None
    assert d["record_id"].tolist() == [9007199254740993, 12]
    assert d["start_ms"].tolist() == [T0_MS, T0_MS + 500]  # s -> ms
    assert d["answer_ms"].tolist() == [T0_MS + 2250, NO_TIME_MS]  # NaN -> none
    assert d["end_ms"].tolist() == [T0_MS + 60_000, T0_MS + 500 + 1500]  # start + 1000 * duration
    assert d["element_id"].tolist() == [501, 502]  # cell_id renamed
    assert d["service"].tolist() == [SERVICE_CODE["voice"], SERVICE_CODE["data"]]
    assert d["imsi_hash"].tolist() == [0, 0]  # added later: default
    assert d.dtype == CDR_DTYPE
    assert sv.derived_from_duration("end_ms")
    assert "switch_id" in sv.optional_columns  # removed field: accepted


def test_cdr_v2_and_v3():
    v2 = {
        "record_id": [1],
        "start_ms": [T0_MS],
        "answer_ms": [T0_MS + 5],
        "end_ms": [T0_MS + 9],
        "calling_id": [1],
        "called_id": [2],
        "imsi": ["208150123456789"],
        "element_id": [7],
        "service_id": [3],
        "release_cause": [17],
        "bytes_up": [1],
        "bytes_down": [2],
    }
    sv, d, st, _, _ = _map("cdr", v2)
    assert sv.version == 2 and st is None
    assert d["imsi_hash"][0] == 208150123456789 and d["cause"][0] == 17 and d["service"][0] == 3
    assert not sv.derived_from_duration("end_ms")
    # v2 without the optional answer_ms: default none
    del v2["answer_ms"]
    sv, d, _, _, _ = _map("cdr", v2)
    assert sv.version == 2 and d["answer_ms"][0] == NO_TIME_MS
    c = empty("cdr", 2)
    sv = REGISTRY.detect("cdr", c.dtype.names)
    assert sv.version == 3
    out, st, _, _ = sv.to_canonical(c, 2)
    assert out is c and st is None  # canonical input: no copy


# ---- equip --------------------------------------------------------------------------------------
def test_equip_versions():
    sv, d, st, _, _ = _map(
        "equip",
        {
            "timestamp": [T0_ISO, "2023-11-14T23:13:20.5+01:00"],
            "ne_id": ["42", "43"],
            "counter": ["cpu_util_pct", "error_count"],
            "value": ["1.5", "2"],
        },
    )
    assert sv.version == 1 and st is None
    assert d["ts_ms"].tolist() == [T0_MS, T0_MS + 500]  # ISO with Z and with an offset
    assert d["element_id"].tolist() == [42, 43]
    assert d["metric_id"].tolist() == [METRIC_CODE["cpu_util_pct"], METRIC_CODE["error_count"]]
    sv, d, st, _, _ = _map(
        "equip", {"ts_s": [T0_MS / 1000], "element_id": [1], "metric_id": [2], "value": [3.0], "unit": ["mbps"]}
    )
    assert sv.version == 2 and d["ts_ms"][0] == T0_MS and d["metric_id"][0] == 2
    sv, d, st, _, _ = _map("equip", {"ts_ms": [T0_MS], "element_id": [1], "metric_id": [2], "value": [3.0]})
    assert sv.version == 3


def test_iso_vectorised_naive_and_datetime64():
    sv, d, st, _, _ = _map(
        "equip",
        {
            "timestamp": ["2023-11-14T22:13:20", "2023-11-14 22:13:20.250"],
            "ne_id": [1, 2],
            "counter": ["cpu_util_pct"] * 2,
            "value": [1.0, 2.0],
        },
    )
    assert d["ts_ms"].tolist() == [T0_MS, T0_MS + 250]  # naive = UTC
    ts = np.array([T0_MS, T0_MS + 1], dtype="datetime64[ms]")
    sv, d, st, _, _ = _map("equip", {"timestamp": ts, "ne_id": [1, 2], "counter": [0, 1], "value": [1.0, 2.0]})
    assert d["ts_ms"].tolist() == [T0_MS, T0_MS + 1] and d["metric_id"].tolist() == [0, 1]


def test_datetime64_nat_is_missing_and_numeric_iso_is_unparseable():
    r = Rule("t", parse="iso")
    v, st = parse_column(np.array(["2023-11-14T22:13:20", "NaT"], dtype="datetime64[ms]"), "i", r)
    assert v[0] == T0_MS and st.tolist() == [0, 2]
    v, st = parse_column(np.array([1.0, 2.0]), "i", r)
    assert st.tolist() == [1, 1]
    v, st = parse_column(np.array(["bad", T0_ISO, ""], dtype=object), "i", r)
    assert st.tolist() == [1, 0, 2] and v[1] == T0_MS
    v, st = parse_column(np.array([b"2023-11-14T22:13:20Z", b"x"]), "i", r)
    assert st.tolist() == [0, 1] and v[0] == T0_MS
    v, st = parse_column(np.array([np.datetime64(T0_MS, "ms"), 5], dtype=object), "i", r)
    assert st.tolist() == [0, 1]


# ---- flow ---------------------------------------------------------------------------------------
def test_flow_versions():
    sv, d, st, _, _ = _map("flow", {"ts_s": [T0_MS / 1000], "src": [1], "dst": [2], "octets": [1500], "pkts": [3]})
    assert sv.version == 1 and d["flows"][0] == 1 and d["bytes"][0] == 1500 and d["ts_ms"][0] == T0_MS
    sv, d, st, _, _ = _map(
        "flow",
        {"ts_ms": [T0_MS], "src_element_id": [1], "dst_element_id": [2], "kbytes": [1.5], "packets": [3], "flows": [2]},
    )
    assert sv.version == 2 and d["bytes"][0] == 1500
    sv, d, st, _, _ = _map(
        "flow",
        {"ts_ms": [T0_MS], "src_element_id": [1], "dst_element_id": [2], "bytes": [1], "packets": [3], "flows": [2]},
    )
    assert sv.version == 3


# ---- qos ----------------------------------------------------------------------------------------
def test_qos_versions():
    sv, d, st, _, _ = _map(
        "qos",
        {"ts_s": [T0_MS / 1000], "element_id": [1], "delay_ms": [20.0], "jitter_ms": [2.0], "loss_ratio": [0.015]},
    )
    assert sv.version == 1
    np.testing.assert_allclose(d["loss_pct"], [1.5], rtol=1e-12)  # ratio x 100: one rounding
    assert math.isnan(d["mos"][0]) and d["latency_ms"][0] == 20.0
    sv, d, st, _, _ = _map(
        "qos",
        {
            "ts_ms": [T0_MS],
            "element_id": [1],
            "latency_us": [20500],
            "jitter_us": [1000],
            "loss_pct": [0.5],
            "mos": [4.1],
        },
    )
    assert sv.version == 2
    np.testing.assert_allclose(d["latency_ms"], [20.5], rtol=1e-12)  # us -> ms: one rounding
    assert d["mos"][0] == 4.1
    sv, d, st, _, _ = _map(
        "qos", {"ts_ms": [T0_MS], "element_id": [1], "latency_ms": [1.0], "jitter_ms": [1.0], "loss_pct": [0.5]}
    )
    assert sv.version == 3 and math.isnan(d["mos"][0])


# ---- parse statuses -----------------------------------------------------------------------------
def test_text_parsing_statuses():
    ri = Rule("x")
    v, st = parse_column(np.array(["1", " 2 ", "3.0", "1.5", "abc", "", "nan", "inf", "99999999999999999999"]), "i", ri)
    assert v[:3].tolist() == [1, 2, 3]
    # 1 unparseable, 2 missing_value, 3 non_finite
    assert st.tolist() == [0, 0, 0, 1, 1, 2, 3, 3, 1]
    v, st = parse_column(np.array(["1.5", "x", "", "nan"]), "f", Rule("x", default=math.nan))
    assert v[0] == 1.5 and st.tolist() == [0, 1, 0, 0] and math.isnan(v[2])
    v, st = parse_column(np.array([1.0, 2.5, np.inf, np.nan, 1e30]), "i", ri)
    assert st.tolist() == [0, 1, 3, 3, 1]
    v, st = parse_column(np.array([1.0, np.nan]), "i", Rule("x", scale=1000.0, default=-1))
    assert v.tolist() == [1000, -1] and st is None
    v, st = parse_column(np.array([1, None, "7", 2.0, True, 3.5, object()], dtype=object), "i", ri)
    assert v[[0, 2, 3, 4]].tolist() == [1, 7, 2, 1] and st.tolist() == [0, 2, 0, 0, 0, 1, 1]
    v, st = parse_column(np.array([2**64 - 1], dtype=np.uint64), "i", ri)
    assert st.tolist() == [1]
    v, st = parse_column(np.array([3], dtype=np.uint64), "i", Rule("x", scale=2.0))
    assert v.tolist() == [6] and st is None
    with pytest.raises(SchemaError, match="'x' holds true/false"):  # ambiguous: rejected, not read as 1/0
        parse_column(np.array([True, False]), "f", Rule("x", scale=2.0))
    v, st = parse_column(np.array([5, 2**70, 2.0, 1.5], dtype=object), "i", ri)
    assert st.tolist() == [0, 1, 0, 1]
    v, st = parse_column(np.array([5, 2.0, "3"], dtype=object), "f", Rule("x", scale=2.0))
    assert v.tolist() == [10.0, 4.0, 6.0] and st is None
    v, st = parse_column(np.array(["2", "x"]), "i", Rule("x", scale=1000.0))
    assert v.tolist() == [2000, 0] and st.tolist() == [0, 1]
    v, st = parse_column(np.array([1, 2]), "i", ri, missing=np.array([False, True]))
    assert st.tolist() == [0, 2]


def test_codes_parsing():
    r = Rule("s", parse="code", codes=("voice", "video"))
    v, st = parse_column(np.array(["video", " voice", "1", "bogus"]), "i", r)
    assert v[:3].tolist() == [1, 0, 1] and st.tolist() == [0, 0, 0, 1]
    v, st = parse_column(np.array(["video", None], dtype=object), "i", r)
    assert st.tolist() == [0, 2]
    v, st = parse_column(np.array(["video", "voice"], dtype=object), "f", r)
    assert v.tolist() == [1.0, 0.0]


def test_unparseable_values_report_first_column():
    cols = dict(CDR_V1)
    cols["start_s"] = ["x", "1700000000"]
    cols["cause"] = ["bad", "16"]
    sv, d, st, fcol, names = _map("cdr", cols)
    assert st.tolist() == [1, 0] and names[fcol[0]] == "start_s"
    cols["start_s"] = ["", "1700000000"]  # missing_value in an earlier column ...
    sv, d, st, fcol, names = _map("cdr", cols)  # ... loses to unparseable (check order)
    assert st.tolist() == [1, 0] and names[fcol[0]] == "cause"


# ---- detection and errors -------------------------------------------------------------------------
def test_detect_picks_unique_best_and_errors_name_columns_and_versions():
    reg = default_registry()
    with pytest.raises(SchemaError, match=r"lacks \['loss_pct'\].*cannot map \['loss_ratio'\].*Known versions: v1"):
        reg.detect("qos", ["ts_ms", "element_id", "latency_ms", "jitter_ms", "loss_ratio"])
    with pytest.raises(SchemaError, match=r"columns \['extra_col'\] cannot be mapped.*best match v3"):
        reg.detect("qos", ["ts_ms", "element_id", "latency_ms", "jitter_ms", "loss_pct", "extra_col"])
    sv = reg.detect(
        "qos", ["ts_ms", "element_id", "latency_ms", "jitter_ms", "loss_pct", "extra_col"], allow_extra=True
    )
    assert sv.version == 3
    with pytest.raises(SchemaError, match=r"lacks \['ts_ms'\]"):
        reg.detect("qos", ["element_id", "latency_ms", "jitter_ms", "loss_pct"])


def test_declared_version():
    reg = default_registry()
    with pytest.raises(SchemaError, match=r"unknown qos schema version 7; known versions: v1 \("):
        reg.resolve("qos", ["ts_ms"], version=7)
    with pytest.raises(SchemaError, match=r"unknown qos schema version 'x'"):
        reg.get("qos", "x")
    with pytest.raises(SchemaError, match=r"lacks column\(s\) \['loss_ratio'\] required by qos schema v1"):
        reg.resolve("qos", ["ts_s", "element_id", "delay_ms", "jitter_ms"], version=1)
    with pytest.raises(SchemaError, match=r"\['zz'\] cannot be mapped by schema v1"):
        reg.resolve("qos", ["ts_s", "element_id", "delay_ms", "jitter_ms", "loss_ratio", "zz"], version=1)
    sv = reg.resolve(
        "qos", ["ts_s", "element_id", "delay_ms", "jitter_ms", "loss_ratio", "zz"], version=1, allow_extra=True
    )
    assert sv.version == 1 and reg.latest("qos").version == 3
    with pytest.raises(SchemaError, match="unknown source 'voip'"):
        reg.versions("voip")


def test_register_user_version_and_ambiguity():
    reg = default_registry()
    mine = SchemaVersion(
        "qos",
        10,
        {
            "ts_ms": Rule("time_ms"),
            "element_id": Rule("probe_cell"),
            "latency_ms": Rule("rtt_ms", scale=0.5),
            "jitter_ms": Rule("jit"),
            "loss_pct": Rule("loss_pct"),
            "mos": Rule(None, default=math.nan),
        },
        note="vendor probe",
    )
    reg.register(mine)
    assert reg.versions("qos") == [1, 2, 3, 10]
    sv = reg.detect("qos", ["time_ms", "probe_cell", "rtt_ms", "jit", "loss_pct"])
    d, st, _, _ = sv.to_canonical(
        {
            "time_ms": np.array([T0_MS]),
            "probe_cell": np.array([5]),
            "rtt_ms": np.array([40.0]),
            "jit": np.array([1.0]),
            "loss_pct": np.array([0.0]),
        },
        1,
    )
    assert d["latency_ms"][0] == 20.0
    with pytest.raises(SchemaError, match="already registered"):
        reg.register(mine)
    reg.register(mine, replace=True)
    same_cols = SchemaVersion("qos", 11, dict(mine.fields))
    with pytest.raises(SchemaError, match="same columns as v10"):
        reg.register(same_cols)
    with pytest.raises(TypeError, match="SchemaVersion"):
        reg.register({"qos": 1})
    # two versions explaining the input equally well
    reg2 = SchemaRegistry()
    a = SchemaVersion(
        "flow",
        1,
        {
            "ts_ms": Rule("t"),
            "src_element_id": Rule("s"),
            "dst_element_id": Rule("d"),
            "bytes": Rule("b"),
            "packets": Rule("p"),
            "flows": Rule("f", default=1),
        },
    )
    b = SchemaVersion(
        "flow",
        2,
        {
            "ts_ms": Rule("t"),
            "src_element_id": Rule("s"),
            "dst_element_id": Rule("d"),
            "bytes": Rule("b"),
            "packets": Rule("p"),
            "flows": Rule("g", default=1),
        },
    )
    reg2.register(a)
    reg2.register(b)
    with pytest.raises(SchemaError, match="equally well; declare schema_version"):
        reg2.detect("flow", ["t", "s", "d", "b", "p"])
    assert reg2.detect("flow", ["t", "s", "d", "b", "p", "g"]).version == 2


def test_module_register_uses_global_registry():
    sv = SchemaVersion(
        "flow",
        99,
        {
            "ts_ms": Rule("when_ms"),
            "src_element_id": Rule("a"),
            "dst_element_id": Rule("b"),
            "bytes": Rule("by"),
            "packets": Rule("pk"),
            "flows": Rule(None, default=1),
        },
    )
    try:
        register(sv)
        assert REGISTRY.get("flow", 99) is sv
    finally:
        del REGISTRY._versions["flow"][99]


def test_rule_and_version_validation_errors():
    with pytest.raises(ValueError, match="parse must be one of"):
        Rule("x", parse="hex")
    with pytest.raises(ValueError, match="needs a default"):
        Rule(None)
    with pytest.raises(ValueError, match="needs a codes table"):
        Rule("x", parse="code")
    with pytest.raises(ValueError, match="finite non-zero"):
        Rule("x", scale=0)
    with pytest.raises(SchemaError, match="unknown source"):
        SchemaVersion("voip", 1, {})
    with pytest.raises(SchemaError, match=r"missing \[.*'flows'\]"):
        SchemaVersion("flow", 1, {"ts_ms": Rule("t")})
    full = {f: Rule(f) for f in ("ts_ms", "src_element_id", "dst_element_id", "bytes", "packets", "flows")}
    with pytest.raises(SchemaError, match="must be a Rule"):
        SchemaVersion("flow", 1, {**full, "flows": 3})
    with pytest.raises(SchemaError, match="plus='nope'"):
        SchemaVersion("flow", 1, {**full, "bytes": Rule("b", plus="nope")})
    with pytest.raises(SchemaError, match="a column feeds two fields"):
        SchemaVersion("flow", 1, {**full, "flows": Rule("packets")})
    sv = SchemaVersion("flow", 1, full)
    with pytest.raises(SchemaError, match="required column 'src_element_id' is missing"):
        sv.to_canonical({"ts_ms": np.array([1])}, 1)
    assert "v1 (ts_ms" in sv.describe()


def test_rare_value_types_take_the_slow_path():
    ri = Rule("x")
    v, st = parse_column(np.array([None, 1e30], dtype=object), "i", Rule("x", scale=1000.0, default=-1))
    assert v[0] == -1 and st.tolist() == [0, 1]
    v, st = parse_column(np.array([[1], [1, 2]], dtype=object), "i", ri)  # ragged: not numbers
    assert st.tolist() == [1, 1]
    v, st = parse_column(np.array([[1], [1, 2]], dtype=object), "i", Rule("t", parse="iso"))
    assert st.tolist() == [1, 1]
    v, st = parse_column(np.array([1 + 2j]), "f", ri)
    assert st.tolist() == [1]
    v, st = parse_column(np.array([T0_MS], dtype="datetime64[ms]"), "f", Rule("t", parse="iso"))
    assert v.tolist() == [float(T0_MS)] and st is None
    v, st = parse_column(np.array(["2023-11-14T22:13:20", ""]), "i", Rule("t", parse="iso"))
    assert v[0] == T0_MS and st.tolist() == [0, 2]


def test_parsing_never_writes_into_the_input():
    a = np.array([1, 2, 3], dtype=np.int64)
    a.flags.writeable = False  # as zero-copy Arrow data is
    v, st = parse_column(a, "i", Rule("x", default=-1), missing=np.array([False, True, False]))
    assert v.tolist() == [1, -1, 3] and a.tolist() == [1, 2, 3] and st is None
    v, st = parse_column(a, "i", Rule("x"))
    assert v.tolist() == [1, 2, 3] and st is None


def test_arrow_text_columns():
    pa = pytest.importorskip("pyarrow")
    v, st = parse_column(pa.array(["1", "2"]), "i", Rule("x"))
    assert v.tolist() == [1, 2] and st is None
    v, st = parse_column(pa.array(["1.5", "x"]), "f", Rule("x", scale=2.0))  # Arrow cast fails: per value
    assert v[0] == 3.0 and st.tolist() == [0, 1]
    v, st = parse_column(pa.array(["1.5", "2"]), "i", Rule("x", scale=1000.0))
    assert v.tolist() == [1500, 2000] and st is None
    v, st = parse_column(pa.array([T0_ISO, None]), "i", Rule("t", parse="iso"))  # not a number rule
    assert v[0] == T0_MS and st.tolist() == [0, 2]


@given(
    st.lists(
        st.one_of(
            st.integers(-(10**15), 10**15).map(str),
            st.floats(allow_nan=True, allow_infinity=True).map(repr),
            st.sampled_from(["", " 7", "n/a", "1.0", "1e3", "-0", "#VALUE!", "1.2.3", "9" * 25, "0x10"]),
        ),
        min_size=1,
        max_size=60,
    ),
    st.sampled_from([("i", 1.0), ("i", 1000.0), ("f", 1.0), ("f", 0.001)]),
)
@example(values=["0x10"], kind_scale=("i", 1.0))  # Arrow's cast reads hex; the per-value path does not
def test_arrow_text_with_a_few_bad_values_parses_as_the_per_value_path(values, kind_scale):
    import pyarrow as pa

    kind, scale = kind_scale
    values = ["12"] * 40 + values  # mostly clean, as a real column with a few damaged cells
    r = Rule("x", scale=scale)
    got_v, got_s = parse_column(pa.array(values, pa.string()), kind, r)
    ref_v, ref_s = parse_column(np.array(values, dtype=object), kind, r)
    np.testing.assert_array_equal(got_s if got_s is not None else 0, ref_s if ref_s is not None else 0)
    np.testing.assert_array_equal(got_v, ref_v)
