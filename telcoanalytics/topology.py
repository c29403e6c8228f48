"""The network topology: a hierarchy of any depth over elements, as dense index arrays.

A topology has named levels from the root down, the last being the element level, for example
``("region", "site", "element")``. Every level's nodes have dense indices ``0..n-1``; the
hierarchy is a parent-index array per level; element ids (int64) map to dense element indices.
Kernels only ever see these integer arrays.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .records import TOPOLOGY_DTYPE


def _as_i8(name: str, a) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer ids, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


@dataclass
class Topology:
    """Hierarchy of network elements.

    Parameters
    ----------
    levels : tuple of str
        Level names from the root down; the last is the element level.
    ids : dict level -> int64 array
        The external id of each dense node of that level (``ids[level][i]`` is node ``i``).
    parent : dict level -> int64 array
        For every level but the first, the dense index of each node's parent in the level above.
    attributes : dict name -> array
        Per-element attributes (equipment class, vendor, technology, lat, lon, ...), one value
        per dense element index.
    version : int
        Incremented on every change (add, retire, re-home).
    """

    levels: tuple[str, ...]
    ids: dict[str, np.ndarray]
    parent: dict[str, np.ndarray]
    attributes: dict[str, np.ndarray] = field(default_factory=dict)
    version: int = 0

    def __post_init__(self):
        self.levels = tuple(self.levels)
        if len(self.levels) < 1:
            raise ValueError("a topology needs at least one level (the element level)")
        for lv in self.levels:
            if lv not in self.ids:
                raise ValueError(f"ids has no entry for level {lv!r}; levels are {self.levels}")
            self.ids[lv] = _as_i8(f"ids[{lv!r}]", self.ids[lv])
        for i, lv in enumerate(self.levels[1:], start=1):
            p = _as_i8(f"parent[{lv!r}]", self.parent[lv])
            n_up = len(self.ids[self.levels[i - 1]])
            if len(p) != len(self.ids[lv]):
                raise ValueError(f"parent[{lv!r}] has {len(p)} entries but level {lv!r} has {len(self.ids[lv])} nodes")
            if len(p) and (p.min() < 0 or p.max() >= n_up):
                raise ValueError(f"parent[{lv!r}] points outside level {self.levels[i - 1]!r} (0..{n_up - 1})")
            self.parent[lv] = p
        for name, a in self.attributes.items():
            if len(a) != self.n_elements:
                raise ValueError(f"attribute {name!r} has {len(a)} values for {self.n_elements} elements")
        self._build_lookup()

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def from_columns(cls, element_id, path: dict[str, np.ndarray], attributes: dict | None = None,
                     element_level: str = "element") -> "Topology":
        """Build from one row per element: its id and the ids of its ancestors, root level first.

        ``path`` is an ordered dict ``{"region": region_ids, "site": site_ids}`` with one value
        per element. A node id must be unique within its level and have one parent.
        """
        element_id = _as_i8("element_id", element_id)
        if len(np.unique(element_id)) != len(element_id):
            vals, counts = np.unique(element_id, return_counts=True)
            raise ValueError(f"element_id {vals[counts > 1][0]} appears more than once in the topology")
        levels = tuple(path) + (element_level,)
        ids: dict[str, np.ndarray] = {}
        parent: dict[str, np.ndarray] = {}
        node_of_row = None  # dense index of each row's node at the previous level
        for lv in path:
            col = _as_i8(lv, path[lv])
            if len(col) != len(element_id):
                raise ValueError(f"path[{lv!r}] has {len(col)} values for {len(element_id)} elements")
            uniq, inv = np.unique(col, return_inverse=True)
            ids[lv] = uniq
            if node_of_row is not None:
                par = np.full(len(uniq), -1, dtype=np.int64)
                par[inv] = node_of_row
                # every node must have exactly one parent
                if np.any(par[inv] != node_of_row):
                    bad = uniq[inv[par[inv] != node_of_row][0]]
                    raise ValueError(f"{lv} {bad} has more than one parent in the topology")
                parent[lv] = par
            node_of_row = inv.astype(np.int64)
        ids[element_level] = element_id
        if node_of_row is not None:
            parent[element_level] = node_of_row
        return cls(levels, ids, parent, dict(attributes or {}))

    @classmethod
    def from_table(cls, table: np.ndarray) -> "Topology":
        """Build the standard region > site > element topology from a ``TOPOLOGY_DTYPE`` array."""
        missing = [f for f in TOPOLOGY_DTYPE.names if f not in (table.dtype.names or ())]
        if missing:
            raise ValueError(f"topology table lacks fields {missing}; expected {TOPOLOGY_DTYPE.names}")
        attrs = {f: np.ascontiguousarray(table[f]) for f in TOPOLOGY_DTYPE.names
                 if f not in ("element_id", "site_id", "region_id")}
        return cls.from_columns(table["element_id"], {"region": table["region_id"], "site": table["site_id"]},
                                attrs)

    # ---- lookups ---------------------------------------------------------------------------
    def _build_lookup(self):
        eid = self.ids[self.element_level]
        order = np.argsort(eid, kind="stable")
        self._sorted_ids = eid[order]
        self._sorted_idx = order.astype(np.int64)
        self._element_to: dict[str, np.ndarray] = {}

    @property
    def element_level(self) -> str:
        return self.levels[-1]

    @property
    def n_elements(self) -> int:
        return len(self.ids[self.element_level])

    def n_nodes(self, level: str) -> int:
        return len(self.ids[self._check_level(level)])

    def _check_level(self, level: str) -> str:
        if level not in self.ids:
            raise ValueError(f"unknown topology level {level!r}; levels are {self.levels}")
        return level

    def index_of(self, element_ids) -> np.ndarray:
        """Dense element index of each id, -1 where the id is not in the topology."""
        q = np.asarray(element_ids, dtype=np.int64)
        pos = np.searchsorted(self._sorted_ids, q)
        pos_c = np.minimum(pos, max(len(self._sorted_ids) - 1, 0))
        if len(self._sorted_ids) == 0:
            return np.full(q.shape, -1, dtype=np.int64)
        hit = self._sorted_ids[pos_c] == q
        return np.where(hit, self._sorted_idx[pos_c], -1)

    def element_to(self, level: str) -> np.ndarray:
        """For each dense element index, the dense index of its ancestor at ``level``."""
        self._check_level(level)
        if level == self.element_level:
            return np.arange(self.n_elements, dtype=np.int64)
        if level not in self._element_to:
            cur = np.arange(self.n_elements, dtype=np.int64)
            for i in range(len(self.levels) - 1, 0, -1):
                cur = self.parent[self.levels[i]][cur]
                if self.levels[i - 1] == level:
                    break
            self._element_to[level] = np.ascontiguousarray(cur)
        return self._element_to[level]
