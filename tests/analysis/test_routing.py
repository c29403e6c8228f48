"""Routing efficiency: link / element loads against pandas, regional leakage, hot spots,
under-used links and opportunities on a constructed network, and congestion in the synthetic one."""

import numpy as np
import pandas as pd
import pytest

from telcoanalytics.analysis.routing import routing_efficiency, with_capacities
from telcoanalytics.records import EQUIPMENT_CLASS_CODE, FLOW_DTYPE
from telcoanalytics.synth import generate
from telcoanalytics.topology.model import Topology

IV = 300_000
T0 = 1_772_409_600_000


def _net():
    """Two regions; cells 1-4 under switch 10 (region 1), cells 5-6 under switch 20 (region 2);
    switches up to core router 30 (region 1)."""
    ids = np.array([1, 2, 3, 4, 5, 6, 10, 20, 30])
    region = np.array([1, 1, 1, 1, 2, 2, 1, 2, 1])
    site = np.array([100, 100, 101, 101, 200, 200, 110, 210, 120])
    cls = np.array([EQUIPMENT_CLASS_CODE[c] for c in ["macro_cell"] * 6 + ["aggregation_switch"] * 2 + ["core_router"]])
    topo = Topology.from_columns(ids, {"region": region, "site": site}, attributes={"equipment_class": cls})
    cap = np.array([100.0, 100, 100, 100, 100, 100, 1000, 1000, 5000])
    return with_capacities(topo, cap)


def _flows(rng, n_t=24):
    up = {1: 10, 2: 10, 3: 10, 4: 10, 5: 20, 6: 20, 10: 30, 20: 30}
    mean_mbps = {1: 90.0, 2: 5.0, 3: 40.0, 4: 40.0, 5: 30.0, 6: 30.0}
    rows = []
    for k in range(n_t):
        tot = {10: 0.0, 20: 0.0}
        for c, m in mean_mbps.items():
            v = m * rng.uniform(0.9, 1.1)
            rows.append((T0 + k * IV, c, up[c], v))
            tot[up[c]] += v
        for sw, v in tot.items():
            rows.append((T0 + k * IV, sw, 30, v))
    out = np.zeros(len(rows), FLOW_DTYPE)
    out["ts_ms"] = [r[0] for r in rows]
    out["src_element_id"] = [r[1] for r in rows]
    out["dst_element_id"] = [r[2] for r in rows]
    out["bytes"] = np.round(np.array([r[3] for r in rows]) * 1e6 / 8 * IV / 1000)
    return out[rng.permutation(len(out))]


def test_loads_match_pandas(rng):
    topo, fl = _net(), _flows(rng)
    fl = fl[~((fl["src_element_id"] == 3) & (fl["ts_ms"] == T0 + 5 * IV))]  # a missing interval counts as 0
    rep = routing_efficiency(fl, topo, interval_ms=IV)
    df = pd.DataFrame({k: fl[k] for k in ("ts_ms", "src_element_id", "dst_element_id", "bytes")})
    df["mbps"] = df["bytes"] * 8 / 300 / 1e6
    full = df.pivot_table(index=["src_element_id", "dst_element_id"], columns="ts_ms", values="mbps", aggfunc="sum")
    full = full.fillna(0.0)
    cap = {1: 100, 2: 100, 3: 100, 4: 100, 5: 100, 6: 100, 10: 1000, 20: 1000}
    for lk in rep.links:
        s = full.loc[(lk["src_id"], lk["dst_id"])] / cap[int(lk["src_id"])]
        for col, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            assert lk[col] == pytest.approx(s.quantile(q), rel=1e-9), (lk["src_id"], col)  # same linear rule
        assert lk["max"] == pytest.approx(s.max(), rel=1e-12)
        assert lk["gbytes"] == pytest.approx(df[df.src_element_id == lk["src_id"]]["bytes"].sum() / 1e9, rel=1e-12)
    sw = rep.elements[rep.elements["element_id"] == 10][0]
    inflow = full.loc[[1, 2, 3, 4]].sum(axis=0)  # switch 10 carries the max of in and out
    outflow = full.loc[10].iloc[0] if isinstance(full.loc[10], pd.DataFrame) else full.loc[10]
    ref = np.maximum(inflow.values, np.asarray(outflow).ravel()) / 1000
    assert sw["p95"] == pytest.approx(np.percentile(ref, 95), rel=1e-9)


