"""Routing efficiency from flow records and the topology: link and element utilisation, traffic
leaving its region, hot spots, under-used paths, and ranked optimisation opportunities.

A flow row (``records.FLOW_DTYPE``) is the traffic of one interval on the link ``src -> dst``
(a hop of the path, e.g. cell -> aggregation switch -> core router -> gateway). Capacities are
topology attributes, in Mbit/s: ``capacity_mbps`` of every element (what it can carry) and,
optionally, ``uplink_capacity_mbps`` of the link from an element to its next hop (default: the
source element's ``capacity_mbps``). Per interval, a link's load is its throughput over its
capacity; an element's load is the larger of its traffic in and out over its capacity.

Opportunities (ranked by kind, then by the traffic concerned):

``relieve``     a hot element (p95 load >= ``hot``): the peak traffic above ``hot`` x capacity
``rebalance``   a hot element with a cold sibling of the same class under the same parent, or in
                the same region: the traffic to move so both sit at their mean load
``localise``    a region whose traffic leaves it for more than ``leave_share`` of its bytes
``consolidate`` a cold link (p95 load < ``cold``): its unused capacity at p95
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from kernels.fold import factorize
from telcoanalytics.records import EQUIPMENT_CLASSES, FLOW_DTYPE

__all__ = ["Opportunity", "RoutingReport", "routing_efficiency", "with_capacities", "PERCENTILES"]

PERCENTILES = (50.0, 95.0, 99.0)
_KIND_RANK = {"relieve": 0, "rebalance": 1, "localise": 2, "consolidate": 3}


@dataclass(frozen=True)
class Opportunity:
    """One optimisation opportunity: ``kind``, where (ids), ``mbps`` (the traffic concerned, its
    ranking key within the kind), the ``figures`` behind it and a sentence."""

    kind: str
    where: tuple
    mbps: float
    figures: dict
    text: str


@dataclass
class RoutingReport:
    """Result of :func:`routing_efficiency`.

    Attributes
    ----------
    links : structured array
        Per link: ``src_id, dst_id, src_region, dst_region, capacity_mbps, mean_mbps, p50, p95,
        p99, max`` (loads, 0..), ``hot_intervals`` (load >= hot), ``gbytes``.
    elements : structured array
        Per element with traffic: ``element_id, region_id, parent_id, equipment_class,
        capacity_mbps, mean_mbps, p50, p95, p99, max, hot_intervals``.
    regions : structured array
        ``region_id, gbytes, gbytes_leaving, share_leaving`` (by the source element's region; bytes
        summed over every hop, so a byte crossing three links counts three times).
    opportunities : list of Opportunity
    interval_ms : int
    """

    links: np.ndarray
    elements: np.ndarray
    regions: np.ndarray
    opportunities: list
    interval_ms: int
    thresholds: dict = field(default_factory=dict)

    def hot_spots(self, k: int = 5) -> np.ndarray:
        """The ``k`` elements with the highest p95 load at or above the hot threshold."""
        e = self.elements[self.elements["p95"] >= self.thresholds["hot"]]
        return e[np.argsort(-e["p95"], kind="stable")[:k]]

    def under_used(self, k: int = 5) -> np.ndarray:
        """The ``k`` links with the most unused capacity at p95 among the cold ones."""
        c = self.links[self.links["p95"] < self.thresholds["cold"]]
        spare = c["capacity_mbps"] * (1.0 - c["p95"])
        return c[np.argsort(-spare, kind="stable")[:k]]

    def lines(self, k: int = 3) -> list[str]:
        out = [
            f"routing: {len(self.links):,} links, {len(self.elements):,} elements; "
            f"{int((self.elements['p95'] >= self.thresholds['hot']).sum())} hot elements (p95 load >= "
            f"{self.thresholds['hot']:.0%}), {int((self.links['p95'] < self.thresholds['cold']).sum())} "
            f"under-used links (p95 < {self.thresholds['cold']:.0%})"
        ]
        tot = float(self.regions["gbytes"].sum())
        out.append(
            f"  traffic leaving its region: {float(self.regions['gbytes_leaving'].sum()) / max(tot, 1e-12):.1%} "
            f"of {tot:,.1f} GB"
        )
        for h in self.hot_spots(k):
            out.append(
                f"  hot spot element {h['element_id']} ({EQUIPMENT_CLASSES[h['equipment_class']]}, region "
                f"{h['region_id']}): p95 load {h['p95']:.0%}, max {h['max']:.0%}, {h['hot_intervals']} hot intervals"
            )
        for o in self.opportunities[:k]:
            out.append(f"  opportunity ({o.kind}): {o.text}")
        return out


def with_capacities(topology, capacity_mbps, uplink_capacity_mbps=None):
    """A copy of ``topology`` with the capacity attributes set (one value per dense element).

    Raises
    ------
    ValueError
        If an array has the wrong length or a negative / non-finite value.
    """
    attrs = dict(topology.attributes)
    for name, v in (("capacity_mbps", capacity_mbps), ("uplink_capacity_mbps", uplink_capacity_mbps)):
        if v is None:
            continue
        a = np.asarray(v, dtype=np.float64)
        if a.shape != (topology.n_elements,):
            raise ValueError(f"{name} must hold one value per element ({topology.n_elements}), got shape {a.shape}")
        if not np.all(np.isfinite(a)) or (a < 0).any():
            raise ValueError(f"{name} must be finite and >= 0 Mbit/s")
        attrs[name] = a
    return replace(topology, attributes=attrs)


def _percentile_rows(mat: np.ndarray, qs) -> np.ndarray:
    return np.percentile(mat, qs, axis=1).T if mat.shape[1] else np.zeros((mat.shape[0], len(qs)))


def routing_efficiency(
    flows: np.ndarray,
    topology,
    *,
    interval_ms: int = 300_000,
    hot: float = 0.8,
    cold: float = 0.2,
    leave_share: float = 0.5,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> RoutingReport:
    """Utilisation, regional leakage, hot spots and opportunities from flow records.

    Parameters
    ----------
    flows : FLOW_DTYPE array
        Accepted flow rows; destinations not in the topology are kept as links (their region
        unknown, -1) but have no element load.
    topology : Topology
        With the ``capacity_mbps`` element attribute (see :func:`with_capacities`) and
        optionally ``uplink_capacity_mbps``; an element of capacity 0 has no load figures.
    interval_ms : int
        The flow reporting interval (loads are per interval; intervals without rows count as 0).
    hot, cold : float
        Load thresholds of hot spots and under-used links (0 < cold < hot).
    leave_share : float
        Share of a region's bytes leaving it above which ``localise`` is proposed.
    start_ms, end_ms : int, optional
        Span (default the flows' own, aligned to ``interval_ms``).

    Returns
    -------
    RoutingReport

    Raises
    ------
    ValueError
        For input that is not flow records, a topology without ``capacity_mbps``, flows from
        elements outside the topology, or bad thresholds.
    """
    if not isinstance(flows, np.ndarray) or flows.dtype.names is None or "src_element_id" not in flows.dtype.names:
        raise ValueError("flows must be a structured array of records.FLOW_DTYPE (accepted flow rows)")
    flows = flows if flows.dtype == FLOW_DTYPE else flows.astype(FLOW_DTYPE)
    if "capacity_mbps" not in topology.attributes:
        raise ValueError(
            "the topology has no 'capacity_mbps' attribute; add it with analysis.routing.with_capacities("
            "topology, capacity_mbps)"
        )
    if not 0.0 < cold < hot or not 0.0 < leave_share <= 1.0 or int(interval_ms) <= 0:
        raise ValueError(
            f"need 0 < cold < hot, 0 < leave_share <= 1, interval_ms > 0; got {cold}, {hot}, {leave_share}"
        )
    iv = int(interval_ms)
    t = flows["ts_ms"]
    lo = int(t.min()) // iv * iv if start_ms is None and len(t) else int(start_ms or 0)
    hi = (int(t.max()) // iv + 1) * iv if end_ms is None and len(t) else int(end_ms or lo + iv)
    n_t = max(1, -(-(hi - lo) // iv))
    # ---- links: (source, destination id) pairs, numbered in (source index, destination id) order
    code, u_src_id, u_dst_id = factorize(flows["src_element_id"], flows["dst_element_id"])  # one pass
    u_src = topology.index_of(u_src_id)
    if (u_src < 0).any():
        bad = flows["src_element_id"][(u_src < 0)[code]][0]
        raise ValueError(f"flow source element {bad} is not in the topology; ingest the flows with this topology first")
    b = (t - lo) // iv
    ok = (b >= 0) & (b < n_t)
    if ok.all():
        byt = flows["bytes"].astype(np.float64)
    else:
        code, b, byt = code[ok], b[ok], flows["bytes"][ok].astype(np.float64)
    mbps = byt * 8.0 / (iv / 1000.0) / 1e6
    region = topology.element_to("region") if "region" in topology.levels else np.zeros(topology.n_elements, int)
    region_ids = topology.ids["region"] if "region" in topology.levels else np.array([0])
    cap = np.asarray(topology.attributes["capacity_mbps"], dtype=np.float64)
    up_cap = np.asarray(topology.attributes.get("uplink_capacity_mbps", cap), dtype=np.float64)
    used = np.zeros(len(u_src), dtype=bool)
    used[code] = True
    kept = np.flatnonzero(used)  # pairs with rows in the span
    kept = kept[np.lexsort((u_dst_id[kept], u_src[kept]))]
    rank = np.full(len(u_src), -1, dtype=np.int64)
    rank[kept] = np.arange(len(kept))
    link = rank[code]
    src, dst = u_src[code], topology.index_of(u_dst_id)[code]
    pair = np.stack([u_src[kept], u_dst_id[kept]], axis=1)
    n_l = len(pair)
    thr = np.bincount(link * n_t + b, mbps, n_l * n_t).reshape(n_l, n_t)
    lcap = up_cap[pair[:, 0]] if n_l else np.zeros(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        lload = np.where(lcap[:, None] > 0, thr / lcap[:, None], np.nan)
    l_dst = topology.index_of(pair[:, 1]) if n_l else np.zeros(0, int)
    links = np.zeros(
        n_l,
        dtype=[
            ("src_id", "i8"),
            ("dst_id", "i8"),
            ("src_region", "i8"),
            ("dst_region", "i8"),
            ("capacity_mbps", "f8"),
            ("mean_mbps", "f8"),
            ("p50", "f8"),
            ("p95", "f8"),
            ("p99", "f8"),
            ("max", "f8"),
            ("hot_intervals", "i8"),
            ("gbytes", "f8"),
        ],
    )
    links["src_id"] = topology.ids[topology.element_level][pair[:, 0]] if n_l else []
    links["dst_id"] = pair[:, 1] if n_l else []
    links["src_region"] = region_ids[region[pair[:, 0]]] if n_l else []
    links["dst_region"] = np.where(l_dst >= 0, region_ids[region[np.maximum(l_dst, 0)]], -1) if n_l else []
    links["capacity_mbps"] = lcap
    links["mean_mbps"] = thr.mean(axis=1)
    pq = _percentile_rows(np.nan_to_num(lload, nan=0.0), PERCENTILES)
    links["p50"], links["p95"], links["p99"] = (np.where(lcap > 0, pq[:, i], np.nan) for i in range(3))
    links["max"] = np.where(lcap > 0, np.nan_to_num(lload, nan=0.0).max(axis=1, initial=0.0), np.nan)
    links["hot_intervals"] = (np.nan_to_num(lload, nan=0.0) >= hot).sum(axis=1)
    links["gbytes"] = np.bincount(link, byt, n_l) / 1e9
    # ---- elements: max(in, out) per interval
    n_e = topology.n_elements
    e_out = np.bincount(src * n_t + b, mbps, n_e * n_t).reshape(n_e, n_t)
    known = dst >= 0
    e_in = np.bincount(dst[known] * n_t + b[known], mbps[known], n_e * n_t).reshape(n_e, n_t)
    e_thr = np.maximum(e_in, e_out)
    has = (e_thr.sum(axis=1) > 0) & (cap > 0)
    ei = np.flatnonzero(has)
    eload = e_thr[ei] / cap[ei, None]
    parent = topology.element_to(topology.levels[-2]) if len(topology.levels) > 1 else np.zeros(n_e, int)
    cls = np.asarray(topology.attributes.get("equipment_class", np.zeros(n_e, int)), dtype=np.int64)
    elements = np.zeros(
        len(ei),
        dtype=[
            ("element_id", "i8"),
            ("region_id", "i8"),
            ("parent_id", "i8"),
            ("equipment_class", "i8"),
            ("capacity_mbps", "f8"),
            ("mean_mbps", "f8"),
            ("p50", "f8"),
            ("p95", "f8"),
            ("p99", "f8"),
            ("max", "f8"),
            ("hot_intervals", "i8"),
        ],
    )
    elements["element_id"] = topology.ids[topology.element_level][ei]
    elements["region_id"] = region_ids[region[ei]]
    elements["parent_id"] = topology.ids[topology.levels[-2]][parent[ei]] if len(topology.levels) > 1 else 0
    elements["equipment_class"] = cls[ei]
    elements["capacity_mbps"] = cap[ei]
    elements["mean_mbps"] = e_thr[ei].mean(axis=1)
    pe = _percentile_rows(eload, PERCENTILES)
    elements["p50"], elements["p95"], elements["p99"] = pe[:, 0], pe[:, 1], pe[:, 2]
    elements["max"] = eload.max(axis=1, initial=0.0)
    elements["hot_intervals"] = (eload >= hot).sum(axis=1)
    # ---- regions: bytes by the source's region, and those crossing to another region
    leaving = links["dst_region"] != links["src_region"]
    r_idx = np.searchsorted(region_ids, links["src_region"])
    regions = np.zeros(
        len(region_ids),
        dtype=[("region_id", "i8"), ("gbytes", "f8"), ("gbytes_leaving", "f8"), ("share_leaving", "f8")],
    )
    regions["region_id"] = region_ids
    regions["gbytes"] = np.bincount(r_idx, links["gbytes"], len(region_ids))
    regions["gbytes_leaving"] = np.bincount(r_idx, np.where(leaving, links["gbytes"], 0.0), len(region_ids))
    with np.errstate(invalid="ignore", divide="ignore"):
        regions["share_leaving"] = np.where(regions["gbytes"] > 0, regions["gbytes_leaving"] / regions["gbytes"], 0.0)
    thresholds = {"hot": hot, "cold": cold, "leave_share": leave_share}
    opps = _opportunities(links, elements, regions, thresholds)
    return RoutingReport(links, elements, regions, opps, iv, thresholds)


def _opportunities(links, elements, regions, th) -> list:
    hot, cold = th["hot"], th["cold"]
    out = []
    is_hot = elements["p95"] >= hot
    for i in np.flatnonzero(is_hot):
        e = elements[i]
        cap = float(e["capacity_mbps"])
        excess = max(float(e["p95"]) - hot, 0.0) * cap
        same = (
            (elements["equipment_class"] == e["equipment_class"])
            & ~is_hot
            & (elements["p95"] < cold + 0.5 * (hot - cold))
            & (np.arange(len(elements)) != i)
        )
        sib = np.flatnonzero(same & (elements["parent_id"] == e["parent_id"]))
        scope = "parent"
        if len(sib) == 0:
            sib = np.flatnonzero(same & (elements["region_id"] == e["region_id"]))
            scope = "region"
        name = (
            EQUIPMENT_CLASSES[int(e["equipment_class"])]
            if 0 <= e["equipment_class"] < len(EQUIPMENT_CLASSES)
            else "element"
        )
        if len(sib):
            j = sib[np.argmax(elements["capacity_mbps"][sib] * (1.0 - elements["p95"][sib]))]
            o = elements[j]
            target = (float(e["p95"]) * cap + float(o["p95"]) * float(o["capacity_mbps"])) / (
                cap + float(o["capacity_mbps"])
            )
            move = max((float(e["p95"]) - target) * cap, 0.0)
            out.append(
                Opportunity(
                    "rebalance",
                    (int(e["element_id"]), int(o["element_id"])),
                    move,
                    {
                        "hot_p95": float(e["p95"]),
                        "cold_p95": float(o["p95"]),
                        "balanced_load": target,
                        "move_mbps": move,
                        "same": scope,
                    },
                    f"move {move:,.0f} Mbit/s at p95 from {name} {e['element_id']} (p95 load {e['p95']:.0%}) to "
                    f"{o['element_id']} (p95 {o['p95']:.0%}, same {scope}): both at {target:.0%}",
                )
            )
        out.append(
            Opportunity(
                "relieve",
                (int(e["element_id"]),),
                excess,
                {
                    "p95": float(e["p95"]),
                    "max": float(e["max"]),
                    "hot_intervals": int(e["hot_intervals"]),
                    "capacity_mbps": cap,
                    "excess_mbps": excess,
                },
                f"{name} {e['element_id']} (region {e['region_id']}) runs at p95 load {e['p95']:.0%} "
                f"(max {e['max']:.0%}, {e['hot_intervals']} intervals >= {hot:.0%}): {excess:,.0f} Mbit/s above "
                f"{hot:.0%} of its {cap:,.0f} Mbit/s",
            )
        )
    for r in regions[regions["share_leaving"] > th["leave_share"]]:
        mb = float(r["gbytes_leaving"])
        out.append(
            Opportunity(
                "localise",
                (int(r["region_id"]),),
                mb,
                {"share_leaving": float(r["share_leaving"]), "gbytes_leaving": mb, "gbytes": float(r["gbytes"])},
                f"region {r['region_id']} sends {r['share_leaving']:.0%} of its traffic ({mb:,.1f} GB) out of the region",
            )
        )
    cold_links = links[links["p95"] < cold]
    for lk in cold_links:
        spare = float(lk["capacity_mbps"]) * (1.0 - float(lk["p95"]))
        out.append(
            Opportunity(
                "consolidate",
                (int(lk["src_id"]), int(lk["dst_id"])),
                spare,
                {"p95": float(lk["p95"]), "capacity_mbps": float(lk["capacity_mbps"]), "spare_mbps": spare},
                f"link {lk['src_id']} -> {lk['dst_id']} peaks at p95 load {lk['p95']:.0%}: {spare:,.0f} of "
                f"{lk['capacity_mbps']:,.0f} Mbit/s unused",
            )
        )
    out.sort(key=lambda o: (_KIND_RANK[o.kind], -o.mbps))
    return out
