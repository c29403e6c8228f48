"""The network topology: a hierarchy of any depth over elements, as dense index arrays.

A topology has named levels from the root down, the last being the element level, for example
``("region", "site", "element")``. Every level's nodes have dense indices ``0..n-1``; the
hierarchy is a parent-index array per level; element ids (int64) map to dense element indices.
Kernels only ever see these integer arrays.

Routing (partition, scatter, roll-up) lives in :mod:`telcoanalytics.topology.routing`, changes
(add, retire, restore, re-home, attributes, nodes) in :mod:`telcoanalytics.topology.changes`,
reconcile and compact in :mod:`telcoanalytics.topology.reconcile`; all are mixins of :class:`Topology`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from kernels.partition import (
    compose_parent,
)
from telcoanalytics.records import TOPOLOGY_DTYPE
from telcoanalytics.topology._validate import _as_i8, _clean_attribute, _default_row_label, _fill_value
from telcoanalytics.topology.changes import _Changes
from telcoanalytics.topology.reconcile import _Reconcile
from telcoanalytics.topology.routing import _Routing


@dataclass(eq=False)
class Topology(_Routing, _Changes, _Reconcile):
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
