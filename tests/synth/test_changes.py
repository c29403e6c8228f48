"""Changes of known effect: only the upgraded cells' rows after the change move, by the stated
effect (a difference-in-differences against the controls recovers it), and the option is off by
default."""

import numpy as np
import pytest

from telcoanalytics.records import METRIC_CODE
from telcoanalytics.synth import generate
from telcoanalytics.synth.changes import apply_changes


@pytest.fixture(scope="module")
def pair():
    kw = dict(n_elements=1500, days=1, seed=8)
    return generate(**kw), generate(**kw, n_changes=2)


def test_only_upgraded_rows_after_the_change_move(pair):
    plain, up = pair
    assert plain.changes == [] and "changes" not in plain.labels_document()
    assert plain.cdr.tobytes() == up.cdr.tobytes() and plain.flow.tobytes() == up.flow.tobytes()
    lat, prb = up.changes
    assert (lat.kpi, prb.kpi) == ("latency", "prb")
    q0, q1 = plain.qos, up.qos
    moved = q0["latency_ms"] != q1["latency_ms"]
    inside = np.isin(q0["element_id"], lat.element_ids) & (q0["ts_ms"] >= lat.at_ms)
    assert moved.any() and not (moved & ~inside).any()
    np.testing.assert_allclose(q1["latency_ms"][inside], np.round(q0["latency_ms"][inside] * lat.effect, 3), atol=1e-9)
    e0, e1 = plain.equip, up.equip
    moved = e0["value"] != e1["value"]
    inside = np.isin(e0["element_id"], prb.element_ids) & (e0["ts_ms"] >= prb.at_ms)
    inside &= e0["metric_id"] == METRIC_CODE["prb_util_pct"]
    assert moved.any() and not (moved & ~inside).any()
    assert not set(lat.element_ids.tolist()) & set(lat.control_ids.tolist())
    assert len(lat.control_ids) >= len(lat.element_ids)
    doc = up.labels_document()["changes"]
    assert doc[0]["kpi"] == "latency" and doc[1]["metric"] == "prb_util_pct"
    assert up.start_ms + (up.end_ms - up.start_ms) // 3 - 3_600_000 <= lat.at_ms <= up.end_ms


def test_difference_in_differences_recovers_the_effect(pair):
    plain, up = pair
    lat, prb = up.changes
    q = up.qos

    def mean_log(ids, after):
        s = np.isin(q["element_id"], ids) & ((q["ts_ms"] >= lat.at_ms) == after)
        return np.mean(np.log(q["latency_ms"][s]))

    did = (mean_log(lat.element_ids, True) - mean_log(lat.element_ids, False)) - (
        mean_log(lat.control_ids, True) - mean_log(lat.control_ids, False)
    )
    assert did == pytest.approx(lat.log_effect, abs=0.05)
    # PRB: against the same run without the change (the counterfactual), exactly the factor
    sel = np.isin(plain.equip["element_id"], prb.element_ids) & (plain.equip["ts_ms"] >= prb.at_ms)
    sel &= plain.equip["metric_id"] == METRIC_CODE["prb_util_pct"]
    np.testing.assert_allclose(up.equip["value"][sel], plain.equip["value"][sel] * prb.effect, rtol=1e-12)
    assert prb.log_effect == pytest.approx(np.log(prb.effect))


def test_too_small_a_network_raises():
    day = generate(n_elements=120, n_regions=1, days=0.25, seed=1)
    from telcoanalytics.synth.topology import build_topology

    topo = build_topology(120, 1, 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="scenario-free sites"):
        apply_changes(
            {"qos": day.qos, "equip": day.equip}, topo, topo.table["element_id"], (0, 10), 1, np.random.default_rng(0)
        )
