"""Adapters that plug the analysis capabilities into the pipeline for ``telcoanalytics replay``.

Each adapter implements the component protocol of :mod:`telcoanalytics.pipeline`
(``update``, ``advance``, ``report_lines``, ``to_state``, ``load_state``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

COMPONENTS: dict = {}
"""name -> factory(topology, day, out_dir) of the available components, in run order."""


def build_components(topology, day, out_dir: Path, enabled=None) -> dict:
    """Instantiate the enabled components (default: all) for a replay."""
    names = list(COMPONENTS) if enabled is None else list(enabled)
    unknown = [n for n in names if n not in COMPONENTS]
    if unknown:
        raise SystemExit(f"unknown components {unknown}; available: {', '.join(COMPONENTS) or 'none'}")
    return {n: COMPONENTS[n](topology, day, out_dir) for n in names}


# ---- windows (issue 3) -------------------------------------------------------------------------
class WindowsComponent:
    """Per-element sliding windows of three replay metrics, with continuous EW decay.

    Slots are ``element_index * 3 + k`` for k = 0 call holding time (s, answered CDRs),
    1 QoS latency (ms), 2 equipment throughput (Mbit/s). Resolutions: 1 min x 60 and 1 h x 24;
    continuous EW mean/variance at half-lives 60 s, 1 h and 1 day. Memory is reported.
    """

    METRICS = ("holding_s", "latency_ms", "throughput_mbps")
    RESOLUTIONS = ((60_000, 60), (3_600_000, 24))
    HALF_LIVES_S = (60.0, 3600.0, 86400.0)

    def __init__(self, topology, allowed_lateness_ms: int = 900_000):
        from .windows import SlidingWindows
        self.topology = topology
        self.win = SlidingWindows(topology.n_elements * 3, self.RESOLUTIONS, allowed_lateness_ms, self.HALF_LIVES_S)
        self.n_side = 0   # events behind the windows' watermark (side output), counted, not folded in

    def update(self, source, rows, element_index):
        from .records import METRIC_CODE
        if source == "cdr":
            ok = rows["answer_ms"] >= 0
            ts, e, v = rows["start_ms"][ok], element_index[ok], (rows["end_ms"][ok] - rows["answer_ms"][ok]) / 1000.0
            k = 0
        elif source == "qos":
            ts, e, v, k = rows["ts_ms"], element_index, rows["latency_ms"], 1
        elif source == "equip":
            ok = rows["metric_id"] == METRIC_CODE["throughput_mbps"]
            ts, e, v, k = rows["ts_ms"][ok], element_index[ok], rows["value"][ok], 2
        else:
            return
        if len(ts):
            st = self.win.update(ts, e * 3 + k, v)
            self.n_side += int(np.count_nonzero(st.status == 1))

    def advance(self, watermark_ms):
        return []

    def topology_changed(self, topology, changes):
        """Added elements get new slots; existing elements keep theirs (dense indices are stable)."""
        n_new = topology.n_elements * 3
        if n_new > self.win.n_slots:
            self.win = self.win.rollup(np.arange(self.win.n_slots), n_new)   # identity groups: grow
        self.topology = topology

    def report_lines(self):
        from .decay import Decay
        w = self.win
        lines = [f"== windowed statistics ({len(self.RESOLUTIONS)} resolutions: 1 min x 60, 1 h x 24; "
                 f"EW half-lives 60 s / 1 h / 1 day; state {w.nbytes / 2**20:.0f} MiB for {w.n_slots:,} slots)"]
        t = w.max_ts_ms
        if t is None:
            return lines + ["  no data"]
        q_day = w.query(t, 24 * 3_600_000).reshape(-1, 3)
        q_hour = w.query(t, 3_600_000, decay=Decay.exponential(half_life_s=900.0)).reshape(-1, 3)
        ew = w.ew_values(t).reshape(-1, 3, len(self.HALF_LIVES_S))
        busiest = np.argsort(-q_day["count"][:, 0], kind="stable")[:5]
        eids = self.topology.ids[self.topology.element_level]
        lines.append("  busiest elements over the last 24 h (calls answered, holding time, QoS latency, throughput):")
        lines.append("  element      calls  hold_mean_s  hold_std_s  lat_mean_ms  lat_max_ms  lat_last_h_ms*  "
                     "lat_ew1h_ms  thr_mean_mbps")
        for e in busiest:
            a, b, c = q_day[e]
            lines.append(f"  {eids[e]:<10} {a['count']:7.0f} {a['mean']:12.1f} {a['std']:11.1f} {b['mean']:12.2f} "
                         f"{b['max']:11.2f} {q_hour[e, 1]['mean']:14.2f} {ew[e, 1, 1]['mean']:12.2f} {c['mean']:14.1f}")
        lines.append("  * last hour, exponentially decayed (half-life 15 min)")
        # roll the element slots up to regions (merge of window states along the topology)
        topo = self.topology
        slot = np.arange(w.n_slots)
        region = topo.element_to("region")[slot // 3] * 3 + slot % 3
        reg = w.rollup(region, topo.n_nodes("region") * 3).query(t, 3_600_000).reshape(-1, 3)
        lines.append("  regions over the last hour (windows rolled up the topology):")
        lines.append("  region    calls  hold_mean_s  lat_mean_ms  lat_std_ms  lat_max_ms")
        for r in range(topo.n_nodes("region")):
            a, b = reg[r, 0], reg[r, 1]
            lines.append(f"  {topo.ids['region'][r]:<7} {a['count']:7.0f} {a['mean']:12.1f} {b['mean']:12.2f} "
                         f"{b['std']:11.2f} {b['max']:11.2f}")
        lines.append(f"  events behind the windows' watermark (side output, not folded in): {self.n_side:,}")
        return lines

    def to_state(self):
        return {"win": self.win.to_state(), "n_side": self.n_side}

    def load_state(self, d):
        from .windows import SlidingWindows
        self.win = SlidingWindows.from_state(d["win"])
        self.n_side = int(d["n_side"])


COMPONENTS["windows"] = lambda topology, day, out_dir: WindowsComponent(topology)
