"""Multi-dimensional data cubes built from the stream: roll-up, drill-down, slice, dice, top-k, pivot.

Usage
-----
>>> spec = CubeSpec(dimensions=["region", "service", "hour_of_day"],
...                 measures=["count", "sum:duration_ms", "p95:duration_ms"])   # doctest: +SKIP
>>> cube = Cube(spec, topology)                                                 # doctest: +SKIP
>>> cube.update(cdr_batch)                                                      # doctest: +SKIP
>>> cube.query(by=("region",), where={"service": "voice"})                      # doctest: +SKIP
>>> cube.view().group_by("region").drill_down("service").top_k("count", 5)      # doctest: +SKIP

How a batch is applied
----------------------
1. Dimension codes and value fields are computed once per batch (shared by all cubes of a
   :class:`CubeSet`).
2. Outside any lock, the batch is accumulated into a *delta*: one kernel pass over the events
   into the base cuboid (the finest stored key of the cube), then every materialised cuboid's
   delta is rolled up from the smallest delta already built that covers it (cells, not events).
3. Under the cube's lock, the budget is checked for all cuboids first (a batch that would exceed
   ``cell_budget`` raises :class:`CubeBudgetError` and changes nothing), then the deltas merge
   into the state. Queries take the same lock, so they see whole batches only.

*Direct build* (chosen per batch by modelled cost, see ``CubeSpec.direct_min_keys``: when a
per-batch delta would hold nearly as many cells as the batch has events, e.g. element x service x
hour), the finest cuboid is accumulated straight into its state, and the other cuboids
are grouped under small bases (region x service x class x hour ...) fed from the events and
rolled up as above. Functional dependencies (element -> site, region, class) make this exact.
It runs under the lock (queries wait for the batch) and only when the batch cannot exceed the
budget even if every event made new cells; otherwise the delta build applies. Opt-in, with count
and at most one value field's sum / min / max (``spec.positional_max_keys``), the finest cuboid stores
its measures by position (row = packed key: no index lookup per event); its compact cells are
gathered when read (:class:`~telcoanalytics.cube.table.PositionalCellTable`).

In a :class:`CubeSet`, cubes with the same measure layout share one pass over the events: the
batch is accumulated once per group under the largest base that covers the others, and each
cube rolls its base delta up from those cells.

After a topology change (:meth:`Cube.set_topology`) the topology dimensions use versioned codes
(:class:`telcoanalytics.cube.dims.TopologySlots`): history keeps the parents its events had.

The batch build lives in :mod:`telcoanalytics.cube.build`, queries in
:mod:`telcoanalytics.cube.query`, views in :mod:`telcoanalytics.cube.views` and sets of cubes in
:mod:`telcoanalytics.cube.cubeset`.

Notes
-----
Gray et al. 1997, "Data Cube: a relational aggregation operator generalizing group-by,
cross-tab, and sub-totals"; Harinarayan, Rajaraman, Ullman 1996, "Implementing data cubes
efficiently" (answering a group-by from its smallest materialised ancestor).
"""

from __future__ import annotations

import threading

import numpy as np

from kernels.cube import cube_code_stats
from telcoanalytics.cube.build import CubeBudgetError, UpdateReport, _CubeBuild, _Cuboid
from telcoanalytics.cube.dims import (
    ATTRIBUTE_NAMES,
    BatchArrays,
    BatchContext,
    Dimension,
    TopologySlots,
    ValueField,
    builtin_dimension,
    builtin_value,
    prepare_batch,
    splitmix64,
    time_granularity_ms,
)
from telcoanalytics.cube.query import _CubeQueries, _measure_str
from telcoanalytics.cube.spec import CubeSpec, KeySpace, Measure, reduce_dims, resolve_cuboids
from telcoanalytics.cube.table import CellTable, PositionalCellTable
from telcoanalytics.topology.model import Topology


def hll_relative_error(p: int) -> float:
    """Relative standard error ``1.04 / sqrt(2**p)`` of the distinct-count estimate."""
    return 1.04 / np.sqrt(2.0**p)


def _new_lock():
    return threading.RLock()


