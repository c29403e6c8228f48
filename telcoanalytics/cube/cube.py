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

*Direct build* (when the finest stored key space has at least ``spec.direct_min_keys`` keys,
e.g. element x service x hour): a per-batch delta would hold nearly as many cells as the batch
has events, so the finest cuboid is accumulated straight into its state, and the other cuboids
are grouped under small bases (region x service x class x hour ...) fed from the events and
rolled up as above. Functional dependencies (element -> site, region, class) make this exact.
It runs under the lock (queries wait for the batch) and only when the batch cannot exceed the
budget even if every event made new cells; otherwise the delta build applies. Opt-in, with count
and at most one value field's sum / min / max (``spec.positional_max_keys``), the finest cuboid stores
its measures by position (row = packed key: no index lookup per event); its compact cells are
gathered when read (:class:`cube_table.PositionalCellTable`).

In a :class:`CubeSet`, cubes with the same measure layout share one pass over the events: the
batch is accumulated once per group under the largest base that covers the others, and each
cube rolls its base delta up from those cells.

After a topology change (:meth:`Cube.set_topology`) the topology dimensions use versioned codes
(:class:`cube_dims.TopologySlots`): history keeps the parents its events had.

Notes
-----
Gray et al. 1997, "Data Cube: a relational aggregation operator generalizing group-by,
cross-tab, and sub-totals"; Harinarayan, Rajaraman, Ullman 1996, "Implementing data cubes
efficiently" (answering a group-by from its smallest materialised ancestor).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from kernels.cube import cube_code_stats, cube_decode, cube_pack_keys, cube_rekey
from kernels.hll import hll_estimate
from kernels.qsketch import qs_quantiles
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
from telcoanalytics.cube.spec import CubeSpec, DerivePlan, KeySpace, Measure, covers, reduce_dims, resolve_cuboids
from telcoanalytics.cube.table import CellTable, PositionalCellTable
from telcoanalytics.topology.model import Topology

__all__ = [
    "Cube",
    "CubeSet",
    "CubeSpec",
    "CubeView",
    "CubeBudgetError",
    "Measure",
    "Pivot",
    "UpdateReport",
    "explore_summary",
    "explore_spec",
    "to_pandas",
    "hll_relative_error",
]

_OUT_DENSE_MAX = 1 << 20
_RESULT_CACHE_SIZE = 256
_SHARED_MAX_KEYS = 1 << 18


def _freeze(where: dict):
    """A hashable, order-independent form of a ``where`` dict (the query cache key)."""
    out = []
    for k in sorted(where):
        v = where[k]
        if isinstance(v, tuple):
            out.append((k, "range", v))
        elif isinstance(v, (list, set, frozenset, np.ndarray)):
            vals = np.asarray(list(v) if isinstance(v, (set, frozenset)) else v)
            out.append((k, "in", tuple(sorted(set(vals.tolist()), key=repr))))
        else:
            out.append((k, "eq", v.item() if hasattr(v, "item") else v))
    return tuple(out)


class CubeBudgetError(RuntimeError):
    """A batch would grow a cube past its ``cell_budget``; the cube is unchanged."""


def hll_relative_error(p: int) -> float:
    """Relative standard error ``1.04 / sqrt(2**p)`` of the distinct-count estimate."""
    return 1.04 / np.sqrt(2.0**p)


@dataclass
class UpdateReport:
    """What one batch did to a cube.

    ``n_rejected`` rows had no valid code for some dimension (``rejected_by_dim`` counts them per
    dimension; ``rejected_rows`` are their row numbers in the batch, the side output);
    ``n_expired`` rows fell into time buckets older than the retention (applied, then rolled out).
    """

    n_rows: int
    n_applied: int
    n_rejected: int
    n_expired: int = 0
    rejected_by_dim: dict = field(default_factory=dict)
    rejected_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass
class _Cuboid:
    dims: tuple[str, ...]  # grouping set as declared
    keys: KeySpace  # stored (reduced) dims and their layout
    table: CellTable
    n_possible: int = 0  # product of the stored dimensions' cardinalities


@dataclass
class _DeltaStep:
    target: int  # cuboid index
    parent: int  # -1: the base delta; else a cuboid index
    plan: DerivePlan | None  # None: same key space as the parent
    strides: np.ndarray | None


@dataclass
class _Group:
    """Direct build: cuboids rolled up from one small delta fed straight from the events."""

    keys: KeySpace
    members: list
    table: CellTable | None = None
    steps: list = field(default_factory=list)
    tables: dict = field(default_factory=dict)


@dataclass
class _DirectPlan:
    """Direct build: cuboid ``target`` (the finest) is accumulated from the events straight into
    its state; every other cuboid is rolled up from the delta of its small group."""

    target: int
    groups: list


def _new_lock():
    return threading.RLock()


