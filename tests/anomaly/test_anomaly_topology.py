"""The network anomaly detector follows topology changes without losing learned state."""

import numpy as np
import pytest

from telcoanalytics.anomaly.detector import DetectorConfig, NetworkAnomalyDetector
from telcoanalytics.topology.model import Topology

METRICS = ("cpu_util_pct", "latency_ms")


def _topo():
    ids = np.arange(12) + 100
    return Topology.from_columns(ids, {"region": np.repeat([1, 2], 6), "site": np.repeat([10, 11, 20, 21], 3)})


def _feed(net, n_el, t0, n_pts, rng, spike_elem=None):
    out = []
    for k in range(n_pts):
        t = np.full(n_el * 2, t0 + k * 300_000, dtype=np.int64)
        e = np.repeat(np.arange(n_el), 2)
        m = np.tile([0, 1], n_el)
        x = 50.0 + rng.normal(0, 1.0, len(t))
        if spike_elem is not None and k == n_pts - 1:
            x[(e == spike_elem) & (m == 0)] = 500.0
        out.append(net.update(t, e, m, x))
    return np.concatenate(out)


def test_add_rehome_keep_state_and_score_new_elements(rng):
    topo = _topo()
    net = NetworkAnomalyDetector(topo, METRICS, DetectorConfig(season="none", warmup=5))
    _feed(net, 12, 0, 40, rng)
    before = net.detector.state.st.copy()
    t1, _ = topo.add_elements([500, 501], [11, 20])
    t2, _ = t1.rehome_elements([100], [21])
    net.set_topology(t2)
    assert net.detector.n_slots == 14 * 2
    np.testing.assert_array_equal(net.detector.state.st[:24], before)  # learned state kept
    assert net.detector.slot_element_id[24:].tolist() == [500, 500, 501, 501]
    assert net.detector.slot_metric[24:].tolist() == list(METRICS) * 2
    np.testing.assert_array_equal(net.detector.sp[24:], net.detector.sp[:4])
    assert len(net.silence.last_ts) == 14 and len(net.slot_class) == 28
    # the new elements learn and then a spike on one of them is found and named
    rows = _feed(net, 14, 40 * 300_000, 40, rng, spike_elem=13)
    opened = rows[(rows["end_ms"] < 0) & (rows["element_id"] == 501)]
    assert len(opened) and opened["metric"][0] == "cpu_util_pct"
    st = net.to_state()
    back = NetworkAnomalyDetector.from_state(st, t2)
    for a, b in zip(back.detector.state, net.detector.state):
        np.testing.assert_array_equal(a, b)


def test_set_topology_errors():
    topo = _topo()
    net = NetworkAnomalyDetector(topo, METRICS, DetectorConfig(season="none", warmup=5))
    small = Topology.from_columns(np.arange(3) + 100, {"region": [1, 1, 1], "site": [10, 10, 10]})
    with pytest.raises(ValueError, match="fewer than 12"):
        net.set_topology(small)
    with pytest.raises(ValueError, match="must be a Topology"):
        net.set_topology(object())
    net.set_topology(topo, parent_element=np.full(12, -1))
    assert (net.parent_element == -1).all()
