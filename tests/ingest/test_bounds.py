"""Domain bounds (``records.DOMAIN``): extreme values never reach the analyses' state."""

import numpy as np
import pytest

from telcoanalytics.ingest.ingestor import Ingestor
from telcoanalytics.records import DOMAIN, METRIC_CODE, METRIC_DOMAIN, METRICS, NO_TIME_MS, empty

T0 = 1_700_000_000_000


def test_the_table_covers_every_metric_and_is_ordered():
    assert set(METRIC_DOMAIN) == set(METRICS)
    for table in [METRIC_DOMAIN, *DOMAIN.values()]:
        for lo, hi in table.values():
            assert lo < hi


def _cdr(n=6):
    a = empty("cdr", n)
    a["record_id"] = np.arange(n)
    a["start_ms"] = T0
    a["end_ms"] = T0 + 60_000
    a["answer_ms"] = T0 + 5_000
    a["element_id"], a["cause"] = 1, 16
    return a


def test_answer_ms_semantics():
    a = _cdr()
    a["answer_ms"] = [NO_TIME_MS, -5, T0 - 1, T0 + 70_000, T0, T0 + 60_000]
    r = Ingestor("cdr").ingest(a)
    assert r.by_reason == {"answer_outside_call": 2, "out_of_domain": 1}
    assert r.accepted["answer_ms"].tolist() == [NO_TIME_MS, T0, T0 + 60_000]
    # empty text and NaN mean "not answered" (as -1), documented in records
    ing = Ingestor("cdr")
    d = {f: [str(v) for v in a[f][:3]] for f in a.dtype.names}
    d["answer_ms"] = ["", "nan", str(T0 + 1)]
    r = ing.ingest(d)
    assert r.n_accepted == 3 and r.accepted["answer_ms"].tolist() == [NO_TIME_MS, NO_TIME_MS, T0 + 1]


def test_cdr_bounds():
    a = _cdr()
    a["end_ms"][0] = T0 + 8 * 86_400_000
    a["bytes_up"][1] = 10**16
    a["bytes_down"][2] = -1
    a["element_id"][3] = -4
    r = Ingestor("cdr").ingest(a)
    assert r.by_reason == {"out_of_domain": 3, "negative_counter": 1}


@pytest.mark.parametrize(
    "metric,value,reason",
    [
        ("cpu_util_pct", 100.5, "out_of_domain"),
        ("throughput_mbps", 1e308, "out_of_domain"),
        ("throughput_mbps", -1.0, "out_of_domain"),
        ("temperature_c", 151.0, "out_of_domain"),
        ("temperature_c", -40.0, None),
        ("error_count", -1.0, "negative_counter"),
        ("error_count", 1e13, "out_of_domain"),
        ("unavailable_s", 86_401.0, "out_of_domain"),
    ],
)
def test_equipment_value_bounds(metric, value, reason):
    a = empty("equip", 1)
    a["ts_ms"], a["element_id"], a["metric_id"], a["value"] = T0, 1, METRIC_CODE[metric], value
    r = Ingestor("equip").ingest(a)
    assert r.by_reason == ({} if reason is None else {reason: 1})


def test_qos_and_flow_bounds():
    q = empty("qos", 5)
    q["ts_ms"] = T0 + np.arange(5)
    q["element_id"] = 1
    q["latency_ms"] = [1e308, 10.0, 10.0, 600_000.0, 10.0]
    q["jitter_ms"] = [1.0, 1e308, 1.0, 1.0, 1.0]
    q["element_id"][2] = -1
    r = Ingestor("qos").ingest(q)
    assert r.by_reason == {"out_of_domain": 3} and r.n_accepted == 2
    f = empty("flow", 3)
    f["ts_ms"] = T0 + np.arange(3)
    f["src_element_id"], f["dst_element_id"] = 1, 2
    f["bytes"] = [10**16, 5, 5]
    f["packets"] = [1, 10**14, 1]
    r = Ingestor("flow").ingest(f)
    assert r.by_reason == {"out_of_domain": 2}


def _float_arrays(d, path=""):
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _float_arrays(v, f"{path}/{k}")
    elif isinstance(d, np.ndarray) and d.dtype.names:
        for f in d.dtype.names:
            yield from _float_arrays(d[f], f"{path}.{f}")
    elif isinstance(d, np.ndarray) and d.dtype.kind == "f":
        yield path, d


def _extreme(day):
    """Copies of real rows with every float and counter field pushed to an extreme."""
    out = []
    q = day.qos[:40].copy()
    q["latency_ms"][:10], q["jitter_ms"][10:20] = 1e308, 1e308
    q["loss_pct"][20:30], q["latency_ms"][30:] = np.inf, -1e308
    out.append(("qos", q))
    e = day.equip[:60].copy()
    e["value"] = np.resize([1e308, -1e308, np.inf, np.nan, 1e300], 60)
    out.append(("equip", e))
    c = day.cdr[:30].copy()
    c["record_id"] += 10**15
    c["answer_ms"][:10] = -5
    c["end_ms"][10:20] = c["start_ms"][10:20] + 10**12
    c["bytes_up"][20:] = 2**62
    out.append(("cdr", c))
    return out


def test_extreme_values_leave_every_state_finite_and_unchanged(tmp_path):
    from telcoanalytics.pipeline.components import build_components
    from telcoanalytics.pipeline.pipeline import Pipeline
    from telcoanalytics.synth.network import SynthConfig, generate

    day = generate(SynthConfig(n_elements=200, days=0.03, seed=4))
    runs = []
    for bad in (False, True):
        out = tmp_path / str(bad)
        out.mkdir()
        comps = build_components(day.topology, ["windows", "anomaly", "cube"])
        p = Pipeline(day.topology, components=comps)
        k = 0
        for source, rows in day.raw_batches():
            p.process(source, rows)
            k += 1
            if bad and k == 5:
                for s, x in _extreme(day):
                    r = p.process(s, x)
                    assert r.n_accepted == 0, (s, r.by_reason)
            p.advance()
        runs.append({name: c.to_state() for name, c in p.components.items()})
    clean, hit = runs
    for name in clean:
        arrays = dict(_float_arrays(hit[name]))
        ref = dict(_float_arrays(clean[name]))
        assert arrays.keys() == ref.keys()
        for path, x in arrays.items():
            # inf only where the clean run has it too (settings meaning "no bound"), never from the data
            assert not (np.isinf(x) & ~np.isinf(ref[path])).any(), f"{name}{path} holds inf"
            np.testing.assert_array_equal(x, ref[path], err_msg=f"{name}{path}")
