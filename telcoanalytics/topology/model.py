"""The network topology: a hierarchy of any depth over elements, as dense index arrays.

A topology has named levels from the root down, the last being the element level, for example
``("region", "site", "element")``. Every level's nodes have dense indices ``0..n-1``; the
hierarchy is a parent-index array per level; element ids (int64) map to dense element indices.
Kernels only ever see these integer arrays.

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

import json
from dataclasses import dataclass, field

import numpy as np

from kernels.partition import (
    compose_parent,
    partition_by_map_into,
    partition_scatter,
    segment_count,
    segment_max,
    segment_min,
    segment_sum,
)
from telcoanalytics.records import TOPOLOGY_DTYPE

ROLLUP_HOWS = ("sum", "count", "min", "max", "mean")


def _as_i8(name: str, a) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            return np.ascontiguousarray(arr, dtype=np.int64)
        if arr.size or arr.dtype.kind not in "fO":
            raise ValueError(f"{name} must hold integer ids, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _default_row_label(i: int) -> str:
    return f"row {i}"


def _fill_value(dtype: np.dtype):
    if dtype.kind == "f":
        return np.nan
    if dtype.kind in "iu":
        return -1
    if dtype.kind == "b":
        return False
    return ""


def _clean_attribute(name: str, a, n: int) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"attribute {name!r} must be one-dimensional, got shape {arr.shape}")
    if len(arr) != n:
        raise ValueError(f"attribute {name!r} has {len(arr)} values for {n} elements; give one value per element")
    if arr.dtype.kind == "O":
        arr = arr.astype(str)
    return np.ascontiguousarray(arr)


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


def scratch_dtype(n_keys: int) -> type:
    """Narrowest scratch dtype for :meth:`Topology.partition` over ``n_keys`` partitions.

    The scratch holds each row's key, ``0..n_keys`` (``n_keys`` = unrouted); a narrower buffer
    means less memory traffic: uint8 up to 255 partitions, int16 up to 32767, else int32.
    """
    return np.uint8 if n_keys <= 255 else np.int16 if n_keys <= 32767 else np.int32


@dataclass(eq=False)
class Topology:
    """Hierarchy of network elements.

    Parameters
    ----------
    levels : tuple of str
        Level names from the root down; the last is the element level.
    ids : dict level -> int64 array
        The external id of each dense node of that level (``ids[level][i]`` is node ``i``);
        unique within a level.
    parent : dict level -> int64 array
        For every level but the first, the dense index of each node's parent in the level above.
    attributes : dict name -> array
        Per-element attributes (equipment class, vendor, technology, lat, lon, ...), one value
        per dense element index.
    version : int
        Incremented on every change (add, retire, re-home, add node, compact).
    names : dict level -> str array, optional
        Optional display names of the nodes of some levels, one per dense node.
    active : bool array, optional
        ``False`` for retired elements (default: all active).
    change_log : list of dict, optional
        Records (:meth:`TopologyChange.to_record`) of the changes that led to this version.

    Raises
    ------
    ValueError
        If a level lacks ids or parents, a parent index is out of range, an id repeats within a
        level, or an attribute / name / active array has the wrong length.

    Examples
    --------
    >>> topo = Topology.from_columns([100, 101, 102], {"region": [1, 1, 2], "site": [10, 10, 20]})
    >>> topo.n_nodes("site"), topo.element_to("region").tolist()
    (2, [0, 0, 1])
    """

    levels: tuple[str, ...]
    ids: dict[str, np.ndarray]
    parent: dict[str, np.ndarray]
    attributes: dict[str, np.ndarray] = field(default_factory=dict)
    version: int = 0
    names: dict[str, np.ndarray] = field(default_factory=dict)
    active: np.ndarray | None = None
    change_log: list = field(default_factory=list)

    def __post_init__(self):
        self.levels = tuple(self.levels)
        if len(self.levels) < 1:
            raise ValueError("a topology needs at least one level (the element level)")
        if len(set(self.levels)) != len(self.levels):
            raise ValueError(f"level names must be distinct, got {self.levels}")
        self.ids = dict(self.ids)
        self.parent = dict(self.parent)
        for lv in self.levels:
            if lv not in self.ids:
                raise ValueError(f"ids has no entry for level {lv!r}; levels are {self.levels}")
            self.ids[lv] = _as_i8(f"ids[{lv!r}]", self.ids[lv])
        extra = [k for k in list(self.ids) + list(self.parent) if k not in self.levels]
        if extra:
            raise ValueError(f"unknown topology level {extra[0]!r} in ids/parent; levels are {self.levels}")
        for i, lv in enumerate(self.levels[1:], start=1):
            if lv not in self.parent:
                raise ValueError(
                    f"parent has no entry for level {lv!r}; every level below the root "
                    f"({self.levels[0]!r}) needs a parent-index array"
                )
            p = _as_i8(f"parent[{lv!r}]", self.parent[lv])
            n_up = len(self.ids[self.levels[i - 1]])
            if len(p) != len(self.ids[lv]):
                raise ValueError(f"parent[{lv!r}] has {len(p)} entries but level {lv!r} has {len(self.ids[lv])} nodes")
            if len(p) and (p.min() < 0 or p.max() >= n_up):
                raise ValueError(f"parent[{lv!r}] points outside level {self.levels[i - 1]!r} (0..{n_up - 1})")
            self.parent[lv] = p
        self.attributes = {
            name: _clean_attribute(name, a, self.n_elements) for name, a in dict(self.attributes).items()
        }
        names = {}
        for lv, a in dict(self.names).items():
            self._check_level(lv)
            arr = np.asarray(a).astype(str)
            if arr.shape != (len(self.ids[lv]),):
                raise ValueError(
                    f"names[{lv!r}] has shape {arr.shape}, expected ({len(self.ids[lv])},): one name per node"
                )
            names[lv] = arr
        self.names = names
        if self.active is None:
            self.active = np.ones(self.n_elements, dtype=bool)
        else:
            act = np.asarray(self.active)
            if act.shape != (self.n_elements,) or act.dtype.kind != "b":
                raise ValueError(
                    f"active must be a bool array of shape ({self.n_elements},), got {act.dtype} {act.shape}"
                )
            self.active = np.ascontiguousarray(act)
        self.version = int(self.version)
        self.change_log = list(self.change_log)
        self._build_lookup()

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def from_columns(
        cls,
        element_id,
        path: dict[str, np.ndarray],
        attributes: dict | None = None,
        element_level: str = "element",
        names: dict | None = None,
        row_label=_default_row_label,
    ) -> Topology:
        """Build from one row per element: its id and the ids of its ancestors, root level first.

        Parameters
        ----------
        element_id : int array, shape (n,)
            External element ids, unique.
        path : dict level -> int array
            Ordered ``{"region": region_ids, "site": site_ids}`` with one value per element,
            root level first. A node id must be unique within its level and have one parent.
        attributes : dict name -> array, optional
            Per-element attributes, one value per row.
        element_level : str
            Name of the leaf level.
        names : dict level -> str array, optional
            Node names given per row (one value per element row, repeated for a node's rows);
            for the element level, the element names.
        row_label : callable int -> str
            How errors name a row (loaders pass e.g. ``lambda i: f"line {i + 2}"``).

        Returns
        -------
        Topology
            Version 0; upper-level nodes are numbered in increasing id order, elements in row
            order.

        Raises
        ------
        ValueError
            Naming the rows: a repeated element id, a node with two parents, a node with two
            names, or a column of the wrong length.
        """
        element_id = _as_i8("element_id", element_id)
        n = len(element_id)
        if element_level in path:
            raise ValueError(f"path must list only the levels above {element_level!r}, got {tuple(path)}")
        order = np.argsort(element_id, kind="stable")
        sid = element_id[order]
        dup = np.flatnonzero(sid[1:] == sid[:-1])
        if len(dup):
            r1, r2 = order[dup[0]], order[dup[0] + 1]
            raise ValueError(
                f"element_id {sid[dup[0]]} appears more than once in the topology "
                f"({row_label(int(r1))} and {row_label(int(r2))}); element ids must be unique"
            )
        levels = tuple(path) + (element_level,)
        ids: dict[str, np.ndarray] = {}
        parent: dict[str, np.ndarray] = {}
        node_names: dict[str, np.ndarray] = {}
        names = dict(names or {})
        for lv in names:
            if lv not in levels:
                raise ValueError(f"names has unknown level {lv!r}; levels are {levels}")
        prev_lv = None
        node_of_row = None  # dense index of each row's node at the previous level
        for lv in path:
            col = _as_i8(f"path[{lv!r}]", path[lv])
            if len(col) != n:
                raise ValueError(f"path[{lv!r}] has {len(col)} values for {n} elements")
            uniq, inv = np.unique(col, return_inverse=True)
            inv = inv.reshape(-1).astype(np.int64)
            ids[lv] = uniq
            if node_of_row is not None:
                par = np.full(len(uniq), -1, dtype=np.int64)
                par[inv] = node_of_row
                bad = np.flatnonzero(par[inv] != node_of_row)
                if len(bad):
                    j = int(bad[0])
                    other = np.flatnonzero((inv == inv[j]) & (node_of_row != node_of_row[j]))
                    a, b = sorted((j, int(other[0])))
                    raise ValueError(
                        f"{lv} {col[j]} has two parents: {prev_lv} {ids[prev_lv][node_of_row[a]]} "
                        f"({row_label(a)}) and {prev_lv} {ids[prev_lv][node_of_row[b]]} ({row_label(b)}); "
                        f"each {lv} must belong to exactly one {prev_lv}"
                    )
                parent[lv] = par
            if lv in names:
                node_names[lv] = cls._names_per_node(lv, names[lv], inv, len(uniq), col, n, row_label)
            node_of_row = inv
            prev_lv = lv
        ids[element_level] = element_id
        if node_of_row is not None:
            parent[element_level] = node_of_row
        if element_level in names:
            en = np.asarray(names[element_level]).astype(str)
            if en.shape != (n,):
                raise ValueError(f"names[{element_level!r}] has {len(en)} values for {n} elements")
            node_names[element_level] = en
        return cls(levels, ids, parent, dict(attributes or {}), names=node_names)

    @staticmethod
    def _names_per_node(lv, row_names, inv, n_nodes, col, n, row_label) -> np.ndarray:
        rn = np.asarray(row_names).astype(str)
        if rn.shape != (n,):
            raise ValueError(f"names[{lv!r}] has {len(rn)} values for {n} elements; give one per row")
        out = np.empty(n_nodes, dtype=rn.dtype)
        out[inv] = rn
        bad = np.flatnonzero(out[inv] != rn)
        if len(bad):
            j = int(bad[0])
            a, b = sorted((j, int(np.flatnonzero((inv == inv[j]) & (rn != rn[j]))[0])))
            raise ValueError(
                f"{lv} {col[j]} has two names: {str(rn[a])!r} ({row_label(a)}) and {str(rn[b])!r} "
                f"({row_label(b)}); give every row of a {lv} the same name"
            )
        return out

    @classmethod
    def from_table(cls, table: np.ndarray) -> Topology:
        """Build the standard region > site > element topology from a ``TOPOLOGY_DTYPE`` array.

        Parameters
        ----------
        table : structured array with the fields of ``records.TOPOLOGY_DTYPE``
            One row per element.

        Returns
        -------
        Topology

        Raises
        ------
        ValueError
            If fields are missing, or ids repeat / conflict (naming the row).
        """
        missing = [f for f in TOPOLOGY_DTYPE.names if f not in (table.dtype.names or ())]
        if missing:
            raise ValueError(f"topology table lacks fields {missing}; expected {TOPOLOGY_DTYPE.names}")
        attrs = {
            f: np.ascontiguousarray(table[f])
            for f in TOPOLOGY_DTYPE.names
            if f not in ("element_id", "site_id", "region_id")
        }
        return cls.from_columns(table["element_id"], {"region": table["region_id"], "site": table["site_id"]}, attrs)

    def to_table(self) -> np.ndarray:
        """The topology as a ``TOPOLOGY_DTYPE`` array (region > site > element topologies only).

        Returns
        -------
        structured array
            One row per dense element (retired ones included).

        Raises
        ------
        ValueError
            If the levels are not ``(region, site, <element>)``.
        """
        if len(self.levels) != 3 or self.levels[:2] != ("region", "site"):
            raise ValueError(f"to_table needs levels (region, site, element), got {self.levels}")
        out = np.zeros(self.n_elements, dtype=TOPOLOGY_DTYPE)
        out["element_id"] = self.ids[self.element_level]
        out["site_id"] = self.ids["site"][self.element_to("site")]
        out["region_id"] = self.ids["region"][self.element_to("region")]
        for f in TOPOLOGY_DTYPE.names[3:]:
            out[f] = self.attributes[f] if f in self.attributes else _fill_value(TOPOLOGY_DTYPE[f])
        return out

    # ---- lookups ---------------------------------------------------------------------------
    def _build_lookup(self):
        self._sorted: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for lv in self.levels:
            a = self.ids[lv]
            order = np.argsort(a, kind="stable").astype(np.int64)
            s = a[order]
            dup = np.flatnonzero(s[1:] == s[:-1])
            if len(dup):
                raise ValueError(
                    f"{lv} id {s[dup[0]]} appears more than once (dense indices "
                    f"{order[dup[0]]} and {order[dup[0] + 1]}); ids must be unique per level"
                )
            self._sorted[lv] = (s, order)
        self._sorted_ids, self._sorted_idx = self._sorted[self.element_level]
        self._element_to: dict[str, np.ndarray] = {}
        self._route: dict[str, np.ndarray] = {}

    @property
    def element_level(self) -> str:
        return self.levels[-1]

    @property
    def n_elements(self) -> int:
        return len(self.ids[self.element_level])

    @property
    def n_active(self) -> int:
        """Number of elements that are not retired."""
        return int(np.count_nonzero(self.active))

    def n_nodes(self, level: str) -> int:
        """Number of dense nodes of ``level`` (for the element level, retired ones included).

        Raises
        ------
        ValueError
            If ``level`` is unknown.
        """
        return len(self.ids[self._check_level(level)])

    def _check_level(self, level: str) -> str:
        if level not in self.ids:
            raise ValueError(f"unknown topology level {level!r}; levels are {self.levels}")
        return level

    def _depth(self, level: str) -> int:
        return self.levels.index(self._check_level(level))

    def index_of(self, element_ids, level: str | None = None) -> np.ndarray:
        """Dense index of each id, -1 where the id is not in the topology.

        Parameters
        ----------
        element_ids : int array (any shape)
            External ids.
        level : str, optional
            The level the ids belong to (the element level by default).

        Returns
        -------
        int64 array, same shape
            Dense indices; retired elements still resolve (see :attr:`active`).

        Raises
        ------
        ValueError
            If ``level`` is unknown.
        """
        lv = self.element_level if level is None else self._check_level(level)
        sorted_ids, sorted_idx = self._sorted[lv]
        q = np.asarray(element_ids, dtype=np.int64)
        if len(sorted_ids) == 0:
            return np.full(q.shape, -1, dtype=np.int64)
        pos = np.searchsorted(sorted_ids, q)
        pos_c = np.minimum(pos, len(sorted_ids) - 1)
        hit = sorted_ids[pos_c] == q
        return np.where(hit, sorted_idx[pos_c], -1)

    def node_to(self, from_level: str, to_level: str) -> np.ndarray:
        """For each dense node of ``from_level``, the dense index of its ancestor at ``to_level``.

        Parameters
        ----------
        from_level, to_level : str
            ``to_level`` must be ``from_level`` or above it.

        Returns
        -------
        int64 array, shape (n_nodes(from_level),)

        Raises
        ------
        ValueError
            If a level is unknown or ``to_level`` is below ``from_level``.
        """
        d_from, d_to = self._depth(from_level), self._depth(to_level)
        if d_to > d_from:
            raise ValueError(
                f"level {to_level!r} is below {from_level!r}; roll up goes towards the root ({self.levels[0]!r})"
            )
        cur = np.arange(len(self.ids[from_level]), dtype=np.int64)
        for i in range(d_from, d_to, -1):
            cur = compose_parent(cur, self.parent[self.levels[i]])
        return cur

    def element_to(self, level: str) -> np.ndarray:
        """For each dense element index, the dense index of its ancestor at ``level``.

        Parameters
        ----------
        level : str
            Any level; the element level gives ``arange(n_elements)``.

        Returns
        -------
        int64 array, shape (n_elements,)
            Cached per level (do not modify it); retired elements keep their last ancestor.

        Raises
        ------
        ValueError
            If ``level`` is unknown.
        """
        self._check_level(level)
        if level not in self._element_to:
            self._element_to[level] = np.ascontiguousarray(self.node_to(self.element_level, level))
        return self._element_to[level]

    def route_map(self, level: str) -> np.ndarray:
        """Routing table: ancestor of each element at ``level``, ``-1`` for retired elements.

        Parameters
        ----------
        level : str
            Routing level.

        Returns
        -------
        int64 array, shape (n_elements,)
            What :meth:`partition` routes by (cached; do not modify it).

        Raises
        ------
        ValueError
            If ``level`` is unknown.
        """
        self._check_level(level)
        if level not in self._route:
            self._route[level] = np.where(self.active, self.element_to(level), -1).astype(np.int64)
        return self._route[level]

    # ---- routing and roll-up -----------------------------------------------------------------
    def _check_element_index(self, element_index) -> np.ndarray:
        idx = np.asarray(element_index)
        if idx.ndim != 1:
            raise ValueError(f"element_index must be one-dimensional, got shape {idx.shape}")
        if idx.dtype.kind not in "iu":
            raise ValueError(f"element_index must hold dense integer indices (from index_of), got dtype {idx.dtype}")
        return np.ascontiguousarray(idx, dtype=np.int64)

    def _raise_bad_index(self, idx: np.ndarray):
        bad = np.flatnonzero((idx < -1) | (idx >= self.n_elements))
        raise ValueError(
            f"element_index has {len(bad)} values outside -1..{self.n_elements - 1}, first "
            f"{idx[bad[0]]} at row {bad[0]}; map external ids with topology.index_of(ids) "
            "of this topology version (-1 marks unknown elements)"
        )

    def partition(self, element_index, level: str, *, out=None, scratch=None):
        """Group the rows of a batch by their element's node at ``level`` (counting sort).

        Parameters
        ----------
        element_index : int array, shape (n,)
            Dense element index of every row (``index_of``), ``-1`` for unknown elements.
        level : str
            Routing level (e.g. ``"region"``); the element level groups by element.
        out : int64 array, shape (>= n,), optional
            Reused output buffer for ``order`` (a view ``out[:n]`` is returned).
        scratch : uint8, int16 or int32 array, shape (>= n,), optional
            Reused scratch buffer, wide enough for ``n_nodes(level)`` (see :func:`scratch_dtype`).

        Returns
        -------
        order : int64 array, shape (n,)
            Row numbers grouped by node, stable (input order) within a node.
        offsets : int64 array, shape (n_nodes(level) + 2,)
            Rows of node ``k`` are ``order[offsets[k]:offsets[k + 1]]``. The last slice,
            ``order[offsets[-2]:offsets[-1]]``, holds the *unrouted* rows: unknown elements
            (``-1``) and retired elements; tell them apart with ``element_index[rows] == -1``
            and quarantine them. Nothing is dropped: ``offsets[-1] == n``.

        Raises
        ------
        ValueError
            If ``level`` is unknown, ``element_index`` is not 1-D integer, or holds a value
            outside ``-1..n_elements-1`` (naming the first row), or a buffer is too small.

        Notes
        -----
        One counting-sort pass (:func:`kernels.partition.partition_by_map_into`), O(n + nodes).
        """
        idx = self._check_element_index(element_index)
        route = self.route_map(level)
        n = len(idx)
        n_keys = self.n_nodes(level)
        order = np.empty(n, dtype=np.int64) if out is None else out
        if scratch is None:
            scratch = np.empty(n, dtype=scratch_dtype(n_keys))
        for name, buf, kinds in (("out", order, (np.int64,)), ("scratch", scratch, (np.uint8, np.int16, np.int32))):
            if buf.ndim != 1 or buf.dtype not in kinds or len(buf) < n or not buf.flags.c_contiguous:
                raise ValueError(
                    f"{name} must be a contiguous 1-D {'/'.join(np.dtype(k).name for k in kinds)} "
                    f"array of at least {n} entries, got {buf.dtype} {buf.shape}"
                )
        if n_keys > np.iinfo(scratch.dtype).max:
            raise ValueError(
                f"scratch is {scratch.dtype} but level {level!r} has {n_keys} nodes; pass a "
                f"{np.dtype(scratch_dtype(n_keys)).name} scratch (see scratch_dtype)"
            )
        offsets, n_invalid = partition_by_map_into(idx, route, n_keys, order, scratch)
        if n_invalid:
            self._raise_bad_index(idx)
        return order[:n], offsets

    def scatter(self, element_index, level: str, values):
        """Move ``values`` into partition order directly (one column, no ``order`` array).

        Parameters
        ----------
        element_index : int array, shape (n,)
            Dense element index of every row, ``-1`` for unknown elements.
        level : str
            Routing level.
        values : 1-D numeric array, shape (n,)
            Column to move.

        Returns
        -------
        sorted_values : array, shape (n,)
            ``values[order]`` for the ``order`` :meth:`partition` would return.
        offsets : int64 array, shape (n_nodes(level) + 2,)
            As in :meth:`partition` (last slice: unrouted rows).

        Raises
        ------
        ValueError
            As :meth:`partition`, and if ``values`` has another length or is not 1-D numeric.
        """
        idx = self._check_element_index(element_index)
        vals = np.asarray(values)
        if vals.shape != idx.shape or vals.dtype.kind not in "iufb":
            raise ValueError(f"values must be a numeric array of shape {idx.shape}, got {vals.dtype} {vals.shape}")
        if len(idx) and (idx.min() < -1 or idx.max() >= self.n_elements):
            self._raise_bad_index(idx)
        keys = np.full(len(idx), -1, dtype=np.int64)
        ok = idx >= 0
        keys[ok] = self.route_map(level)[idx[ok]]
        return partition_scatter(keys, self.n_nodes(level), np.ascontiguousarray(vals))

    def rollup(
        self, values, to_level: str, how: str = "sum", from_level: str | None = None, active_only: bool = False
    ) -> np.ndarray:
        """Roll per-node values up the hierarchy (segment reduction over the parent arrays).

        Parameters
        ----------
        values : float array, shape (n,) or (n, k)
            One row per dense node of ``from_level`` (elements by default). NaN is missing.
        to_level : str
            Target level, ``from_level`` or above.
        how : {"sum", "count", "min", "max", "mean"}
            Reduction. ``count`` counts non-NaN values; ``mean`` is sum / count.
        from_level : str, optional
            Level of the rows of ``values`` (default: the element level).
        active_only : bool
            Leave retired elements out (element-level input only). By default every row counts,
            so totals are conserved across a retire.

        Returns
        -------
        ndarray, shape (n_nodes(to_level),) or (n_nodes(to_level), k)
            float64 (int64 for ``count``). Empty nodes: sum 0, count 0, NaN for min/max/mean.

        Raises
        ------
        ValueError
            If a level or ``how`` is unknown, ``to_level`` is below ``from_level``, the shape is
            wrong, or ``active_only`` is used with a non-element ``from_level``.

        Notes
        -----
        Rolling up level by level equals rolling up directly for sum, count (sum the counts),
        min and max, since each is an associative, commutative reduction.
        """
        from_level = self.element_level if from_level is None else from_level
        if how not in ROLLUP_HOWS:
            raise ValueError(f"how must be one of {ROLLUP_HOWS}, got {how!r}")
        seg = self.node_to(from_level, to_level)
        n_from = len(seg)
        v = np.asarray(values)
        if v.ndim not in (1, 2) or v.shape[0] != n_from:
            raise ValueError(
                f"values must have shape ({n_from},) or ({n_from}, k): one row per {from_level}, got {v.shape}"
            )
        if v.dtype.kind not in "iufb":
            raise ValueError(f"values must be numeric, got dtype {v.dtype}")
        if active_only:
            if from_level != self.element_level:
                raise ValueError(f"active_only applies to element-level values, not {from_level!r}")
            seg = np.where(self.active, seg, -1)
        v2 = np.ascontiguousarray(v.reshape(n_from, -1), dtype=np.float64)
        n_to = self.n_nodes(to_level)
        if how == "sum":
            out = segment_sum(v2, seg, n_to)
        elif how == "count":
            out = segment_count(v2, seg, n_to)
        elif how == "min":
            out = segment_min(v2, seg, n_to)
        elif how == "max":
            out = segment_max(v2, seg, n_to)
        else:
            cnt = segment_count(v2, seg, n_to)
            with np.errstate(invalid="ignore", divide="ignore"):
                out = np.where(cnt > 0, segment_sum(v2, seg, n_to) / np.maximum(cnt, 1), np.nan)
        return out.reshape(-1) if v.ndim == 1 else out

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
        return Topology(**d)

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
        if not isinstance(target, Topology) or target.levels != self.levels:
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

    # ---- state -----------------------------------------------------------------------------
    def to_state(self) -> dict:
        """The topology as a dict of NumPy arrays and plain scalars / strings (checkpointing).

        Returns
        -------
        dict
            ``levels``, ``version``, ``attribute_names``, ``active``, ``change_log`` (JSON text)
            and ``ids.<level>``, ``parent.<level>``, ``names.<level>``, ``attr.<name>`` arrays.
        """
        d = {
            "levels": np.array(self.levels),
            "version": int(self.version),
            "attribute_names": np.array(list(self.attributes), dtype=str),
            "active": self.active.copy(),
            "change_log": json.dumps(self.change_log),
        }
        for lv in self.levels:
            d[f"ids.{lv}"] = self.ids[lv].copy()
            if lv in self.parent:
                d[f"parent.{lv}"] = self.parent[lv].copy()
            if lv in self.names:
                d[f"names.{lv}"] = self.names[lv].copy()
        for a, v in self.attributes.items():
            d[f"attr.{a}"] = v.copy()
        return d

    @classmethod
    def from_state(cls, d: dict) -> Topology:
        """Rebuild a topology from :meth:`to_state` output.

        Parameters
        ----------
        d : dict
            Output of :meth:`to_state` (possibly after a round trip through ``np.savez``).

        Returns
        -------
        Topology

        Raises
        ------
        ValueError
            If a required key is missing.
        """
        for key in ("levels", "version", "active"):
            if key not in d:
                raise ValueError(f"topology state lacks {key!r}; pass the dict from Topology.to_state()")
        levels = tuple(str(x) for x in np.asarray(d["levels"]))
        ids = {lv: d[f"ids.{lv}"] for lv in levels}
        parent = {lv: d[f"parent.{lv}"] for lv in levels[1:]}
        names = {lv: d[f"names.{lv}"] for lv in levels if f"names.{lv}" in d}
        attrs = {str(a): d[f"attr.{a}"] for a in np.asarray(d.get("attribute_names", []))}
        return cls(
            levels,
            ids,
            parent,
            attrs,
            int(d["version"]),
            names,
            np.asarray(d["active"], dtype=bool),
            json.loads(str(d.get("change_log", "[]"))),
        )

    def equals(self, other: Topology) -> bool:
        """True when both topologies have the same levels, ids, parents, names, attributes,
        active mask and version (``==`` is not defined on topologies)."""
        if not isinstance(other, Topology) or self.levels != other.levels or self.version != other.version:
            return False
        if set(self.attributes) != set(other.attributes) or set(self.names) != set(other.names):
            return False
        same = [np.array_equal(self.ids[lv], other.ids[lv]) for lv in self.levels]
        same += [np.array_equal(self.parent[lv], other.parent[lv]) for lv in self.levels[1:]]
        same += [np.array_equal(self.names[lv], other.names[lv]) for lv in self.names]
        same += [
            np.array_equal(self.attributes[a], other.attributes[a], equal_nan=self.attributes[a].dtype.kind == "f")
            for a in self.attributes
        ]
        same.append(np.array_equal(self.active, other.active))
        return all(same)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{lv}={len(self.ids[lv])}" for lv in self.levels)
        return f"Topology(version={self.version}, {sizes}, active={self.n_active}, attributes={list(self.attributes)})"
