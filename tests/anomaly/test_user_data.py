"""A user's own data: string element ids and metric names, datetime64, full names, a warning for
metrics without settings, grouping by whichever topology level the user names."""

import warnings

import numpy as np
import pytest

from telcoanalytics.anomaly.detector import (
    ClassifyConfig,
    DetectorConfig,
    MetricRegistry,
    MetricSpec,
    NetworkAnomalyDetector,
)
from telcoanalytics.topology.model import Topology

MIN = 60_000
LONG = "interface_input_data_rate_kbit_per_second_smoothed"  # 50 characters


def _topo():
    names = [f"r{r}|Hu0/0/0/{k}" for r in (1, 2) for k in range(6)]
    return Topology.from_columns(
        np.arange(12, dtype=np.int64),
        {"router": np.repeat([1, 2], 6).astype(np.int64)},
        names={"element": np.array(names)},
    )


REG = MetricRegistry([MetricSpec(LONG, log_offset=1000.0, nonneg=True), MetricSpec(LONG + "_b", nonneg=True)])


def _net(**kw):
    cc = ClassifyConfig(crowd_level="router", crowd_min_elements=3, surge_level=None, gap_level=None)
    cfg = DetectorConfig.for_interval(60, season="none", refire_s=0)
    return NetworkAnomalyDetector(_topo(), (LONG, LONG + "_b"), cfg, classify=cc, registry=REG, **kw)


def _feed(net, n_steps, bump=None):
    rng = np.random.default_rng(0)
    names = net.topology.names["element"]
    t = np.repeat(np.datetime64("2024-03-01T00:00") + np.arange(n_steps).astype("timedelta64[m]"), 12)
    el = np.tile(names, n_steps)
    x = 5e5 * (1 + 0.01 * rng.standard_normal(len(t)))
    if bump:
        for name in bump:
            x[(el == name) & (t >= t[-1] - np.timedelta64(3, "m"))] *= 0.01
    met = np.full(len(t), LONG)
    return np.concatenate(
        [net.update(t[k : k + 12], el[k : k + 12], met[k : k + 12], x[k : k + 12]) for k in range(0, len(t), 12)]
    )


def test_string_ids_datetime_and_full_names():
    net = _net()
    rows = _feed(net, 60, bump=["r1|Hu0/0/0/3"])
    opened = rows[rows["end_ms"] < 0]
    assert len(opened) == 1
    r = opened[0]
    assert r["metric"] == LONG and r["classification"] == "fault"
    assert net.topology.names["element"][r["slot"] // net.n_metrics] == "r1|Hu0/0/0/3"
    assert r["baseline"] > 0


def test_a_failing_port_is_a_fault_many_in_one_router_a_crowd():
    net = _net()
    rows = _feed(net, 60, bump=[f"r2|Hu0/0/0/{k}" for k in range(5)])
    opened = rows[rows["end_ms"] < 0]
    assert set(opened["classification"]) == {"crowd"} and set(opened["scope_level"]) == {"router"}
    net2 = _net()
    rows2 = _feed(net2, 60, bump=["r2|Hu0/0/0/1"])
    assert rows2[rows2["end_ms"] < 0]["classification"].tolist() == ["fault"]


def test_default_levels_absent_mean_no_grouping():
    topo = _topo()
    net = NetworkAnomalyDetector(topo, (LONG,), DetectorConfig.for_interval(60, season="none"), registry=REG)
    assert not net._has_level("site") and not net._has_level("region")
    with pytest.raises(ValueError, match="does not have"):
        NetworkAnomalyDetector(topo, (LONG,), classify=ClassifyConfig(crowd_level="pop"), registry=REG)
    assert len(net.check_silence(0)) == 0


def test_unknown_metric_warns_and_names_are_checked():
    topo = _topo()
    with pytest.warns(UserWarning, match="'my_metric' has no settings"):
        NetworkAnomalyDetector(topo, ("my_metric",))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NetworkAnomalyDetector(topo, (LONG,), registry=REG)
    with pytest.raises(ValueError, match="never cut"):
        MetricSpec("x" * 65)
    with pytest.raises(ValueError, match="repeat"):
        NetworkAnomalyDetector(topo, (LONG, LONG), registry=REG)
    net = _net()
    with pytest.raises(ValueError, match="not among"):
        net.metric_index(np.array(["nope"]))
    with pytest.raises(ValueError, match="not an element name"):
        net.element_index(np.array(["r9|x"]))
    bare = Topology.from_columns(np.arange(2, dtype=np.int64), {"router": np.array([1, 1])})
    with pytest.raises(ValueError, match="no element names"):
        NetworkAnomalyDetector(bare, (LONG,), registry=REG).element_index(np.array(["a"]))
    assert REG.names() == sorted([LONG, LONG + "_b"]) and LONG in REG
    with pytest.raises(ValueError, match="MetricSpec"):
        REG.register("x")
    for bad in (dict(log_offset=0.0), dict(floor=-1.0), dict(confirm=0), dict(threshold_scale=0.0)):
        with pytest.raises(ValueError):
            MetricSpec("m", **bad)
    with pytest.raises(ValueError, match="non-empty"):
        MetricSpec("")


def test_integer_arguments_name_the_fix():
    from telcoanalytics.anomaly.silence import SilenceMonitor

    mon = SilenceMonitor(2)
    with pytest.raises(ValueError, match="datetime64; pass it through to_ms"):
        mon.observe(np.array(["2024-01-01"], dtype="datetime64[s]"), np.zeros(1, np.int64))
    with pytest.raises(ValueError, match="elem must hold integers"):
        mon.observe(np.zeros(1, np.int64), np.zeros(1))
    with pytest.raises(ValueError, match="one-dimensional"):
        mon.observe(np.zeros((1, 1), np.int64), np.zeros(1, np.int64))


def test_explicit_per_metric_tables_override_the_registry():
    net = NetworkAnomalyDetector(_topo(), (LONG,), registry=REG, metric_confirm={LONG: 2}, metric_floor={LONG: 0.5})
    assert (net.detector.sp[:, 1] == 2).all() and (net.detector.sp[:, 0] == 0.5).all()
    assert net.log_offset[0] == 1000.0  # tables not given still come from the registry