class Cube:
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
        self._mode = "delta"
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

    @property
    def _base_delta(self) -> CellTable:
        if self._base_delta_t is None:
            ks = self.base_keys
            self._base_delta_t = CellTable(ks.size, ks.size <= self.spec.dense_limit, *self._tshape)
        return self._base_delta_t

    def _plan_steps(self, base_keys: KeySpace, members):
        """Roll-up steps building the deltas of ``members`` from a base delta (largest first,
        each from the smallest delta already built that covers it)."""
        order = sorted(members, key=lambda i: -self.cuboids[i].keys.size)
        built: list[int] = []
        steps: list[_DeltaStep] = []
        tables: dict[int, CellTable] = {}
        for i in order:
            cb = self.cuboids[i]
            cands = [(-1, base_keys)] + [(j, self.cuboids[j].keys) for j in built]
            cands = [(j, ks) for j, ks in cands if covers(ks.dims, cb.keys.dims, self.dims)]
            j, pks = min(cands, key=lambda t: t[1].size)
            if pks.dims == cb.keys.dims:
                steps.append(_DeltaStep(i, j, None, None))
            else:
                plan = DerivePlan.build(pks, cb.keys.dims, self.dims)
                steps.append(_DeltaStep(i, j, plan, cb.keys.strides))
                tables[i] = CellTable(cb.keys.size, cb.keys.size <= self.spec.dense_limit, *self._tshape)
            built.append(i)
        return steps, tables

    def _plan_deltas(self):
        self._delta_steps, self._delta_tables = self._plan_steps(self.base_keys, range(len(self.cuboids)))

    def _plan_direct(self):
        """Plan the direct build when the finest key space is large (``spec.direct_min_keys``).

        With a large base (element x service x hour), a per-batch delta holds almost as many
        cells as the batch has events, so building it and merging it costs two passes of cache
        misses. Instead the finest cuboid is accumulated straight into its state and the other
        cuboids are grouped under small bases (at most ``spec.direct_group_max_keys`` keys) fed
        from the events too; each group's delta then rolls up to its members. Functional
        dependencies make this exact: region / class of an element are looked up, not hashed.
        """
        self._direct = None
        ks_b, spec = self.base_keys, self.spec
        for c in self.cuboids:
            c.n_possible = int(np.prod([self.dims[d].cardinality for d in c.keys.dims], dtype=object))
        if ks_b.size < spec.direct_min_keys:
            return
        tgt = [i for i, c in enumerate(self.cuboids) if c.keys.dims == ks_b.dims]
        if len(tgt) != 1:
            return
        rest = sorted((i for i in range(len(self.cuboids)) if i != tgt[0]), key=lambda i: -self.cuboids[i].keys.size)
        groups: list[_Group] = []
        for i in rest:
            ks = self.cuboids[i].keys
            g = next((g for g in groups if covers(g.keys.dims, ks.dims, self.dims)), None)
            if g is None:
                if ks.size > spec.direct_group_max_keys:
                    return
                g = _Group(ks, [])
                groups.append(g)
            g.members.append(i)
        for g in groups:
            g.table = CellTable(g.keys.size, g.keys.size <= spec.dense_limit, *self._tshape)
            g.steps, g.tables = self._plan_steps(g.keys, g.members)
        self._direct = _DirectPlan(tgt[0], groups)
        tcb = self.cuboids[tgt[0]]
        if (
            tcb.table.dense
            and 0 < tcb.n_possible <= spec.positional_max_keys
            and len(self.value_names) <= 1
            and not self.hash_names
            and not self.q_names
            and not self.mom.any()
        ):
            # measured on bench_cube (10M events, 20,000 elements): streaming into an existing
            # cube ~32 M events/s positional vs ~27 M/s through the index; a new cube's build
            # is not faster (opt-in: spec.positional_max_keys)
            cards = [self.dims[d].cardinality for d in ks_b.dims]
            tcb.table = PositionalCellTable(ks_b.size, len(self.value_names), ks_b.shifts, ks_b.radix, cards)

    def _direct_fits(self, n: int) -> bool:
        """True if the direct build applies and this batch cannot exceed the budget even if
        every event made a new cell in every cuboid (then no exact check is needed)."""
        if self._direct is None:
            return False
        total = 0
        for c in self.cuboids:
            have = c.table.n_cells
            total += have + min(n, max(0, c.n_possible - have))
        return total <= self.spec.cell_budget

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
        """Apply a batch of prepared arrays (``cube_dims.prepare_batch``)."""
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

    def _build_delta(self, b: BatchArrays, shared=None) -> UpdateReport:
        """Accumulate the batch into the delta tables (no lock: state is not touched).

        In the direct mode (``_plan_direct``) nothing is built here: the commit accumulates the
        events under the lock. ``shared`` is ``(CellTable, KeySpace, dims)``: the batch already
        accumulated by the CubeSet over a key space covering this cube's base, with no rejected
        row; the base delta is then rolled up from its cells instead of from the events.
        """
        if self._direct_fits(b.n):
            self._mode = "direct"
            self._deltas = {}
            rep = UpdateReport(b.n, b.n, 0)
            self._time_info(b, rep)
            return rep
        self._mode = "delta"
        base = self._base_delta
        base.clear()
        if shared is not None:
            src, ks, dims = shared
            plan = DerivePlan.build(ks, self.base_keys.dims, dims)
            n = src.n_cells
            keys = np.empty(n, dtype=np.int64)
            cube_rekey(src.cell_key, n, *plan.args(), self.base_keys.strides, keys)
            base.reserve(min(n, base.keyspace))
            base.merge_cells(keys, src, self.mom)
            rejected = 0
        else:
            base.reserve(min(b.n, base.keyspace))  # no growth inside the kernel for this batch
            rows, vrows, hrows, qrows = self._rows(b)
            keys = np.empty(b.n, dtype=np.int64)
            cube_pack_keys(b.codes, rows, self.base_keys.strides, keys)
            rejected = base.accumulate(keys, b, vrows, self.mom, hrows, qrows, self._q_min, self._q_ilg)
        self._deltas: dict[int, CellTable] = {}
        self._roll_group(base, self._delta_steps, self._delta_tables, self._deltas)
        rep = UpdateReport(b.n, b.n - rejected, rejected)
        if rejected:
            bad = np.zeros(b.n, dtype=bool)
            for nm in self.base_keys.dims:
                bad |= b.codes[b.dim_row[nm]] < 0
            rep.rejected_rows = np.flatnonzero(bad)
            rep.rejected_by_dim = {nm: b.invalid.get(nm, 0) for nm in self.base_keys.dims if b.invalid.get(nm, 0)}
        self._time_info(b, rep)
        return rep

    def _time_info(self, b: BatchArrays, rep: UpdateReport):
        if self._t_dim is not None:
            t = b.codes[b.dim_row[self._t_dim]]
            rep._t_batch_max = int(t.max()) if b.n else -1
            rep._t_codes = t

    def _roll_group(self, base: CellTable, steps, tables, deltas: dict):
        for st in steps:
            parent = base if st.parent < 0 else deltas[st.parent]
            if st.plan is None:
                deltas[st.target] = parent
                continue
            n = parent.n_cells
            keys = np.empty(n, dtype=np.int64)
            cube_rekey(parent.cell_key, n, *st.plan.args(), st.strides, keys)
            t = tables[st.target]
            t.clear()
            t.reserve(min(n, t.keyspace))
            t.merge_cells(keys, parent, self.mom)
            deltas[st.target] = t

    def _commit_direct(self, b: BatchArrays, rep: UpdateReport):
        """Direct build (caller holds the lock; ``_direct_fits`` guaranteed the budget).

        Keys of the finest cuboid and of every group are packed first; a row with a code < 0 in
        any of them is rejected from all (one mask, only built when such rows exist).
        """
        plan = self._direct
        ks_b = self.base_keys
        tcb = self.cuboids[plan.target]
        spaces = [ks_b] + [g.keys for g in plan.groups]
        tables = [tcb.table] + [g.table for g in plan.groups]
        keys = []
        bad = None
        for ks in spaces:
            rows = np.array([b.dim_row[n] for n in ks.dims], dtype=np.int64)
            k = np.empty(b.n, dtype=np.int64)
            cube_pack_keys(b.codes, rows, ks.strides, k)
            if b.n and k.min() < 0:
                bad = (k < 0) if bad is None else (bad | (k < 0))
            keys.append(k)
        if bad is not None:
            for k in keys:
                k[bad] = -1
        _, vrows, hrows, qrows = self._rows(b)
        # one allocation at most per batch instead of doublings inside the accumulation; cells
        # without sketches are small, so allocate ahead (measured: growing a large table batch
        # by batch costs more than its copies, ~1/3 of the accumulation time)
        need = tcb.table.n_cells + min(b.n, max(0, tcb.n_possible - tcb.table.n_cells))
        if not self.hash_names and not self.q_names:
            need = max(need, min(tcb.n_possible, 4 * need, self.spec.cell_budget))
        if need > tcb.table.cap:
            tcb.table.reserve(need)
        for g in plan.groups:
            g.table.clear()
            g.table.reserve(min(b.n, g.table.keyspace))
        for k, t in zip(keys, tables):
            saved = int(t.counters[1])
            t.accumulate(k, b, vrows, self.mom, hrows, qrows, self._q_min, self._q_ilg)
            t.counters[1] = saved
        deltas: dict[int, CellTable] = {}
        for g in plan.groups:
            self._roll_group(g.table, g.steps, g.tables, deltas)
        for i, d in deltas.items():
            self.cuboids[i].table.merge_cells(d.cell_key, d, self.mom)
        if bad is not None:
            rep.n_rejected = int(np.count_nonzero(bad))
            rep.n_applied = b.n - rep.n_rejected
            rep.rejected_rows = np.flatnonzero(bad)
            read = [n for n in self.dims if any(n in ks.dims for ks in spaces)]
            rep.rejected_by_dim = {n: int(np.count_nonzero(b.codes[b.dim_row[n]] < 0)) for n in read}
            rep.rejected_by_dim = {n: c for n, c in rep.rejected_by_dim.items() if c}

    def _new_cells(self) -> list[int]:
        out = []
        for i, cb in enumerate(self.cuboids):
            d = self._deltas[i]
            out.append(cb.table.count_new(d.cell_key, d.n_cells))
        return out

    def _check_budget(self):
        """Raise CubeBudgetError if applying the pending delta would exceed the budget."""
        if self._mode == "direct":
            return  # _direct_fits bounded the growth already
        new = self._new_cells()
        total = self.n_cells + sum(new)
        if total > self.spec.cell_budget:
            worst = int(np.argmax(new))
            raise CubeBudgetError(
                f"cube {self.name!r}: this batch would grow the cube to {total} cells, over its "
                f"cell_budget of {self.spec.cell_budget} (cuboid {self.cuboids[worst].dims} alone "
                f"adds {new[worst]}); nothing was applied. Raise cell_budget, materialise coarser "
                "cuboids, or set retention_ms"
            )
        self._pending_new = new

    def _commit(self, b: BatchArrays, rep: UpdateReport):
        """Merge the pending deltas into the state (caller holds the lock, budget checked)."""
        if self._mode == "direct":
            self._commit_direct(b, rep)
        else:
            for i, cb in enumerate(self.cuboids):
                d = self._deltas[i]
                cb.table.reserve(cb.table.n_cells + self._pending_new[i])
                cb.table.merge_cells(d.cell_key, d, self.mom)
        self.n_rows += rep.n_applied
        self.n_rejected += rep.n_rejected
        if self._t_dim is not None:
            self._t_max = max(self._t_max, rep._t_batch_max)
            cutoff = self._t_max - self._retention_buckets + 1
            t = rep._t_codes
            rep.n_expired = int(np.count_nonzero((t >= 0) & (t < cutoff)))
            self.n_expired += rep.n_expired
            self._apply_retention(cutoff)
        self.version += 1
        self._deltas = {}

    def _apply_retention(self, cutoff: int):
        for cb in self.cuboids:
            j = cb.keys.dims.index(self._t_dim)
            n = cb.table.n_cells
            t = (cb.table.cell_key[:n] // cb.keys.strides[j]) % cb.keys.radix[j]
            keep = t >= cutoff
            if not keep.all():
                cb.table.compact(keep)

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
        See :class:`cube_dims.TopologySlots`.
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
        rep["build"] = "direct" if self._direct is not None else "delta"
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
                "direct_min_keys": int(spec.direct_min_keys),
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
            direct_min_keys=int(d.get("direct_min_keys", 1 << 18)),
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

    # ---- queries ---------------------------------------------------------------------------
    def view(self) -> CubeView:
        """An empty query (grand total) to refine with group_by / slice / dice / drill_down."""
        return CubeView(self)

    def group_by(self, *dims: str) -> CubeView:
        return CubeView(self, by=tuple(dims))

    def _check_dims(self, names, what):
        bad = [n for n in names if n not in self.all_dims]
        if bad:
            raise ValueError(f"{what} names unknown dimensions {bad}; the cube has {sorted(self.all_dims)}")

    def answering_cuboid(self, needed) -> int:
        """Index of the smallest materialised cuboid that can answer a group-by over ``needed``.

        Raises
        ------
        ValueError
            If no materialised cuboid covers the dimensions.
        """
        best = None
        for i, cb in enumerate(self.cuboids):
            if covers(cb.keys.dims, needed, self.all_dims):
                if best is None or cb.table.n_cells < self.cuboids[best].table.n_cells:
                    best = i
        if best is None:
            raise ValueError(
                f"no materialised cuboid can answer a group-by over {tuple(needed)}; "
                f"materialised: {[c.dims for c in self.cuboids]}. Add a cuboid "
                "containing these dimensions (or finer ones) to the spec"
            )
        return best

    def _codes(self, ci: int, name: str) -> np.ndarray:
        key = (ci, name)
        hit = self._decode_cache.get(key)
        if hit is not None and hit[0] == self.version:
            return hit[1]
        cb = self.cuboids[ci]
        n = cb.table.n_cells
        plan = DerivePlan.build(cb.keys, [name], self.all_dims)
        out = np.empty((1, n), dtype=np.int64)
        cube_decode(cb.table.cell_key, n, *plan.args(), out)
        codes = out[0]
        canon = self.all_dims[name].canon
        if canon is not None:  # versioned topology codes: group by the node, not the slot
            codes = canon[codes]
        self._decode_cache[key] = (self.version, codes)
        return codes

    def query(self, by=(), where: dict | None = None, measures=None, *, _shared=False) -> np.ndarray:
        """Group-by ``by`` over the rows matching ``where``, from the smallest covering cuboid.

        Parameters
        ----------
        by : sequence of str
            Dimensions to group by (any dimension of the cube or derivable from one).
        where : dict name -> value, list/set/array of values, or (lo, hi) tuple
            Slice (one value), dice (several values) or range ``lo <= label < hi`` (either
            bound None) on dimension *labels* (external ids, names, bucket start ms).
        measures : sequence of measure names, optional (default all)

        Returns
        -------
        numpy structured array
            One row per group (sorted by the group codes): a column per dimension (labels) and
            per measure.

        Notes
        -----
        Results are cached per cube version: a repeated query between two batches costs a copy;
        every batch (or merge, roll, topology change) invalidates the cache, so a result never
        mixes batches.

        Raises
        ------
        ValueError
            For unknown dimensions or measures, or unknown filter values.
        """
        by = (by,) if isinstance(by, str) else tuple(by)
        where = dict(where or {})
        if len(set(by)) != len(by):
            raise ValueError(f"by repeats a dimension: {by}")
        self._check_dims(by, "by")
        self._check_dims(list(where), "where")
        ms = self._select_measures(measures)
        needed = list(dict.fromkeys(list(by) + list(where)))
        ckey = (by, _freeze(where), tuple(m.name for m in ms))
        with self._lock:
            hit = self._cached(ckey)
            if hit is None:
                hit = self._query(by, where, ms, needed)
                self._store(ckey, hit)
            return hit if _shared else hit.copy()

    def _cached(self, ckey):
        """A cached result of this version, or None (caller holds the lock)."""
        if self._cache_version != self.version:
            self._result_cache.clear()
            self._decode_cache.clear()
            self._cache_version = self.version
        return self._result_cache.get(ckey)

    def _store(self, ckey, res: np.ndarray):
        if len(self._result_cache) >= _RESULT_CACHE_SIZE:
            self._result_cache.pop(next(iter(self._result_cache)))
        self._result_cache[ckey] = res

    def _query(self, by, where, ms, needed) -> np.ndarray:
        """The group-by itself (caller holds the lock; ``query`` caches the result)."""
        ci = self.answering_cuboid(needed)
        src = self.cuboids[ci].table
        n = src.n_cells
        mask = None
        for nm, cond in where.items():
            m = self._filter(nm, self._codes(ci, nm), cond)
            mask = m if mask is None else mask & m
        ks = KeySpace.of(by, self.all_dims)
        if not where and by == self.cuboids[ci].keys.dims:
            return self._finalize(src, ks, by, ms)  # the cuboid itself: no roll-up
        keys = np.zeros(n, dtype=np.int64)
        for j, nm in enumerate(by):
            keys += self._codes(ci, nm) * ks.strides[j]
        if mask is not None:
            keys[~mask] = -1
        dense = ks.size <= max(_OUT_DENSE_MAX // 16, 4 * n)
        out = CellTable(ks.size, dense, *self._tshape, capacity=min(n, ks.size) if n else 1)
        out.merge_cells(keys, src, self.mom, n)
        return self._finalize(out, ks, by, ms)

    def _top_k_cells(self, by, where, measure, k, ascending):
        """Top-k straight from a cuboid's cells (see ``CubeView.top_k``), or None."""
        if where:
            return None
        m = next((x for x in self.measures if measure in (x.name, _measure_str(x))), None)
        if m is None or m.kind not in ("count", "sum", "min", "max", "mean"):
            return None
        with self._lock:
            ci = self.answering_cuboid(by)
            cb = self.cuboids[ci]
            if tuple(by) != cb.keys.dims:
                return None
            t = cb.table
            n = t.n_cells
            ck = t.cell_key[:n]
            if m.kind == "count":
                v = t.cnt[:n].astype(np.float64)
            else:
                f = self.value_names.index(m.field)
                nv = t.cnt[:n] - t.fmiss[:n, f]
                with np.errstate(invalid="ignore", divide="ignore"):
                    col = {"sum": t.fsum, "min": t.fmin, "max": t.fmax, "mean": t.fsum}[m.kind][:n, f]
                    v = np.where(nv > 0, col / nv if m.kind == "mean" else col, np.nan)
            sel = _best(v, ck, k, ascending)
            sel = sel[np.argsort(ck[sel])]  # the selected cells in group order
            sub = _CellsView(len(sel), ck[sel], t, sel)
            res = self._finalize(sub, cb.keys, tuple(by), self.measures)
        return res[_best(res[m.name], np.arange(len(res)), k, ascending)]

    def _filter(self, name: str, codes: np.ndarray, cond) -> np.ndarray:
        dim = self.all_dims[name]
        if isinstance(cond, tuple):
            if len(cond) != 2:
                raise ValueError(f"where[{name!r}] range must be (lo, hi), got {cond!r}")
            lab = dim.label_of(codes)
            m = np.ones(len(codes), dtype=bool)
            if cond[0] is not None:
                m &= lab >= cond[0]
            if cond[1] is not None:
                m &= lab < cond[1]
            return m
        if isinstance(cond, (list, set, frozenset, np.ndarray)):
            want = dim.encode(list(cond) if isinstance(cond, (set, frozenset)) else cond)
        else:
            want = dim.encode([cond])
        if len(want) == 1:
            return codes == want[0]
        return np.isin(codes, want)

    def _select_measures(self, measures):
        if measures is None:
            return list(self.measures)
        names = {m.name: m for m in self.measures}
        out = []
        for x in [measures] if isinstance(measures, str) else measures:
            nm = x if x in names else Measure.parse(x).name
            if nm not in names:
                raise ValueError(f"unknown measure {x!r}; the cube has {list(names)}")
            out.append(names[nm])
        return out

    def _finalize(self, t: CellTable, ks: KeySpace, by, ms) -> np.ndarray:
        k = t.n_cells
        ck = t.cell_key[:k]
        if ks.size <= 8 * k + 4096:  # keys are distinct: a scatter over the key space sorts
            pos = np.full(ks.size, -1, dtype=np.int64)
            pos[ck] = np.arange(k)
            order = pos[pos >= 0]
        else:
            order = np.argsort(ck)
        keys = ck[order]
        cols, dtypes = [], []
        for j, nm in enumerate(by):
            code = (keys // ks.strides[j]) % ks.radix[j]
            dim = self.all_dims[nm]
            cols.append(dim.label_of(code))
            dtypes.append((nm, dim.label_dtype))
        fidx = {nm: i for i, nm in enumerate(self.value_names)}
        for m in ms:
            if m.kind == "count":
                cols.append(t.cnt[:k][order])
                dtypes.append((m.name, np.int64))
                continue
            if m.kind == "distinct":
                h = self.hash_names.index(m.field)
                est = np.empty(k)
                hll_estimate(np.ascontiguousarray(t.hll[:k, h]), k, est)
                col = est[order]
            elif m.kind == "quantile":
                qi = self.q_names.index(m.field)
                res = np.empty((k, 1))
                qs_quantiles(
                    np.ascontiguousarray(t.qs[:k, qi]), k, np.array([m.q]), self._q_min, self.spec.quantile_gamma, res
                )
                col = res[order, 0]
            else:
                f = fidx[m.field]
                nv = (t.cnt[:k] - t.fmiss[:k, f])[order]
                with np.errstate(invalid="ignore", divide="ignore"):
                    if m.kind == "sum":
                        col = t.fsum[:k, f][order]
                    elif m.kind == "min":
                        col = t.fmin[:k, f][order]
                    elif m.kind == "max":
                        col = t.fmax[:k, f][order]
                    elif m.kind == "mean":
                        col = t.fsum[:k, f][order] / nv
                    else:
                        var = t.fm2[:k, f][order] / (nv - 1)
                        var = np.where(nv >= 2, np.maximum(var, 0.0), np.nan)
                        col = np.sqrt(var) if m.kind == "std" else var
                col = np.where(nv > 0, col, np.nan)
            cols.append(col)
            dtypes.append((m.name, np.float64))
        out = np.empty(k, dtype=dtypes)
        for (nm, _), c in zip(dtypes, cols):
            out[nm] = c
        return out


def _best(values: np.ndarray, tie: np.ndarray, k: int, ascending: bool) -> np.ndarray:
    """Positions of the ``k`` best ``values`` (NaN last), ordered by value then ``tie``."""
    v = np.asarray(values, dtype=np.float64)
    v = np.where(np.isnan(v), np.inf if ascending else -np.inf, v)
    v = v if ascending else -v
    k = min(k, len(v))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    cand = np.flatnonzero(v <= np.partition(v, k - 1)[k - 1]) if k < len(v) else np.arange(len(v))
    return cand[np.lexsort((tie[cand], v[cand]))[:k]]


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


def _measure_str(m: Measure) -> str:
    if m.kind == "count":
        return "count"
    if m.kind == "quantile":
        return f"p{m.q * 100!r}:{m.field}"
    return f"{m.kind}:{m.field}"


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


class _CellsView:
    """Some cells of a CellTable, with the attributes ``Cube._finalize`` reads."""

    def __init__(self, n: int, cell_key: np.ndarray, t: CellTable, sel: np.ndarray):
        self.n_cells = n
        self.cell_key = cell_key
        for name in ("cnt", "fmiss", "fsum", "fmin", "fmax", "fmean", "fm2", "hll", "qs"):
            setattr(self, name, getattr(t, name)[sel])


# ---- views ----------------------------------------------------------------------------------
@dataclass
class Pivot:
    """A cross-tab: ``values[i, j]`` is the measure for ``rows[i]`` x ``columns[j]`` (NaN empty)."""

    row_dim: str
    col_dim: str
    measure: str
    rows: np.ndarray
    columns: np.ndarray
    values: np.ndarray


class CubeView:
    """An immutable OLAP query on a cube; every method returns a new view or a result.

    Examples
    --------
    >>> v = cube.view().group_by("region")                    # doctest: +SKIP
    >>> v.drill_down("site").slice(service="voice").top_k("count", 3)   # doctest: +SKIP
    """

    def __init__(self, cube: Cube, by=(), where=None):
        self.cube = cube
        self.by = tuple(by)
        self.where = dict(where or {})
        cube._check_dims(self.by, "group_by")
        cube._check_dims(list(self.where), "where")

    def group_by(self, *dims: str) -> CubeView:
        return CubeView(self.cube, dims, self.where)

    def slice(self, **fixed) -> CubeView:
        """Fix dimensions to one value each (they leave the group-by)."""
        where = dict(self.where)
        where.update(fixed)
        return CubeView(self.cube, [d for d in self.by if d not in fixed], where)

    def dice(self, **conds) -> CubeView:
        """Keep only values in sets (list/set) or ranges ((lo, hi) tuples) of dimensions."""
        where = dict(self.where)
        where.update(conds)
        return CubeView(self.cube, self.by, where)

    def drill_down(self, dim: str) -> CubeView:
        """Add a finer dimension to the group-by (e.g. region -> region, site)."""
        if dim in self.by:
            raise ValueError(f"already grouped by {dim!r}")
        return CubeView(self.cube, self.by + (dim,), self.where)

    def roll_up(self, dim: str, to: str | None = None) -> CubeView:
        """Remove ``dim`` from the group-by, or replace it by a coarser ``to`` (site -> region)."""
        if dim not in self.by:
            raise ValueError(f"not grouped by {dim!r}; grouped by {self.by}")
        if to is not None and to not in self.cube.all_dims[dim].derive:
            raise ValueError(
                f"{to!r} is not a roll-up of {dim!r}; roll-ups of {dim!r}: {sorted(self.cube.all_dims[dim].derive)}"
            )
        by = [to if d == dim else d for d in self.by] if to else [d for d in self.by if d != dim]
        return CubeView(self.cube, by, self.where)

    def result(self, measures=None) -> np.ndarray:
        return self.cube.query(self.by, self.where, measures)

    to_numpy = result

    def top_k(self, measure: str, k: int, ascending: bool = False) -> np.ndarray:
        """The ``k`` groups with the largest (or smallest) ``measure`` (NaN last), best first;
        ties in group order.

        When the group-by is a materialised cuboid itself (no filter) and the measure is a
        count, sum, min, max or mean, the ``k`` cells are selected on the cuboid's measure
        column first (``np.partition``) and only they are decoded.
        """
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        cube = self.cube
        ckey = ("top_k", self.by, _freeze(self.where), str(measure), int(k), bool(ascending))
        with cube._lock:
            hit = cube._cached(ckey)
            if hit is None:
                hit = cube._top_k_cells(self.by, self.where, measure, int(k), ascending)
                if hit is None:
                    res = cube.query(self.by, self.where, _shared=True)
                    name = measure if measure in (res.dtype.names or ()) else Measure.parse(measure).name
                    if name not in res.dtype.names:
                        raise ValueError(f"unknown measure {measure!r}; columns are {res.dtype.names}")
                    hit = res[_best(res[name], np.arange(len(res)), int(k), ascending)]
                cube._store(ckey, hit)
            return hit.copy()

    def pivot(self, rows: str, columns: str, measure: str = "count") -> Pivot:
        """Cross-tab of ``measure`` with ``rows`` x ``columns`` (other group-bys are summed out)."""
        res = self.cube.query((rows, columns), self.where)
        name = measure if measure in res.dtype.names else Measure.parse(measure).name
        if name not in res.dtype.names:
            raise ValueError(f"unknown measure {measure!r}; columns are {res.dtype.names}")
        r, ri = np.unique(res[rows], return_inverse=True)
        c, cj = np.unique(res[columns], return_inverse=True)
        vals = np.full((len(r), len(c)), np.nan)
        vals[ri, cj] = res[name]
        return Pivot(rows, columns, name, r, c, vals)

    def to_pandas(self):
        return to_pandas(self.result())


def to_pandas(arr: np.ndarray):
    """A pandas DataFrame of a result array (pandas is optional).

    Raises
    ------
    ImportError
        If pandas is not installed.
    """
    try:
        import pandas as pd
    except ImportError as e:  # pragma: no cover - pandas is installed in the test environment
        raise ImportError("to_pandas needs pandas; pip install pandas, or use the NumPy result") from e
    return pd.DataFrame({n: arr[n] for n in arr.dtype.names})


# ---- many cubes from one stream ----------------------------------------------------------------
class CubeSet:
    """Many cubes updated from the same stream; codes and fields are computed once per batch.

    All cubes of a set share one lock: a query on any cube sees either none or all of a batch,
    and the budget of every cube is checked before any cube changes.

    Parameters
    ----------
    specs : dict name -> CubeSpec
    topology : Topology or None
    dimensions : dict name -> Dimension, optional
        Custom dimensions shared by the cubes.

    Raises
    ------
    ValueError
        If the cubes read different sources or bad specs.
    """

    def __init__(
        self,
        specs: dict[str, CubeSpec] | None = None,
        topology: Topology | None = None,
        *,
        dimensions: dict[str, Dimension] | None = None,
        source: str = "cdr",
    ):
        self.topology = topology
        self.source = source
        self._lock = _new_lock()
        self._wlock = threading.Lock()
        self.dimensions: dict[str, Dimension] = dict(dimensions or {})
        self._slots = TopologySlots.initial(topology) if topology is not None else None
        self._shared_tables: dict = {}
        self.cubes: dict[str, Cube] = {}
        for nm, spec in (specs or {}).items():
            self.add(nm, spec)

    def add(self, name: str, spec: CubeSpec) -> Cube:
        if name in self.cubes:
            raise ValueError(f"a cube named {name!r} already exists in the set")
        if spec.source != self.source:
            raise ValueError(
                f"cube {name!r} reads source {spec.source!r} but the set reads "
                f"{self.source!r}; use one CubeSet per source"
            )
        cube = Cube(spec, self.topology, dimensions=self.dimensions, name=name, _lock=self._lock, _slots=self._slots)
        for dn, dim in cube.all_dims.items():
            self.dimensions.setdefault(dn, dim)
        with self._lock:
            self.cubes[name] = cube
        return cube

    def __getitem__(self, name: str) -> Cube:
        try:
            return self.cubes[name]
        except KeyError:
            raise KeyError(f"no cube {name!r}; cubes are {list(self.cubes)}") from None

    def __len__(self):
        return len(self.cubes)

    def __iter__(self):
        return iter(self.cubes)

    def update(self, records: np.ndarray, *, element_idx: np.ndarray | None = None) -> dict[str, UpdateReport]:
        """Apply one batch to every cube (all or nothing).

        Raises
        ------
        CubeBudgetError
            If any cube would exceed its budget (no cube changes).
        """
        ctx = BatchContext(records, self.topology, self.source, element_idx)
        dims, vals, hashes = {}, {}, {}
        for c in self.cubes.values():
            dims.update(c.dims)
            vals.update(c.value_fields)
            hashes.update(c.hash_fields)
        return self.update_arrays(prepare_batch(ctx, dims, vals, hashes))

    def update_arrays(self, b: BatchArrays) -> dict[str, UpdateReport]:
        """Apply one batch of prepared arrays (``cube_dims.prepare_batch``) to every cube.

        ``b`` must hold the codes of every dimension and every field the cubes use.

        Raises
        ------
        CubeBudgetError
            If any cube would exceed its budget (no cube changes).
        """
        with self._wlock:
            shared = self._shared_deltas(b)
            reps = {nm: c._build_delta(b, shared.get(nm)) for nm, c in self.cubes.items()}
            with self._lock:
                for c in self.cubes.values():
                    c._check_budget()
                for nm, c in self.cubes.items():
                    c._commit(b, reps[nm])
        return reps

    def _shared_deltas(self, b: BatchArrays) -> dict:
        """Accumulate the batch once for groups of cubes that can share it.

        Cubes on the delta build with the same measure layout are grouped (largest base first)
        under the first group base that covers theirs; a group base is a cube's base key space
        of at most ``_SHARED_MAX_KEYS`` keys (dense). Each group with two or more cubes gets one
        pass over the events, then every member rolls its base delta up from the group's cells.
        A group whose batch has a row with an invalid code is not shared (each cube rejects by
        its own dimensions).

        Returns
        -------
        dict cube name -> (CellTable, KeySpace, dims)
        """
        groups: list = []
        cands = [(nm, c) for nm, c in self.cubes.items() if not c._direct_fits(b.n)]
        cands.sort(key=lambda t: -t[1].base_keys.size)
        for nm, c in cands:
            sig = c._measure_signature()
            g = next((g for g in groups if g[0] == sig and covers(g[1].dims, c.base_keys.dims, self.dimensions)), None)
            if g is None:
                if c.base_keys.size > _SHARED_MAX_KEYS:
                    continue
                g = (sig, c.base_keys, c, [])
                groups.append(g)
            g[3].append(nm)
        out = {}
        for sig, ks, c0, names in groups:
            if len(names) < 2:
                continue
            rows = np.array([b.dim_row[n] for n in ks.dims], dtype=np.int64)
            keys = np.empty(b.n, dtype=np.int64)
            cube_pack_keys(b.codes, rows, ks.strides, keys)
            if b.n and keys.min() < 0:
                continue
            tkey = (sig, ks.dims, ks.size)
            t = self._shared_tables.get(tkey)
            if t is None:
                t = self._shared_tables[tkey] = CellTable(ks.size, True, *c0._tshape)
            t.clear()
            t.reserve(min(b.n, ks.size))
            _, vrows, hrows, qrows = c0._rows(b)
            t.accumulate(keys, b, vrows, c0.mom, hrows, qrows, c0._q_min, c0._q_ilg)
            for nm in names:
                out[nm] = (t, ks, self.dimensions)
        return out

    def snapshot(self):
        """Context manager: queries on any cubes of the set inside it see the same batches."""
        return self._lock

    def set_topology(self, topology: Topology, changes: list | None = None) -> CubeSet:
        """Follow a new topology version with every cube (see :meth:`Cube.set_topology`).

        The versioned codes are computed once and shared; no query sees some cubes changed and
        others not. Batches after the call must be coded with ``topology`` (``update`` does it).

        Raises
        ------
        ValueError
            If the set has no topology, the levels differ, or without ``changes`` the new
            topology renumbers nodes.
        """
        if self.topology is None or self._slots is None:
            raise ValueError("the cube set was built without a topology; nothing to change")
        slots = self._slots.advance(topology, _compose_maps(self.topology, topology, changes))
        with self._wlock, self._lock:
            self.dimensions = {n: d for n, d in self.dimensions.items() if not _is_topology_dim(d, topology)}
            for c in self.cubes.values():
                c._retopologize(topology, slots, self.dimensions)
                for dn, dim in c.all_dims.items():
                    self.dimensions.setdefault(dn, dim)
            self.topology = topology
            self._slots = slots
            self._shared_tables = {}
        return self

    def topology_changed(self, topology: Topology, changes: list | None = None) -> None:
        """Pipeline hook (``Pipeline.change_topology(target, changes)`` calls it)."""
        self.set_topology(topology, changes)

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.cubes.values())

    def merge(self, other: CubeSet) -> CubeSet:
        """Merge another set with the same cubes (cube by cube)."""
        if list(other.cubes) != list(self.cubes):
            raise ValueError(f"cube sets differ: {list(self.cubes)} vs {list(other.cubes)}")
        for nm, c in self.cubes.items():
            c.merge(other.cubes[nm])
        return self

    def to_state(self) -> dict:
        d = {"kind": "CubeSet", "source": self.source, "names": np.array(list(self.cubes))}
        for nm, c in self.cubes.items():
            for k, v in c.to_state().items():
                d[f"{nm}/{k}"] = v
        return d

    @classmethod
    def from_state(
        cls,
        d: dict,
        *,
        topology: Topology | None = None,
        dimensions: dict[str, Dimension] | None = None,
        values: dict | None = None,
    ) -> CubeSet:
        cs = cls(None, topology, dimensions=dimensions, source=str(d["source"]))
        for nm in (str(x) for x in d["names"]):
            pre = f"{nm}/"
            sub = {k[len(pre) :]: v for k, v in d.items() if k.startswith(pre)}
            cube = Cube.from_state(sub, topology=topology, dimensions=cs.dimensions, values=values)
            cube._lock = cs._lock
            if cs.topology is None:
                cs.topology = cube.topology
            if cube._slots is not None:
                cs._slots = cube._slots
            for dn, dim in cube.all_dims.items():
                cs.dimensions.setdefault(dn, dim)
            cs.cubes[nm] = cube
        return cs


# ---- exploration for the replay ----------------------------------------------------------------
def explore_spec(cell_budget: int = 2_000_000, **overrides) -> CubeSpec:
    """The cube :func:`explore_summary` reads: calls, answered and dropped by region / site /
    hour of day / equipment class / service, with duration statistics (``overrides`` go to
    :class:`CubeSpec`)."""
    args = dict(
        dimensions=["region", "site", "equipment_class", "service", "hour_of_day"],
        measures=["count", "sum:answered", "sum:dropped", "mean:duration_ms"],
        cuboids=[("region", "service"), ("site", "equipment_class", "hour_of_day")],
        cell_budget=cell_budget,
    )
    args.update(overrides)
    return CubeSpec(**args)


def explore_summary(
    cubes, topology: Topology | None = None, cube: str = "explore", k: int = 3, min_answered: int = 30
) -> list[str]:
    """Lines describing the worst regions by drop rate and a drill-down into the worst site.

    Parameters
    ----------
    cubes : CubeSet or Cube
        A set holding a cube named ``cube`` built from :func:`explore_spec`, or that cube.
    topology : Topology, optional
        Unused beyond naming; labels already carry the external ids.
    k : int
        How many regions / hours to list.
    min_answered : int
        Sites and drill-down cells with fewer answered calls are not ranked (their rates are
        noise); if no site qualifies, every site is ranked.

    Returns
    -------
    list of str

    Notes
    -----
    Drop rate = dropped / answered calls, where dropped = answered and released with a cause
    outside ``CAUSE_NORMAL + CAUSE_USER``.
    """
    c = cubes[cube] if isinstance(cubes, CubeSet) else cubes
    lines = []
    reg = c.query(("region",), measures=["count", "sum:answered", "sum:dropped"])
    if len(reg) == 0:
        return ["cube: no calls yet"]
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = reg["sum_dropped"] / reg["sum_answered"]
    rate = np.where(np.isnan(rate), -1.0, rate)
    order = np.argsort(-rate, kind="stable")[:k]
    lines.append(f"cube: worst {len(order)} regions by drop rate (dropped / answered calls)")
    for i in order:
        lines.append(
            f"  region {reg['region'][i]}: {max(rate[i], 0.0):.2%} of "
            f"{int(reg['sum_answered'][i])} answered ({int(reg['count'][i])} calls)"
        )
    worst_region = reg["region"][order[0]]
    sites = c.query(("site",), where={"region": worst_region}, measures=["sum:answered", "sum:dropped"])
    with np.errstate(invalid="ignore", divide="ignore"):
        srate = np.where(sites["sum_answered"] > 0, sites["sum_dropped"] / sites["sum_answered"], -1.0)
    if np.any(sites["sum_answered"] >= min_answered):
        srate = np.where(sites["sum_answered"] >= min_answered, srate, -1.0)
    ws = int(np.argmax(srate))
    site = sites["site"][ws]
    lines.append(
        f"cube: worst site {site} of region {worst_region}: drop rate "
        f"{max(srate[ws], 0.0):.2%}; by hour of day and equipment class:"
    )
    drill = c.query(
        ("hour_of_day", "equipment_class"), where={"site": site}, measures=["count", "sum:answered", "sum:dropped"]
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        drate = np.where(drill["sum_answered"] > 0, drill["sum_dropped"] / drill["sum_answered"], -1.0)
    # most dropped calls first (then the higher rate): where the site loses its calls
    for i in np.lexsort((-drate, -drill["sum_dropped"]))[:k]:
        lines.append(
            f"  {int(drill['hour_of_day'][i]):02d}h {drill['equipment_class'][i]}: "
            f"{max(drate[i], 0.0):.2%} dropped of {int(drill['sum_answered'][i])} answered"
        )
    return lines