def test_leakage_hot_spots_and_opportunities(rng):
    rep = routing_efficiency(_flows(rng), _net(), interval_ms=IV, hot=0.8, cold=0.2, leave_share=0.5)
    reg = {int(r["region_id"]): r for r in rep.regions}
    # region 2: cells 5, 6 -> switch 20 (stay), switch 20 -> core 30 in region 1 (leaves)
    assert reg[2]["share_leaving"] == pytest.approx(1 / 2, rel=0.05)
    assert reg[1]["share_leaving"] == 0.0
    assert rep.hot_spots()["element_id"].tolist() == [1]
    kinds = [o.kind for o in rep.opportunities]
    assert kinds[0] == "relieve" and "rebalance" in kinds and "consolidate" in kinds
    assert kinds == sorted(kinds, key=["relieve", "rebalance", "localise", "consolidate"].index)
    reb = next(o for o in rep.opportunities if o.kind == "rebalance")
    assert reb.where == (1, 2) and reb.figures["same"] == "parent"
    assert reb.figures["balanced_load"] == pytest.approx((reb.figures["hot_p95"] + reb.figures["cold_p95"]) / 2)
    cold = rep.under_used(3)
    assert (cold["p95"] < 0.2).all() and 2 in cold["src_id"]
    lines = rep.lines()
    assert "hot spot element 1" in "\n".join(lines) and "leaving its region" in lines[1]
    rep2 = routing_efficiency(_flows(rng), _net(), interval_ms=IV, leave_share=0.3)
    assert any(o.kind == "localise" and o.where == (2,) for o in rep2.opportunities)


def test_rebalance_in_region_when_no_cold_sibling(rng):
    topo = _net()
    fl = _flows(rng)
    fl["bytes"][fl["src_element_id"] == 2] *= 12  # cell 2 busy too: no cold sibling at site 100
    rep = routing_efficiency(fl, topo, interval_ms=IV)
    reb = [o for o in rep.opportunities if o.kind == "rebalance"]
    assert reb and all(o.figures["same"] == "region" for o in reb)


def test_errors(rng):
    topo, fl = _net(), _flows(rng)
    with pytest.raises(ValueError, match="FLOW_DTYPE"):
        routing_efficiency(np.zeros(3), topo)
    with pytest.raises(ValueError, match="capacity_mbps"):
        routing_efficiency(fl, Topology.from_columns([1], {"region": [1]}))
    with pytest.raises(ValueError, match="cold < hot"):
        routing_efficiency(fl, topo, hot=0.1, cold=0.2)
    bad = fl.copy()
    bad["src_element_id"][0] = 999
    with pytest.raises(ValueError, match="999"):
        routing_efficiency(bad, topo)
    with pytest.raises(ValueError, match="one value per element"):
        with_capacities(topo, [1.0])
    with pytest.raises(ValueError, match="finite"):
        with_capacities(topo, -np.ones(topo.n_elements))


def test_synthetic_congestion_shows_as_hot_spots():
    day = generate(n_elements=1500, days=1, seed=7, n_congestion=4)
    topo = with_capacities(day.topology, day.capacity_mbps)
    rep = routing_efficiency(day.flow, topo, interval_ms=day.config.pm_interval_ms)
    congested = {d["element_ids"][0] for d in day.scenarios if d["scenario"] == "congestion"}
    hot = set(rep.hot_spots(20)["element_id"].tolist())
    assert len(congested & hot) >= 2, (congested, hot)
    assert rep.regions["share_leaving"].max() == 0.0  # every synthetic region has its own core
