"""Topology changes while data flows: versioned add / retire / restore / re-home / attribute /
node / compact operations, their :class:`TopologyChange` maps and :func:`remap_rows`.

Changes while data flows
------------------------
A topology is treated as immutable: :meth:`Topology.add_elements`,
:meth:`Topology.retire_elements`, :meth:`Topology.restore_elements`,
:meth:`Topology.rehome_elements`, :meth:`Topology.rehome_nodes`, :meth:`Topology.set_attributes`,
:meth:`Topology.add_node` and :meth:`Topology.compact` each return a *new* topology
(``version + 1``) and a :class:`TopologyChange` whose ``old_to_new`` maps (one per level) tell
components how to move their per-node state rows (:func:`remap_rows`).
:meth:`Topology.reconcile` derives those changes from a freshly loaded topology file.

Dense indices are append-only: adding elements or nodes appends rows, a re-home only changes
the parent array (the element keeps its row, so all state computed for it survives; its
ancestors change), and retiring an element only clears its bit in :attr:`Topology.active`.
A retired element keeps its dense index, so ``index_of`` still resolves it and state and late
data stay attributable, but routing (:meth:`Topology.partition`) sends its rows to the unrouted
slice, where the ingest layer quarantines them with a reason. Only :meth:`Topology.compact`
removes retired rows; its maps hold -1 for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from telcoanalytics.topology._validate import _as_i8, _fill_value

if TYPE_CHECKING:
    from telcoanalytics.topology.model import Topology


@dataclass(eq=False)
class TopologyChange:
    """What one topology change did, with the index maps components need to move their state.

    Parameters
    ----------
    kind : str
        ``"add_elements"``, ``"retire_elements"``, ``"restore_elements"``, ``"rehome_elements"``,
        ``"rehome_nodes"``, ``"set_attributes"``, ``"add_node"`` or ``"compact"``.
    from_version, to_version : int
        Topology version before and after the change (``to_version == from_version + 1``).
    old_to_new : dict level -> int64 array
        For every level, the new dense index of each old node (``-1`` if it was removed, which
        only :meth:`Topology.compact` does).
    n_new : dict level -> int
        Number of nodes per level after the change.
    level : str
        The level the change touched (the element level for element changes).
    ids : int64 array
        External ids of the nodes or elements the change touched.
    parent_ids : int64 array
        New parent ids of ``ids`` (add / re-home), -1 where there is none.
    old_parent_ids : int64 array
        Parent ids before a re-home, -1 otherwise.
    """

    kind: str
    from_version: int
    to_version: int
    old_to_new: dict[str, np.ndarray]
    n_new: dict[str, int]
    level: str
    ids: np.ndarray
    parent_ids: np.ndarray
    old_parent_ids: np.ndarray

    def remap(self, state_array, level: str | None = None, fill=0) -> np.ndarray:
        """Move rows of a per-node state array to the new dense indices (see :func:`remap_rows`).

        Parameters
        ----------
        state_array : array, shape (n_old, ...)
            One row per old node of ``level``.
        level : str, optional
            Level of the rows; the element level (``self.level``'s hierarchy leaf) by default.
        fill : scalar
            Value of rows for nodes that did not exist before.

        Returns
        -------
        ndarray, shape (n_new, ...)
            The remapped state.

        Raises
        ------
        ValueError
            If ``level`` is not a level of the topology.
        """
        if level is None:
            level = list(self.old_to_new)[-1]
        if level not in self.old_to_new:
            raise ValueError(f"unknown topology level {level!r}; levels are {tuple(self.old_to_new)}")
        return remap_rows(state_array, self.old_to_new[level], self.n_new[level], fill)

    def to_record(self) -> dict:
        """The change as a JSON-serialisable dict (the change-log row)."""
        return {
            "version": int(self.to_version),
            "kind": self.kind,
            "level": self.level,
            "ids": [int(x) for x in self.ids],
            "parent_ids": [int(x) for x in self.parent_ids],
            "old_parent_ids": [int(x) for x in self.old_parent_ids],
        }


def remap_rows(state_array, old_to_new, n_new: int, fill=0) -> np.ndarray:
    """Move the rows of a per-node state array to new dense indices.

    Parameters
    ----------
    state_array : array, shape (n_old, ...)
        Per-node state (any dtype, any trailing shape).
    old_to_new : int64 array, shape (n_old,)
        New row of each old row, ``-1`` to drop it (a compacted retired element).
    n_new : int
        Number of rows of the result.
    fill : scalar
        Value of the rows no old row moves to (new nodes).

    Returns
    -------
    ndarray, shape (n_new, ...)
        ``out[old_to_new[i]] = state_array[i]`` for every kept row; other rows are ``fill``.

    Raises
    ------
    ValueError
        If the lengths disagree or ``old_to_new`` points outside ``0..n_new-1``.

    Examples
    --------
    >>> remap_rows(np.array([1.0, 2.0, 3.0]), np.array([0, -1, 1]), 3, fill=np.nan)
    array([ 1.,  3., nan])
    """
    state = np.asarray(state_array)
    o2n = _as_i8("old_to_new", old_to_new)
    if state.ndim == 0 or state.shape[0] != len(o2n):
        raise ValueError(
            f"state_array has {state.shape[0] if state.ndim else 0} rows but old_to_new "
            f"has {len(o2n)}; pass the state of the topology version before the change"
        )
    n_new = int(n_new)
    if n_new < 0:
        raise ValueError(f"n_new must be >= 0, got {n_new}")
    keep = o2n >= 0
    if np.any(o2n[keep] >= n_new) or np.any(o2n < -1):
        raise ValueError(
            f"old_to_new points outside 0..{n_new - 1} (or below -1); use the map of the same TopologyChange as n_new"
        )
    out = np.full((n_new,) + state.shape[1:], fill, dtype=state.dtype)
    out[o2n[keep]] = state[keep]
    return out


class _Changes:
    """Mixin of :class:`~telcoanalytics.topology.model.Topology`: each change returns a new version and its maps."""

    # ---- changes ---------------------------------------------------------------------------
    def _identity_maps(self) -> tuple[dict, dict]:
        o2n = {lv: np.arange(len(self.ids[lv]), dtype=np.int64) for lv in self.levels}
        return o2n, {lv: len(self.ids[lv]) for lv in self.levels}

    def _next(self, change: TopologyChange, **kw) -> Topology:
        d = dict(
            levels=self.levels,
            ids=dict(self.ids),
            parent=dict(self.parent),
            attributes=dict(self.attributes),
            version=self.version + 1,
            names=dict(self.names),
            active=self.active,
            change_log=self.change_log + [change.to_record()],
        )
        d.update(kw)
        return type(self)(**d)

    def _resolve(self, ids, level: str, what: str) -> tuple[np.ndarray, np.ndarray]:
        ids = _as_i8(what, ids)
        idx = self.index_of(ids, level)
        if np.any(idx < 0):
            bad = ids[idx < 0][0]
            raise ValueError(
                f"{what}: {level} {bad} is not in the topology (version {self.version}); "
                f"{'add it first with add_node' if level != self.element_level else 'check the id'}"
            )
        return ids, idx

    def _check_distinct(self, ids: np.ndarray, what: str):
        s = np.sort(ids)
        dup = np.flatnonzero(s[1:] == s[:-1])
        if len(dup):
            raise ValueError(f"{what} lists id {s[dup[0]]} more than once; give each id once")

    def add_elements(
        self, element_ids, parent_ids=None, attributes: dict | None = None, names=None
    ) -> tuple[Topology, TopologyChange]:
        """Append new elements under existing parents.

        Parameters
        ----------
        element_ids : int array, shape (m,)
            New external element ids (not yet in the topology, also not as retired elements).
        parent_ids : int array, shape (m,)
            External id of each new element's parent at the level above (required unless the
            topology has only the element level).
        attributes : dict name -> array, optional
            Values for the new elements of existing attributes; attributes not given are filled
            with NaN (float), -1 (integer), False (bool) or "" (text).
        names : str array, shape (m,), optional
            Element names (only if the topology has element names; otherwise ignored if absent).

        Returns
        -------
        topology : Topology
            ``version + 1``; the new elements get dense indices ``n_elements..n_elements+m-1``.
        change : TopologyChange
            Identity ``old_to_new`` maps (state arrays only grow).

        Raises
        ------
        ValueError
            On an existing or repeated id, an unknown parent, a missing ``parent_ids``, an
            unknown attribute, or wrong lengths.
        """
        new_ids = _as_i8("element_ids", element_ids)
        m = len(new_ids)
        self._check_distinct(new_ids, "element_ids")
        have = self.index_of(new_ids)
        if np.any(have >= 0):
            j = int(np.flatnonzero(have >= 0)[0])
            state = "retired" if not self.active[have[j]] else "active"
            raise ValueError(
                f"element {new_ids[j]} is already in the topology ({state}, dense index "
                f"{have[j]}); use rehome_elements to move it, or a new id"
            )
        el = self.element_level
        ids = dict(self.ids)
        parent = dict(self.parent)
        ids[el] = np.concatenate([self.ids[el], new_ids])
        if len(self.levels) > 1:
            up = self.levels[-2]
            if parent_ids is None:
                raise ValueError(f"parent_ids is required: give the {up} id of each new element")
            pids, pidx = self._resolve(parent_ids, up, "parent_ids")
            if len(pids) != m:
                raise ValueError(f"parent_ids has {len(pids)} values for {m} new elements")
            parent[el] = np.concatenate([self.parent[el], pidx])
        else:
            if parent_ids is not None:
                raise ValueError("parent_ids must be None: this topology has only the element level")
            pids = np.full(m, -1, dtype=np.int64)
        attributes = dict(attributes or {})
        unknown = [a for a in attributes if a not in self.attributes]
        if unknown:
            raise ValueError(
                f"attribute {unknown[0]!r} is not in this topology; known attributes are {tuple(self.attributes)}"
            )
        attrs = {}
        for a, old in self.attributes.items():
            if a in attributes:
                add = np.asarray(attributes[a])
                if add.shape != (m,):
                    raise ValueError(f"attributes[{a!r}] has shape {add.shape}, expected ({m},)")
                if old.dtype.kind in "US":
                    add = add.astype(str)
                else:
                    add = add.astype(old.dtype)
            else:
                add = np.full(m, _fill_value(old.dtype), dtype=old.dtype if old.dtype.kind not in "US" else "U1")
            attrs[a] = np.concatenate([old, add])
        node_names = dict(self.names)
        if el in self.names:
            add = np.full(m, "") if names is None else np.asarray(names).astype(str)
            if add.shape != (m,):
                raise ValueError(f"names has shape {add.shape}, expected ({m},)")
            node_names[el] = np.concatenate([self.names[el], add])
        elif names is not None:
            raise ValueError("names given but this topology has no element names; build it with names")
        o2n, n_new = self._identity_maps()
        n_new[el] += m
        change = TopologyChange(
            "add_elements",
            self.version,
            self.version + 1,
            o2n,
            n_new,
            el,
            new_ids,
            pids,
            np.full(m, -1, dtype=np.int64),
        )
        topo = self._next(
            change,
            ids=ids,
            parent=parent,
            attributes=attrs,
            names=node_names,
            active=np.concatenate([self.active, np.ones(m, dtype=bool)]),
        )
        return topo, change

    def retire_elements(self, element_ids) -> tuple[Topology, TopologyChange]:
        """Mark elements retired: they keep their dense index, but routing no longer sends to them.

        Parameters
        ----------
        element_ids : int array
            External ids of active elements.

        Returns
        -------
        topology : Topology
            ``version + 1`` with ``active`` cleared for these elements.
        change : TopologyChange
            Identity maps (no state moves; :meth:`compact` removes the rows later).

        Raises
        ------
        ValueError
            If an id is unknown, repeated, or already retired.
        """
        ids, idx = self._resolve(element_ids, self.element_level, "element_ids")
        self._check_distinct(ids, "element_ids")
        if np.any(~self.active[idx]):
            bad = ids[~self.active[idx]][0]
            raise ValueError(f"element {bad} is already retired (since before version {self.version})")
        return self._set_active("retire_elements", ids, idx, False)

    def _parent_ids_of(self, idx: np.ndarray) -> np.ndarray:
        if len(self.levels) == 1:
            return np.full(len(idx), -1, dtype=np.int64)
        return self.ids[self.levels[-2]][self.parent[self.element_level][idx]]

    def rehome_elements(self, element_ids, new_parent_ids) -> tuple[Topology, TopologyChange]:
        """Move elements under new parents; each keeps its dense index (and all its state).

        Parameters
        ----------
        element_ids : int array, shape (m,)
            External ids of active elements.
        new_parent_ids : int array, shape (m,)
            External id of each element's new parent at the level above.

        Returns
        -------
        topology : Topology
            ``version + 1``; routing and roll-ups follow the new parents.
        change : TopologyChange
            Identity maps; ``old_parent_ids`` / ``parent_ids`` record the move.

        Raises
        ------
        ValueError
            On an unknown, repeated or retired element, an unknown parent, wrong lengths, or a
            topology with only the element level.
        """
        if len(self.levels) == 1:
            raise ValueError("this topology has only the element level; there is no parent to re-home to")
        ids, idx = self._resolve(element_ids, self.element_level, "element_ids")
        self._check_distinct(ids, "element_ids")
        pids, pidx = self._resolve(new_parent_ids, self.levels[-2], "new_parent_ids")
        if len(pids) != len(ids):
            raise ValueError(f"new_parent_ids has {len(pids)} values for {len(ids)} elements")
        if np.any(~self.active[idx]):
            raise ValueError(f"element {ids[~self.active[idx]][0]} is retired; it cannot be re-homed")
        old = self._parent_ids_of(idx)
        par = self.parent[self.element_level].copy()
        par[idx] = pidx
        parent = dict(self.parent)
        parent[self.element_level] = par
        o2n, n_new = self._identity_maps()
        change = TopologyChange(
            "rehome_elements", self.version, self.version + 1, o2n, n_new, self.element_level, ids, pids, old
        )
        return self._next(change, parent=parent), change

    def rehome_nodes(self, level: str, node_ids, new_parent_ids) -> tuple[Topology, TopologyChange]:
        """Move upper-level nodes (e.g. sites to another region); dense indices do not change.

        Parameters
        ----------
        level : str
            A level below the root and above the elements (use :meth:`rehome_elements` for
            elements).
        node_ids : int array, shape (m,)
            External ids of nodes of ``level``.
        new_parent_ids : int array, shape (m,)
            External id of each node's new parent in the level above.

        Returns
        -------
        topology : Topology
            ``version + 1``; all elements below a moved node follow it in routing and roll-ups.
        change : TopologyChange
            Identity maps; ``old_parent_ids`` / ``parent_ids`` record the move.

        Raises
        ------
        ValueError
            On the root or element level, an unknown or repeated node, an unknown parent, or
            wrong lengths.
        """
        d = self._depth(level)
        if level == self.element_level:
            raise ValueError(f"{level!r} is the element level; use rehome_elements")
        if d == 0:
            raise ValueError(f"{level!r} is the root level; its nodes have no parent to change")
        up = self.levels[d - 1]
        ids, idx = self._resolve(node_ids, level, "node_ids")
        self._check_distinct(ids, "node_ids")
        pids, pidx = self._resolve(new_parent_ids, up, "new_parent_ids")
        if len(pids) != len(ids):
            raise ValueError(f"new_parent_ids has {len(pids)} values for {len(ids)} nodes")
        old = self.ids[up][self.parent[level][idx]]
        par = self.parent[level].copy()
        par[idx] = pidx
        parent = dict(self.parent)
        parent[level] = par
        o2n, n_new = self._identity_maps()
        change = TopologyChange("rehome_nodes", self.version, self.version + 1, o2n, n_new, level, ids, pids, old)
        return self._next(change, parent=parent), change

    def restore_elements(self, element_ids) -> tuple[Topology, TopologyChange]:
        """Bring retired elements back into service (the inverse of :meth:`retire_elements`).

        Parameters
        ----------
        element_ids : int array
            External ids of retired elements; they get their old dense index and state back.

        Returns
        -------
        topology : Topology
            ``version + 1``; routing sends to these elements again.
        change : TopologyChange
            Identity maps.

        Raises
        ------
        ValueError
            If an id is unknown, repeated or not retired.
        """
        ids, idx = self._resolve(element_ids, self.element_level, "element_ids")
        self._check_distinct(ids, "element_ids")
        if np.any(self.active[idx]):
            raise ValueError(
                f"element {ids[self.active[idx]][0]} is not retired; only retired elements can be restored"
            )
        return self._set_active("restore_elements", ids, idx, True)

    def _set_active(self, kind: str, ids: np.ndarray, idx: np.ndarray, value: bool):
        """The next version with elements ``idx`` (validated) marked active or retired."""
        active = self.active.copy()
        active[idx] = value
        o2n, n_new = self._identity_maps()
        pids = self._parent_ids_of(idx)
        change = TopologyChange(kind, self.version, self.version + 1, o2n, n_new, self.element_level, ids, pids, pids)
        return self._next(change, active=active), change

    def set_attributes(self, element_ids, attributes: dict) -> tuple[Topology, TopologyChange]:
        """Change attribute values of existing elements (e.g. a vendor swap or new coordinates).

        Parameters
        ----------
        element_ids : int array, shape (m,)
            External ids of elements (retired ones included).
        attributes : dict name -> array, shape (m,)
            New values of existing attributes.

        Returns
        -------
        topology : Topology
            ``version + 1``.
        change : TopologyChange
            Identity maps.

        Raises
        ------
        ValueError
            On an unknown or repeated element, an unknown attribute, or wrong lengths.
        """
        ids, idx = self._resolve(element_ids, self.element_level, "element_ids")
        self._check_distinct(ids, "element_ids")
        attrs = dict(self.attributes)
        for a, vals in dict(attributes).items():
            if a not in attrs:
                raise ValueError(f"attribute {a!r} is not in this topology; known attributes are {tuple(attrs)}")
            v = np.asarray(vals)
            if v.shape != ids.shape:
                raise ValueError(f"attributes[{a!r}] has shape {v.shape}, expected {ids.shape}")
            col = attrs[a]
            if col.dtype.kind in "US":
                v = v.astype(str)
                col = col.astype(np.result_type(col.dtype, v.dtype))
            else:
                col = col.copy()
            col[idx] = v
            attrs[a] = col
        o2n, n_new = self._identity_maps()
        pids = self._parent_ids_of(idx)
        change = TopologyChange(
            "set_attributes", self.version, self.version + 1, o2n, n_new, self.element_level, ids, pids, pids
        )
        return self._next(change, attributes=attrs), change

    def add_node(
        self, level: str, node_id: int, parent_id: int | None = None, name: str | None = None
    ) -> tuple[Topology, TopologyChange]:
        """Append one node (e.g. a new site) to a level above the elements.

        Parameters
        ----------
        level : str
            A level other than the element level (use :meth:`add_elements` for elements).
        node_id : int
            New external id, unique within ``level``.
        parent_id : int, optional
            External id of the parent in the level above; must be None for the root level.
        name : str, optional
            Node name (levels that have names get "" when omitted).

        Returns
        -------
        topology : Topology
            ``version + 1``; the node's dense index is ``n_nodes(level)``.
        change : TopologyChange

        Raises
        ------
        ValueError
            On an unknown level, the element level, an existing id, a missing / unknown parent,
            or a parent given for the root level.
        """
        d = self._depth(level)
        if level == self.element_level:
            raise ValueError(f"{level!r} is the element level; use add_elements to add elements")
        nid = int(node_id)
        if self.index_of([nid], level)[0] >= 0:
            raise ValueError(f"{level} {nid} is already in the topology; node ids must be unique per level")
        ids = dict(self.ids)
        parent = dict(self.parent)
        ids[level] = np.append(self.ids[level], np.int64(nid))
        if d == 0:
            if parent_id is not None:
                raise ValueError(f"{level!r} is the root level; its nodes have no parent (pass parent_id=None)")
            pid = -1
        else:
            if parent_id is None:
                raise ValueError(f"parent_id is required: give the {self.levels[d - 1]} id of the new {level}")
            pid, pidx = self._resolve([parent_id], self.levels[d - 1], "parent_id")
            pid = int(pid[0])
            parent[level] = np.append(self.parent[level], pidx)
        names = dict(self.names)
        if level in names:
            names[level] = np.append(names[level], "" if name is None else str(name))
        elif name is not None:
            names[level] = np.append(np.full(len(self.ids[level]), "", dtype="U1"), str(name))
        o2n, n_new = self._identity_maps()
        n_new[level] += 1
        change = TopologyChange(
            "add_node",
            self.version,
            self.version + 1,
            o2n,
            n_new,
            level,
            np.array([nid], dtype=np.int64),
            np.array([pid], dtype=np.int64),
            np.array([-1], dtype=np.int64),
        )
        return self._next(change, ids=ids, parent=parent, names=names), change
