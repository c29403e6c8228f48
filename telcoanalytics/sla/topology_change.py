"""How the SLA monitor follows topology changes while data flows (a mixin of ``SlaMonitor``)."""

from __future__ import annotations

import numpy as np

from kernels import kpi as K
from telcoanalytics.kpi import (
    MINUTE_MS,
    KpiCalculator,
)
from telcoanalytics.sla.lifecycle import _Eval
from telcoanalytics.sla.rules import SlaEvent
from telcoanalytics.topology import Topology, remap_rows


class _TopologyChanges:
    """``SlaMonitor.set_topology`` and its helpers."""

    # ---- topology changes ------------------------------------------------------------------
    def set_topology(self, topology: Topology, changes=None) -> list[SlaEvent]:
        """Follow a new topology version while data flows; returns the events it closes.

        Parameters
        ----------
        topology : Topology
            The new version (same levels).
        changes : list of TopologyChange, optional
            The changes leading from the running version to ``topology`` (as
            ``Pipeline.change_topology`` passes them). Needed only when dense indices move
            (``Topology.compact``); without them every level's existing nodes must keep their
            dense index and id (changes that only append, retire, restore, re-home or set
            attributes).

        Returns
        -------
        list of SlaEvent
            One ``resolved`` event (with ``emit_cancelled``, also for pending ones) per open
            violation whose scope node left the rule's scope, stamped at the last evaluated tick.

        Raises
        ------
        TypeError
            ``topology`` is not a Topology.
        ValueError
            Other levels; a rule filter naming an attribute the new topology lacks; changes that
            do not start at the running version or end at ``topology``'s; without changes, a
            level whose existing nodes moved.

        Notes
        -----
        * New elements (and new upper nodes) get zero counters and inactive lifecycles.
        * Counters stay with their element: after a re-home, every window evaluated from the
          change on counts the element toward its new site / region (its recent minutes
          included: its traffic moves with it) and no longer toward the old ones. Open
          violations of the old and new ancestors continue and resolve or fire on the new
          sums; nothing is closed by a re-home alone.
        * Retired elements (and elements that leave a rule's filter by ``set_attributes``) are
          out of scope from the change on: element-level rules no longer evaluate them and
          upper-level roll-ups leave them out. An open violation on a node left without any
          in-scope element (or removed by ``compact``) is closed at once: a ``resolved`` event
          whose summary says ``closed without recovery`` and why; a pending one is withdrawn.
          Its lifecycle starts afresh if the element is restored later.
        * Violations on unaffected nodes continue unchanged. Late data re-evaluated after the
          change uses the new structure.
        """
        if not isinstance(topology, Topology):
            raise TypeError(f"topology must be a telcoanalytics.topology.model.Topology, got {type(topology).__name__}")
        old = self.topology
        if tuple(topology.levels) != tuple(old.levels):
            raise ValueError(
                f"the new topology has levels {topology.levels}, the monitor runs {old.levels}; "
                "rules are bound to levels, build a new SlaMonitor for another hierarchy"
            )
        maps = self._topology_maps(old, topology, changes)
        prev, self.topology = self.topology, topology
        try:
            for r in self.rules:
                self._check_level(r)
        except ValueError:
            self.topology = prev
            raise
        out: list[SlaEvent] = []
        t_close = self.last_tick
        self._chg_reset()  # scopes, masks and segments change: every rule evaluated afresh
        for ev in self.evals:
            o2n = maps[ev.level]
            mask = self._mask(ev.filter)
            e2l = topology.element_to(ev.level)
            in_scope = np.zeros(topology.n_nodes(ev.level), bool)
            in_scope[e2l if mask is None else e2l[mask]] = True
            gone = np.flatnonzero((o2n < 0) | ~in_scope[np.maximum(o2n, 0)])
            if t_close >= 0:
                for node in gone[ev.state.state[gone] != K.ST_INACTIVE].tolist():
                    if o2n[node] < 0:
                        why = "removed from the topology"
                    elif ev.level == topology.element_level and not topology.active[o2n[node]]:
                        why = "element retired"
                    else:
                        why = "no active element of it left in the rule's scope"
                    e = self._closed_event(ev, node, t_close, why, prev)
                    if e is not None:
                        out.append(e)
            for ls in (ev.state, ev.committed):
                ls.state[gone], ls.count[gone], ls.start[gone], ls.worst[gone] = K.ST_INACTIVE, 0, -1, np.nan
            ev.codes[:, gone] = K.COND_INSUFFICIENT  # a re-evaluation cannot revive them
            for node in gone.tolist():
                ev.fired.pop(node, None)
            ev.mask = mask
        for ev in self.evals:
            o2n = maps[ev.level]
            n_new = topology.n_nodes(ev.level)
            if n_new == len(o2n) and np.array_equal(o2n, np.arange(n_new)):
                continue
            for ls in (ev.state, ev.committed):
                ls.state = remap_rows(ls.state, o2n, n_new, K.ST_INACTIVE)
                ls.count = remap_rows(ls.count, o2n, n_new, 0)
                ls.start = remap_rows(ls.start, o2n, n_new, -1)
                ls.worst = remap_rows(ls.worst, o2n, n_new, np.nan)
            ev.codes = np.ascontiguousarray(remap_rows(ev.codes.T, o2n, n_new, K.COND_INSUFFICIENT).T)
            ev.values = np.ascontiguousarray(remap_rows(ev.values.T, o2n, n_new, np.nan).T)
            ev.fired = {int(o2n[n]): f for n, f in ev.fired.items() if o2n[n] >= 0}
        el = maps[topology.element_level]
        self.store.set_topology(topology, el)
        gap = self.calc.gap_fraction
        sources = self.calc.gap_sources
        self.calc = KpiCalculator(self.store, self.kpis, gap, sources)
        for src in self._dirty:
            self._dirty[src] = remap_rows(self._dirty[src], el, topology.n_elements, False)
        self._memo.clear()
        return out

    def _closed_event(self, ev: _Eval, node: int, tick: int, why: str, topo: Topology):
        """The event closing ``node``'s open violation of ``ev`` because its scope went away
        (None for a pending one unless ``emit_cancelled``)."""
        st = int(ev.state.state[node])
        if st == K.ST_PENDING and not self.emit_cancelled:
            return None
        sid = int(topo.ids[ev.level][node])
        t = tick * MINUTE_MS
        value = float(ev.values[tick % max(self.reeval_minutes, 1), node])
        worst = float(ev.state.worst[node])
        what = "violation" if st == K.ST_FIRING else "pending violation"
        summary = (
            f"resolved: {ev.name} ({ev.kpi}) on {ev.level} {sid} closed without recovery: {why}; "
            f"{what} since {int(ev.state.start[node])}, worst {worst:.4g}"
        )
        return SlaEvent(
            ev.name,
            ev.kpi,
            ev.severity,
            "resolved",
            ev.level,
            sid,
            ev.service,
            t,
            int(ev.state.start[node]),
            t,
            value,
            ev.threshold,
            worst,
            summary,
        )

    @staticmethod
    def _topology_maps(old: Topology, new: Topology, changes) -> dict:
        """``old_to_new`` dense-index map per level from ``changes`` (or the identity)."""
        maps = {}
        if changes:
            if changes[0].from_version != old.version or changes[-1].to_version != new.version:
                raise ValueError(
                    f"changes lead from topology version {changes[0].from_version} to "
                    f"{changes[-1].to_version}, but the monitor runs version {old.version} "
                    f"and the new topology is version {new.version}"
                )
            for lv in old.levels:
                m = np.arange(old.n_nodes(lv), dtype=np.int64)
                for ch in changes:
                    step = np.asarray(ch.old_to_new[lv], np.int64)
                    m = np.where(m >= 0, step[np.maximum(m, 0)], -1)
                maps[lv] = m
            return maps
        for lv in old.levels:
            n = old.n_nodes(lv)
            if new.n_nodes(lv) < n or not np.array_equal(new.ids[lv][:n], old.ids[lv]):
                raise ValueError(
                    f"level {lv!r}: the new topology does not keep the existing {lv} nodes at "
                    "their dense indices (compacted or freshly loaded?); pass the changes that "
                    "lead to it (Topology.reconcile gives them)"
                )
            maps[lv] = np.arange(n, dtype=np.int64)
        return maps