class Cube(_CubeBuild, _CubeQueries):
    """A data cube kept up to date batch by batch.

    Parameters
    ----------
    spec : CubeSpec
    topology : Topology or None
        Needed by topology dimensions (region, site, element, equipment class, ...).
    dimensions : dict name -> Dimension, optional
        Shared or custom dimension objects (a CubeSet passes its own so codes are computed once).
    name : str

    Raises
    ------
    ValueError
        For an unknown dimension, measure field, cuboid, or an invalid retention set-up.
    """

    def __init__(
        self,
        spec: CubeSpec,
        topology: Topology | None = None,
        *,
        dimensions: dict[str, Dimension] | None = None,
        name: str = "cube",
        _lock=None,
        _slots: TopologySlots | None = None,
    ):
        if not isinstance(spec, CubeSpec):
            raise ValueError(f"spec must be a CubeSpec, got {type(spec).__name__}")
        spec.validate()
        self.spec = spec
        self.name = name
        self.topology = topology
        self._lock = _lock or _new_lock()
        self._wlock = threading.Lock()  # one writer at a time (the delta buffers are shared)
        self.dims: dict[str, Dimension] = {}
        self._slots = _slots if _slots is not None or topology is None else TopologySlots.initial(topology)
        shared = dimensions if dimensions is not None else {}
        for d in spec.dimensions:
            if isinstance(d, Dimension):
                dim = d
            elif isinstance(d, str):
                dim = shared.get(d) or builtin_dimension(d, topology, spec.time_origin_ms, self._slots)
            else:
                raise ValueError(f"a dimension is a name or a Dimension, got {d!r}")
            if dim.name in self.dims:
                raise ValueError(f"dimension {dim.name!r} appears twice in the cube")
            self.dims[dim.name] = dim
        # derived dimensions reachable from the cube's dimensions are queryable too
        self.all_dims: dict[str, Dimension] = dict(self.dims)
        for d in list(self.dims.values()):
            for target in d.derive:
                if target not in self.all_dims:
                    self.all_dims[target] = shared.get(target) or builtin_dimension(
                        target, topology, spec.time_origin_ms, self._slots
                    )
        self._setup_measures()
        names = list(self.dims)
        groups = resolve_cuboids(spec.cuboids, names)
        tshape = (len(self.value_names), len(self.hash_names), spec.hll_p, len(self.q_names), spec.quantile_buckets)
        self._tshape = tshape
        self.cuboids: list[_Cuboid] = []
        for g in groups:
            ks = KeySpace.of(reduce_dims(g, self.dims), self.dims)
            self.cuboids.append(_Cuboid(g, ks, CellTable(ks.size, ks.size <= spec.dense_limit, *tshape)))
        union = [n for n in names if any(n in c.keys.dims for c in self.cuboids)]
        self.base_keys = KeySpace.of(reduce_dims(union, self.dims), self.dims)
        self._base_delta_t = None  # allocated on first use (the direct build rarely needs it)
        self._plan_deltas()
        self._plan_direct()
        self._mode = self._last_build = "delta"
        self._setup_retention()
        self.version = 0
        self.n_rows = 0
        self.n_rejected = 0
        self.n_expired = 0
        self._decode_cache: dict = {}
        self._result_cache: dict = {}  # query key -> result, valid for self._cache_version
        self._cache_version = -1

    # ---- set-up ----------------------------------------------------------------------------
    def _setup_measures(self):
        spec = self.spec
        self.measures = [Measure.parse(m) for m in spec.measures]
        if not self.measures:
            raise ValueError("a cube needs at least one measure, e.g. measures=['count']")
        seen = set()
        for m in self.measures:
            if m.name in seen:
                raise ValueError(f"measure {m.name!r} is declared twice")
            seen.add(m.name)
        custom = dict(spec.values or {})
        self.value_names, self.hash_names, self.q_names = [], [], []
        moments = set()
        for m in self.measures:
            if m.kind == "distinct":
                if m.field not in self.hash_names:
                    self.hash_names.append(m.field)
            elif m.kind == "quantile":
                if m.field not in self.q_names:
                    self.q_names.append(m.field)
            elif m.kind != "count":
                if m.field not in self.value_names:
                    self.value_names.append(m.field)
                if m.kind in ("var", "std"):
                    moments.add(m.field)
        self.value_fields: dict[str, ValueField] = {}
        self.hash_fields: dict[str, ValueField] = {}

        def resolve(nm, kind):
            if nm not in custom:
                return builtin_value(nm, spec.source, kind=kind)
            if custom[nm] is not None:
                return ValueField(nm, custom[nm], kind=kind)

            def external(ctx, nm=nm):
                raise ValueError(
                    f"field {nm!r} of cube {self.name!r} has no compute function "
                    "(values={name: None}): it must be supplied by update_codes"
                )

            return ValueField(nm, external, kind=kind)

        for nm in dict.fromkeys(self.value_names + self.q_names):
            self.value_fields[nm] = resolve(nm, "value")
        for nm in self.hash_names:
            self.hash_fields[nm] = resolve(nm, "hash")
        self.mom = np.array([nm in moments for nm in self.value_names], dtype=np.bool_)
        self._q_min = float(spec.quantile_min)
        self._q_ilg = 1.0 / np.log(spec.quantile_gamma)

    def _setup_retention(self):
        spec = self.spec
        self._retention_buckets = None
        self._t_dim = None
        self._t_max = -1
        if spec.retention_ms is None:
            return
        tname = spec.time_dimension
        if tname is None:
            tnames = [n for n, d in self.dims.items() if time_granularity_ms(d)]
            if not tnames:
                raise ValueError(
                    "retention_ms needs a time-bucket dimension (minute, hour, day or time:<ms>) in the cube"
                )
            tname = tnames[0]
        if tname not in self.dims or not time_granularity_ms(self.dims[tname]):
            raise ValueError(f"time_dimension {tname!r} is not a time-bucket dimension of the cube")
        lacking = [c.dims for c in self.cuboids if tname not in c.keys.dims]
        if lacking:
            raise ValueError(
                f"with retention every materialised cuboid must contain {tname!r}, "
                f"but {lacking} do not; add {tname!r} to them or drop retention_ms"
            )
        gran = time_granularity_ms(self.dims[tname])
        self._t_dim = tname
        self._retention_buckets = max(1, -(-int(spec.retention_ms) // gran))

    # ---- ingestion -------------------------------------------------------------------------
    def update(self, records: np.ndarray, *, element_idx: np.ndarray | None = None) -> UpdateReport:
        """Apply one batch of canonical records (all or nothing).

        Parameters
        ----------
        records : structured array of ``spec.source``'s canonical dtype
        element_idx : int array, optional
            Dense element index per row if the caller already computed it.

        Returns
        -------
        UpdateReport

        Raises
        ------
        CubeBudgetError
            If the batch would take the cube past ``cell_budget`` (the cube is unchanged).
        ValueError
            For records of the wrong dtype.
        """
        ctx = BatchContext(records, self.topology, self.spec.source, element_idx)
        b = prepare_batch(ctx, self.dims, self.value_fields, self.hash_fields)
        return self.update_arrays(b)

    def update_codes(self, codes, values=None, hashes=None) -> UpdateReport:
        """Apply a batch given as precomputed dimension codes (no record decoding).

        Parameters
        ----------
        codes : dict name -> int array, or (int32 array (n_dims, n), list of names)
            Codes of every dimension of the cube (``-1`` = invalid row, rejected and counted).
        values : dict name -> float array, optional
            Every value field the measures use.
        hashes : dict name -> int array, optional
            Identities for the distinct counts (hashed here).

        Raises
        ------
        ValueError
            If a dimension or field is missing or has the wrong length.
        """
        if isinstance(codes, tuple):
            arr, names = codes
            arr = np.ascontiguousarray(arr, dtype=np.int32)
            if arr.ndim != 2 or arr.shape[0] != len(names):
                raise ValueError(f"codes array has shape {arr.shape}; expected ({len(names)}, n)")
            dim_row = {nm: i for i, nm in enumerate(names)}
        else:
            names = list(codes)
            n0 = len(next(iter(codes.values()))) if codes else 0
            arr = np.empty((len(names), n0), dtype=np.int32)
            for i, nm in enumerate(names):
                arr[i] = codes[nm]
            dim_row = {nm: i for i, nm in enumerate(names)}
        n = arr.shape[1]
        missing = [d for d in self.dims if d not in dim_row]
        if missing:
            raise ValueError(f"codes lack dimensions {missing} of cube {self.name!r}")
        rows = np.array([dim_row[nm] for nm in self.dims], dtype=np.int64)
        c_max = np.empty(len(rows), dtype=np.int64)
        c_neg = np.empty(len(rows), dtype=np.int64)
        cube_code_stats(arr, rows, c_max, c_neg)  # one pass: max and invalid count per row
        for j, nm in enumerate(self.dims):
            if c_max[j] >= self.dims[nm].cardinality:
                raise ValueError(
                    f"codes[{nm!r}] holds {int(c_max[j])} but the dimension has "
                    f"{self.dims[nm].cardinality} codes; use -1 for invalid rows"
                )

        def stack(src, names_needed, dtype, what, hashed=False):
            src = dict(src or {})
            miss = [x for x in names_needed if x not in src]
            if miss:
                raise ValueError(f"{what} lack fields {miss} used by the measures of cube {self.name!r}")
            if len(names_needed) == 1 and not hashed:
                v = np.asarray(src[names_needed[0]])
                if v.shape == (n,) and v.dtype == dtype and v.flags.c_contiguous:
                    return v.reshape(1, n), {names_needed[0]: 0}  # a view, no copy
            out = np.empty((len(names_needed), n), dtype=dtype)
            for i, nm in enumerate(names_needed):
                v = np.asarray(src[nm])
                if v.shape != (n,):
                    raise ValueError(f"{what}[{nm!r}] has shape {v.shape}, expected ({n},)")
                out[i] = splitmix64(v) if hashed else v
            return out, {nm: i for i, nm in enumerate(names_needed)}

        vals, val_row = stack(values, list(self.value_fields), np.float64, "values")
        hs, hash_row = stack(hashes, list(self.hash_fields), np.int64, "hashes", hashed=True)
        invalid = {nm: int(c_neg[j]) for j, nm in enumerate(self.dims)}
        return self.update_arrays(BatchArrays(n, arr, dim_row, vals, val_row, hs, hash_row, invalid))

    def update_arrays(self, b: BatchArrays) -> UpdateReport:
        """Apply a batch of prepared arrays (``telcoanalytics.cube.dims.prepare_batch``)."""
        with self._wlock:
            rep = self._build_delta(b)
            with self._lock:
                self._check_budget()
                self._commit(b, rep)
        return rep

    def _rows(self, b: BatchArrays):
        rows = np.array([b.dim_row[n] for n in self.base_keys.dims], dtype=np.int64)
        vrows = np.array([b.val_row[n] for n in self.value_names], dtype=np.int64)
        hrows = np.array([b.hash_row[n] for n in self.hash_names], dtype=np.int64)
        qrows = np.array([b.val_row[n] for n in self.q_names], dtype=np.int64)
        return rows, vrows, hrows, qrows

    def _measure_signature(self):
        """Cubes with equal signatures have cells of the same layout (they can share deltas)."""
        return (
            tuple(self.value_names),
            tuple(self.mom.tolist()),
            tuple(self.hash_names),
            tuple(self.q_names),
            self._tshape,
            self._q_min,
            self._q_ilg,
        )

    def snapshot(self):
        """Context manager holding the read lock: several queries inside see the same batches.

        Examples
        --------
        >>> with cube.snapshot():                       # doctest: +SKIP
        ...     a, b = cube.query(("region",)), cube.query(("site",))
        """
        return self._lock

    def roll(self, now_ms: int):
        """Drop time buckets older than the retention relative to ``now_ms`` (no-op without one)."""
        if self._t_dim is None:
            return
        dim = self.dims[self._t_dim]
        code = (int(now_ms) - dim.label_offset) // dim.label_scale
        with self._lock:
            self._t_max = max(self._t_max, code)
            self._apply_retention(self._t_max - self._retention_buckets + 1)
            self.version += 1

    # ---- topology changes ----------------------------------------------------------------------
    def set_topology(self, topology: Topology, changes: list | None = None) -> Cube:
        """Follow a new topology version while data flows (no state is lost).

        Parameters
        ----------
        topology : Topology
            The new topology, from ``Topology.add_elements`` / ``rehome_elements`` /
            ``retire_elements`` / ``set_attributes`` ... or ``Topology.reconcile``.
        changes : list of TopologyChange, optional
            The changes leading from the cube's topology to ``topology`` (their ``old_to_new``
            maps renumber nodes, e.g. after ``compact``). Without them, dense indices must be
            stable (append-only changes), which is checked.

        Returns
        -------
        Cube
            ``self``.

        Raises
        ------
        ValueError
            If the cube has no topology, the levels differ, or without ``changes`` a node of the
            old topology is missing or renumbered in the new one.

        Notes
        -----
        New elements get codes. A re-homed element (or one whose equipment class / vendor /
        technology changed) gets a new code for the events after the change: cells already
        accumulated keep the parent (site, region) and attributes their events had, new events
        roll up to the new parent. Grouping or filtering by the element itself merges its codes,
        so it still shows as one row. Retired elements keep their history (their codes stay).
        See :class:`telcoanalytics.cube.dims.TopologySlots`.
        """
        if self.topology is None or self._slots is None:
            raise ValueError(f"cube {self.name!r} was built without a topology; nothing to change")
        slots = self._slots.advance(topology, _compose_maps(self.topology, topology, changes))
        dims = {n: d for n, d in self.all_dims.items() if not _is_topology_dim(d, topology)}
        self._retopologize(topology, slots, dims)
        return self

    def topology_changed(self, topology: Topology, changes: list | None = None) -> None:
        """Pipeline hook (``Pipeline.change_topology``): same as :meth:`set_topology`."""
        self.set_topology(topology, changes)

    def _retopologize(self, topology: Topology, slots: TopologySlots, dims: dict[str, Dimension]):
        """Rebuild the dimensions for ``slots`` and move every cell to the new key layout."""
        with self._wlock, self._lock:
            new = Cube(self.spec, topology, dimensions=dims, name=self.name, _lock=self._lock, _slots=slots)
            for co, cn in zip(self.cuboids, new.cuboids):
                if co.keys.dims != cn.keys.dims:  # pragma: no cover - same derivation structure
                    raise RuntimeError(f"cuboid {co.dims} changed its stored dimensions")
                n = co.table.n_cells
                if n == 0:
                    continue
                old = co.table.cell_key[:n]
                if np.array_equal(co.keys.radix, cn.keys.radix):
                    keys = old.copy()
                else:  # a dimension outgrew its power-of-two radix: re-pack the codes
                    keys = np.zeros(n, dtype=np.int64)
                    for j in range(len(co.keys.dims)):
                        code = (old >> co.keys.shifts[j]) & (co.keys.radix[j] - 1)
                        keys += code << cn.keys.shifts[j]
                cn.table.reserve(n)
                cn.table.merge_cells(keys, co.table, self.mom, n)
                cn.table.counters[1] = co.table.counters[1]
            for attr in ("version", "n_rows", "n_rejected", "n_expired", "_t_max"):
                setattr(new, attr, getattr(self, attr))
            new.version += 1
            new._wlock = self._wlock
            self.__dict__.update(new.__dict__)

    # ---- reporting -------------------------------------------------------------------------
    @property
    def n_cells(self) -> int:
        return sum(c.table.n_cells for c in self.cuboids)

    @property
    def nbytes(self) -> int:
        """Bytes held by the state and the per-batch delta buffers."""
        return int(sum(c.table.nbytes for c in self.cuboids) + self._delta_nbytes())

    def _delta_nbytes(self) -> int:
        tabs = list(self._delta_tables.values())
        if self._base_delta_t is not None:
            tabs.append(self._base_delta_t)
        for g in self._direct.groups if self._direct is not None else ():
            tabs += [g.table] + list(g.tables.values())
        return int(sum(t.nbytes for t in tabs))

    def memory_report(self) -> dict:
        """Cells and bytes per materialised cuboid (plus the delta buffers)."""
        rep = {
            "cuboids": [
                {
                    "dims": c.dims,
                    "stored": c.keys.dims,
                    "cells": c.table.n_cells,
                    "layout": (
                        "positional"
                        if isinstance(c.table, PositionalCellTable)
                        else "dense"
                        if c.table.dense
                        else "hashed"
                    ),
                    "nbytes": c.table.nbytes,
                }
                for c in self.cuboids
            ]
        }
        rep["delta_nbytes"] = self._delta_nbytes()
        rep["last_batch_build"] = self._last_build
        if self.spec.direct_min_keys is None:  # chosen per batch: the last batch's build
            rep["build"] = self._last_build if self._direct is not None else "delta"
            rep["build_rule"] = "modelled cost"
        else:
            rep["build"] = "direct" if self._direct is not None else "delta"
            rep["build_rule"] = f"direct_min_keys={self.spec.direct_min_keys}"
        rep["cells"] = self.n_cells
        rep["cell_budget"] = self.spec.cell_budget
        rep["nbytes"] = self.nbytes
        return rep

    # ---- merge and checkpoint ----------------------------------------------------------------
    def _signature(self):
        return (
            [(n, d.cardinality) for n, d in self.dims.items()],
            [m.name for m in self.measures],
            [c.dims for c in self.cuboids],
            self._tshape,
        )

    def merge(self, other: Cube) -> Cube:
        """Add another cube of the same spec (another partition / worker) into this one.

        Raises
        ------
        ValueError
            If the specs differ. CubeBudgetError if the union exceeds the budget (unchanged).
        """
        if not isinstance(other, Cube) or self._signature() != other._signature():
            raise ValueError("merge needs a cube with the same dimensions, measures and cuboids")
        with self._wlock, other._lock:
            with self._lock:
                self._mode = "delta"
                self._deltas = {i: c.table for i, c in enumerate(other.cuboids)}
                try:
                    self._check_budget()
                except CubeBudgetError:
                    self._deltas = {}
                    raise
                for i, cb in enumerate(self.cuboids):
                    d = other.cuboids[i].table
                    cb.table.reserve(cb.table.n_cells + self._pending_new[i])
                    cb.table.merge_cells(d.cell_key, d, self.mom)
                self._deltas = {}
                self.n_rows += other.n_rows
                self.n_rejected += other.n_rejected
                self.n_expired += other.n_expired
                if self._t_dim is not None:
                    self._t_max = max(self._t_max, other._t_max)
                    self._apply_retention(self._t_max - self._retention_buckets + 1)
                self.version += 1
        return self

    def to_state(self) -> dict:
        """Checkpoint: spec description, topology arrays and cell arrays (NumPy / scalars only)."""
        spec = self.spec
        with self._lock:
            d = {
                "kind": "Cube",
                "name": self.name,
                "source": spec.source,
                "dimensions": np.array(list(self.dims)),
                "custom_dimensions": np.array([n for n, x in self.dims.items() if x.recipe != "builtin"]),
                "measures": np.array([_measure_str(m) for m in self.measures]),
                "n_cuboids": len(self.cuboids),
                "cell_budget": int(spec.cell_budget),
                "retention_ms": -1 if spec.retention_ms is None else int(spec.retention_ms),
                "time_dimension": spec.time_dimension or "",
                "time_origin_ms": int(spec.time_origin_ms),
                "dense_limit": int(spec.dense_limit),
                "hll_p": int(spec.hll_p),
                "direct_min_keys": -1 if spec.direct_min_keys is None else int(spec.direct_min_keys),
                "direct_group_max_keys": int(spec.direct_group_max_keys),
                "positional_max_keys": int(spec.positional_max_keys),
                "quantile_alpha": float(spec.quantile_alpha),
                "quantile_min": float(spec.quantile_min),
                "quantile_max": float(spec.quantile_max),
                "version": self.version,
                "n_rows": self.n_rows,
                "n_rejected": self.n_rejected,
                "n_expired": self.n_expired,
                "t_max": self._t_max,
            }
            for i, cb in enumerate(self.cuboids):
                d[f"cuboid{i}.dims"] = np.array(cb.dims, dtype="U64")
                d.update(cb.table.to_state(f"cuboid{i}."))
            if self.topology is not None:
                d.update(_topology_state(self.topology))
            if self._slots is not None:
                d.update(self._slots.to_state())
        return d

    @classmethod
    def from_state(
        cls,
        d: dict,
        *,
        topology: Topology | None = None,
        dimensions: dict[str, Dimension] | None = None,
        values: dict | None = None,
    ) -> Cube:
        """Restore a cube from :meth:`to_state`.

        Custom dimensions and custom value fields are code, not data: pass them again.

        Raises
        ------
        ValueError
            If a custom dimension is not given or the arrays do not fit the spec.
        """
        custom = [str(x) for x in d["custom_dimensions"]]
        dimensions = dict(dimensions or {})
        missing = [c for c in custom if c not in dimensions]
        if missing:
            raise ValueError(
                f"the cube uses custom dimensions {missing}; pass them as from_state(d, dimensions={{name: Dimension}})"
            )
        if topology is None and "topology.levels" in d:
            topology = _topology_from_state(d)
        slots = TopologySlots.from_state(d) if "slots.levels" in d else None
        spec = CubeSpec(
            dimensions=[dimensions.get(str(n), str(n)) for n in d["dimensions"]],
            measures=[str(m) for m in d["measures"]],
            cuboids=[tuple(str(x) for x in d[f"cuboid{i}.dims"]) for i in range(int(d["n_cuboids"]))],
            cell_budget=int(d["cell_budget"]),
            retention_ms=None if int(d["retention_ms"]) < 0 else int(d["retention_ms"]),
            time_dimension=str(d["time_dimension"]) or None,
            source=str(d["source"]),
            time_origin_ms=int(d["time_origin_ms"]),
            dense_limit=int(d["dense_limit"]),
            direct_min_keys=None
            if int(d.get("direct_min_keys", 1 << 18)) < 0
            else int(d.get("direct_min_keys", 1 << 18)),
            direct_group_max_keys=int(d.get("direct_group_max_keys", 1 << 18)),
            positional_max_keys=int(d.get("positional_max_keys", 0)),
            hll_p=int(d["hll_p"]),
            quantile_alpha=float(d["quantile_alpha"]),
            quantile_min=float(d["quantile_min"]),
            quantile_max=float(d["quantile_max"]),
            values=values,
        )
        cube = cls(spec, topology, dimensions=dimensions, name=str(d["name"]), _slots=slots)
        for i, cb in enumerate(cube.cuboids):
            cb.table.load_state(d, f"cuboid{i}.")
        cube.version = int(d["version"])
        cube.n_rows, cube.n_rejected = int(d["n_rows"]), int(d["n_rejected"])
        cube.n_expired, cube._t_max = int(d["n_expired"]), int(d["t_max"])
        return cube


def _is_topology_dim(dim: Dimension, topology: Topology) -> bool:
    return dim.recipe == "builtin" and (dim.name in topology.levels or dim.name in ATTRIBUTE_NAMES)


def _compose_maps(old: Topology, new: Topology, changes) -> dict | None:
    """Old-to-new dense index per level across ``changes``; None when indices are stable.

    Raises
    ------
    ValueError
        Without changes, if an old node is missing or renumbered in ``new``.
    """
    if changes:
        out = {}
        for lv in old.levels:
            m = np.arange(old.n_nodes(lv), dtype=np.int64)
            for ch in changes:
                o2n = np.asarray(ch.old_to_new[lv], dtype=np.int64)
                m = np.where(m >= 0, o2n[np.maximum(m, 0)], -1)
            out[lv] = m
        return out
    for lv in old.levels:
        n = old.n_nodes(lv)
        if lv not in new.ids or new.n_nodes(lv) < n or not np.array_equal(new.ids[lv][:n], old.ids[lv]):
            raise ValueError(
                f"the new topology renumbers or drops {lv} nodes; pass the changes "
                "(from Topology.add_elements / rehome_elements / ... or "
                "Topology.reconcile(new)) so the cube can follow them"
            )
    return None


def _topology_state(topo: Topology) -> dict:
    d = {"topology.levels": np.array(topo.levels)}
    for lv in topo.levels:
        d[f"topology.ids.{lv}"] = topo.ids[lv]
        if lv in topo.parent:
            d[f"topology.parent.{lv}"] = topo.parent[lv]
    d["topology.attributes"] = np.array(list(topo.attributes), dtype="U64")
    for a, v in topo.attributes.items():
        d[f"topology.attr.{a}"] = np.asarray(v)
    return d


def _topology_from_state(d: dict) -> Topology:
    levels = tuple(str(x) for x in d["topology.levels"])
    ids = {lv: d[f"topology.ids.{lv}"] for lv in levels}
    parent = {lv: d[f"topology.parent.{lv}"] for lv in levels[1:]}
    attrs = {str(a): d[f"topology.attr.{a}"] for a in d["topology.attributes"]}
    return Topology(levels, ids, parent, attrs)
