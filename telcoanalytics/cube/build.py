"""How a batch reaches a :class:`~telcoanalytics.cube.cube.Cube`: the delta build (accumulate the
batch into a base delta, roll every cuboid's delta up from the smallest covering one, check the
budget, merge) and the direct build (the finest cuboid accumulated straight into its state, the
others under small group bases), with their plans.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kernels.cube import cube_pack_keys, cube_rekey
from telcoanalytics.cube.dims import (
    BatchArrays,
)
from telcoanalytics.cube.spec import DerivePlan, KeySpace, covers
from telcoanalytics.cube.table import CellTable, PositionalCellTable


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


_MODELLED_MIN_KEYS = 1 << 16
"""With the build chosen by modelled cost, the direct build is not planned below this finest key
space (its delta stays small next to a batch)."""


class _CubeBuild:
    """Mixin of :class:`~telcoanalytics.cube.cube.Cube`: planning and applying a batch (delta or direct build)."""

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
        self._build_cost_cache: dict = {}
        ks_b, spec = self.base_keys, self.spec
        for c in self.cuboids:
            c.n_possible = self._possible(c.keys.dims)
        floor = _MODELLED_MIN_KEYS if spec.direct_min_keys is None else spec.direct_min_keys
        if ks_b.size < floor:
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
            # streaming into an existing cube is faster positional than through the index, a new
            # cube's build is not (bench_cube.py reports both; opt-in: spec.positional_max_keys)
            cards = [self.dims[d].cardinality for d in ks_b.dims]
            tcb.table = PositionalCellTable(ks_b.size, len(self.value_names), ks_b.shifts, ks_b.radix, cards)

    def _possible(self, dims) -> int:
        """Cells a key space over ``dims`` can hold (product of the cardinalities)."""
        return int(np.prod([self.dims[d].cardinality for d in dims], dtype=object))

    def build_costs(self, n: int) -> tuple[float, float]:
        """Modelled cost of a batch of ``n`` events: ``(delta build, direct build)`` (``inf`` when
        the direct build does not apply), see ``CubeSpec.direct_min_keys``.

        One unit per event of each pass over the batch and per delta cell rolled up or merged
        into the state; a delta over ``P`` possible keys holds ``P (1 - exp(-n / P))`` cells (the
        distinct keys of ``n`` uniform draws, an upper bound for skewed data).
        """
        hit = self._build_cost_cache.get(n)
        if hit is not None:
            return hit

        def cells(p: int) -> float:
            return float(p) * -math.expm1(-n / float(p)) if p > 0 else 0.0

        def rollups(steps, base_possible: int) -> float:
            return sum(
                cells(base_possible if st.parent < 0 else self.cuboids[st.parent].n_possible)
                for st in steps
                if st.plan is not None
            )

        merges = {i: cells(c.n_possible) for i, c in enumerate(self.cuboids)}
        delta = n + rollups(self._delta_steps, self._possible(self.base_keys.dims)) + sum(merges.values())
        direct = math.inf
        if self._direct is not None:
            direct = float(n)  # the finest cuboid, straight into its state
            for g in self._direct.groups:
                direct += n + rollups(g.steps, self._possible(g.keys.dims)) + sum(merges[i] for i in g.members)
        self._build_cost_cache[n] = (delta, direct)
        return delta, direct

    def _direct_fits(self, n: int) -> bool:
        """True if the direct build applies (a threshold of ``spec.direct_min_keys``, or else the
        lower modelled cost, :meth:`build_costs`) and this batch cannot exceed the budget even if
        every event made a new cell in every cuboid (then no exact check is needed)."""
        if self._direct is None:
            return False
        if self.spec.direct_min_keys is None:
            delta, direct = self.build_costs(n)
            if not direct < delta:
                return False
        total = 0
        for c in self.cuboids:
            have = c.table.n_cells
            total += have + min(n, max(0, c.n_possible - have))
        return total <= self.spec.cell_budget

    def _build_delta(self, b: BatchArrays, shared=None) -> UpdateReport:
        """Accumulate the batch into the delta tables (no lock: state is not touched).

        In the direct mode (``_plan_direct``) nothing is built here: the commit accumulates the
        events under the lock. ``shared`` is ``(CellTable, KeySpace, dims)``: the batch already
        accumulated by the CubeSet over a key space covering this cube's base, with no rejected
        row; the base delta is then rolled up from its cells instead of from the events.
        """
        if self._direct_fits(b.n):
            self._mode = self._last_build = "direct"
            self._deltas = {}
            rep = UpdateReport(b.n, b.n, 0)
            self._time_info(b, rep)
            return rep
        self._mode = self._last_build = "delta"
        base = self._base_delta
        base.clear()
        if shared is not None:
            src, ks, dims = shared
            plan = DerivePlan.build(ks, self.base_keys.dims, dims)
            n = src.n_cells
            keys = np.empty(n, dtype=np.int64)
            cube_rekey(src.cell_key, n, plan.args(), self.base_keys.strides, keys)
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
            cube_rekey(parent.cell_key, n, st.plan.args(), st.strides, keys)
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
        # without sketches are small, so allocate ahead (growing a large table batch by batch
        # costs more than its copies, bench_cube.py::test_build_with_element_dimension)
        need = tcb.table.n_cells + min(b.n, max(0, tcb.n_possible - tcb.table.n_cells))
        if self._t_dim is not None and not self.hash_names and not self.q_names:
            # with a retention the cells stop growing once the window is full: size the table for
            # the full window when it must grow (not 4x ahead, then doubled: a table that grows
            # while the window fills would double days into a run)
            if need > tcb.table.cap:
                ahead = min(tcb.n_possible, self.spec.cell_budget, self._window_cells(tcb, need))
                tcb.table.reserve(max(need, ahead), exact=True)
        else:
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

    def _window_cells(self, cb: _Cuboid, need: int) -> int:
        """Cells to allocate for cuboid ``cb`` of a cube with a retention when it must hold ``need``
        (its cells plus the batch's events): a quarter more than a full window (the retention's
        time buckets plus the one a batch may open before the oldest is dropped) of buckets as
        full as the fullest held one, or than the cells held, whichever is more, plus the batch;
        so the table grows to its full size in the window's first buckets and seldom after, by a
        quarter at least when it does."""
        n = cb.table.n_cells
        window = 0
        if n:
            j = cb.keys.dims.index(self._t_dim)
            t = (cb.table.cell_key[:n] // cb.keys.strides[j]) % cb.keys.radix[j]
            window = int(np.bincount(t - t.min()).max()) * (self._retention_buckets + 1)
        return -(-5 * (max(n, window) + need - n) // 4)

    def _apply_retention(self, cutoff: int):
        for cb in self.cuboids:
            j = cb.keys.dims.index(self._t_dim)
            n = cb.table.n_cells
            t = (cb.table.cell_key[:n] // cb.keys.strides[j]) % cb.keys.radix[j]
            keep = t >= cutoff
            if not keep.all():
                cb.table.compact(keep)
