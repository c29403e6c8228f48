"""Whole-topology changes of a :class:`~telcoanalytics.topology.model.Topology`: reconciling the
running topology with a freshly loaded file (as a sequence of index-preserving changes), and
compaction (the one change that renumbers, dropping retired rows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from telcoanalytics.topology.changes import TopologyChange

if TYPE_CHECKING:
    from telcoanalytics.topology.model import Topology


class _Reconcile:
    """Mixin of :class:`~telcoanalytics.topology.model.Topology`: :meth:`reconcile` and :meth:`compact`
    (built on the single changes of :class:`~telcoanalytics.topology.changes._Changes`)."""

    def reconcile(self, target: Topology) -> tuple[Topology, list]:
        """Turn this topology into ``target`` by changes that keep every dense index.

        Use it when an operator ships a fresh topology file (whose own numbering is unrelated to
        the running one): the result has ``target``'s structure, but existing elements and nodes
        keep their rows, so no state is lost.

        Parameters
        ----------
        target : Topology
            The wanted structure, with the same levels and attribute names.

        Returns
        -------
        topology : Topology
            Equal to ``target`` up to dense numbering; nodes of this topology that ``target``
            lacks are kept (elements are retired, upper-level nodes stay, possibly empty).
        changes : list of TopologyChange
            In order: added nodes (top-down), re-homed nodes, restored, added, re-homed, retired
            elements, changed attributes; one version step each (empty list if nothing changed).

        Raises
        ------
        ValueError
            If the levels or attribute names differ.
        """
        if not isinstance(target, type(self)) or target.levels != self.levels:
            raise ValueError(
                f"target must be a Topology with levels {self.levels}, got "
                f"{getattr(target, 'levels', type(target).__name__)}"
            )
        if set(target.attributes) != set(self.attributes):
            raise ValueError(
                f"target attributes {sorted(target.attributes)} differ from {sorted(self.attributes)}; "
                "reconcile keeps the attribute set"
            )
        cur, changes = self, []

        def step(res):
            nonlocal cur
            cur = res[0]
            changes.append(res[1])

        def target_parent_ids(lv, idx_t):
            d = self._depth(lv)
            return target.ids[self.levels[d - 1]][target.parent[lv][idx_t]]

        for d, lv in enumerate(self.levels[:-1]):
            t_ids = target.ids[lv]
            new = np.flatnonzero(cur.index_of(t_ids, lv) < 0)
            for j in new:
                pid = None if d == 0 else int(target_parent_ids(lv, np.array([j]))[0])
                name = str(target.names[lv][j]) if lv in target.names else None
                step(cur.add_node(lv, int(t_ids[j]), pid, name))
            if d > 0:
                idx_c = cur.index_of(t_ids, lv)
                want = target_parent_ids(lv, np.arange(len(t_ids)))
                have = cur.ids[self.levels[d - 1]][cur.parent[lv][idx_c]]
                moved = np.flatnonzero(want != have)
                if len(moved):
                    step(cur.rehome_nodes(lv, t_ids[moved], want[moved]))
        el = self.element_level
        t_ids = target.ids[el]
        idx_c = cur.index_of(t_ids)
        t_active = target.active
        back = np.flatnonzero((idx_c >= 0) & t_active)
        back = back[~cur.active[idx_c[back]]]
        if len(back):
            step(cur.restore_elements(t_ids[back]))
        new = np.flatnonzero(idx_c < 0)
        if len(new):
            pids = target_parent_ids(el, new) if len(self.levels) > 1 else None
            step(
                cur.add_elements(
                    t_ids[new],
                    pids,
                    {a: v[new] for a, v in target.attributes.items()},
                    names=target.names[el][new] if el in cur.names and el in target.names else None,
                )
            )
            if np.any(~t_active[new]):
                step(cur.retire_elements(t_ids[new][~t_active[new]]))
        if len(self.levels) > 1:
            idx_c = cur.index_of(t_ids)
            want = target_parent_ids(el, np.arange(len(t_ids)))
            have = cur.ids[self.levels[-2]][cur.parent[el][idx_c]]
            moved = np.flatnonzero((want != have) & cur.active[idx_c])
            if len(moved):
                step(cur.rehome_elements(t_ids[moved], want[moved]))
        in_target = np.zeros(cur.n_elements, dtype=bool)
        in_target[cur.index_of(t_ids)] = True
        t_act = np.zeros(cur.n_elements, dtype=bool)
        t_act[cur.index_of(t_ids)] = t_active
        gone = np.flatnonzero(cur.active & ~t_act)
        if len(gone):
            step(cur.retire_elements(cur.ids[el][gone]))
        idx_c = cur.index_of(t_ids)
        diff = np.zeros(len(t_ids), dtype=bool)
        for a, v in target.attributes.items():
            c = cur.attributes[a][idx_c]
            same = (c == v) | ((c != c) & (v != v)) if v.dtype.kind == "f" else (c == v)
            diff |= ~np.asarray(same, dtype=bool)
        if np.any(diff):
            step(cur.set_attributes(t_ids[diff], {a: v[diff] for a, v in target.attributes.items()}))
        return cur, changes

    def compact(self, drop_empty_nodes: bool = False) -> tuple[Topology, TopologyChange]:
        """Remove retired elements (and optionally nodes left without children) for good.

        Parameters
        ----------
        drop_empty_nodes : bool
            Also remove upper-level nodes with no remaining children, bottom-up.

        Returns
        -------
        topology : Topology
            ``version + 1`` with dense indices renumbered (order kept).
        change : TopologyChange
            ``old_to_new`` maps with ``-1`` for removed rows; pass every per-node state array
            through :func:`remap_rows` (removed rows' state is dropped then, so export it first
            if it matters).
        """
        keep = {self.element_level: self.active.copy()}
        for d in range(len(self.levels) - 2, -1, -1):
            lv = self.levels[d]
            if drop_empty_nodes:
                child = self.levels[d + 1]
                has = np.zeros(len(self.ids[lv]), dtype=bool)
                has[self.parent[child][keep[child]]] = True
                keep[lv] = has
            else:
                keep[lv] = np.ones(len(self.ids[lv]), dtype=bool)
        o2n, n_new = {}, {}
        for lv in self.levels:
            k = keep[lv]
            m = np.full(len(k), -1, dtype=np.int64)
            m[k] = np.arange(int(k.sum()), dtype=np.int64)
            o2n[lv], n_new[lv] = m, int(k.sum())
        ids = {lv: self.ids[lv][keep[lv]] for lv in self.levels}
        parent = {}
        for d, lv in enumerate(self.levels[1:], start=1):
            parent[lv] = o2n[self.levels[d - 1]][self.parent[lv][keep[lv]]]
        el = self.element_level
        attrs = {a: v[keep[el]] for a, v in self.attributes.items()}
        names = {lv: v[keep[lv]] for lv, v in self.names.items()}
        gone = self.ids[el][~keep[el]]
        change = TopologyChange(
            "compact",
            self.version,
            self.version + 1,
            o2n,
            n_new,
            el,
            gone,
            np.full(len(gone), -1, dtype=np.int64),
            self._parent_ids_of(np.flatnonzero(~keep[el])),
        )
        topo = self._next(
            change, ids=ids, parent=parent, attributes=attrs, names=names, active=np.ones(n_new[el], dtype=bool)
        )
        return topo, change
