"""Cube declarations: measures, the cube spec, and the lattice plan of cuboids.

A cuboid is a group-by over a subset of the cube's dimensions. It *stores* only the dimensions
not derivable from another one of the cuboid (``(element, region)`` stores ``element``; region
comes from the topology at query time), which keeps keys short. A group-by is answered from
the smallest materialised cuboid whose stored dimensions give every requested dimension either
directly or by a derivation (element > site > region, minute > hour > day ...).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from telcoanalytics.cube.dims import Derivation, Dimension

MEASURE_KINDS = ("count", "sum", "min", "max", "mean", "var", "std", "distinct", "quantile")
MAX_KEYSPACE = 1 << 62
MAX_ALL_DIMS = 12


@dataclass(frozen=True)
class Measure:
    """One measure: ``kind`` over value ``field`` (``count`` has none; ``quantile`` has ``q``).

    Strings parse as ``"count"``, ``"sum:duration_ms"``, ``"var:bytes_down"``,
    ``"distinct:imsi_hash"``, ``"p95:duration_ms"`` (quantile 0.95), ``"median:setup_ms"``.
    """

    kind: str
    field: str | None = None
    q: float | None = None

    def __post_init__(self):
        if self.kind not in MEASURE_KINDS:
            raise ValueError(f"unknown measure kind {self.kind!r}; use one of {MEASURE_KINDS}")
        if self.kind == "count" and self.field is not None:
            raise ValueError("measure 'count' counts rows and takes no field; use 'sum:<field>'")
        if self.kind != "count" and not self.field:
            raise ValueError(f"measure {self.kind!r} needs a field, e.g. '{self.kind}:duration_ms'")
        if self.kind == "quantile" and (self.q is None or not 0.0 <= self.q <= 1.0):
            raise ValueError(f"quantile measure needs q in [0, 1], got {self.q!r}")

    @classmethod
    def parse(cls, m: str | Measure) -> Measure:
        if isinstance(m, Measure):
            return m
        if not isinstance(m, str):
            raise ValueError(f"a measure is a string like 'sum:duration_ms' or a Measure, got {m!r}")
        kind, _, fld = m.partition(":")
        fld = fld or None
        mq = re.fullmatch(r"p(\d+(?:\.\d+)?)", kind)
        if mq:
            return cls("quantile", fld, float(mq.group(1)) / 100.0)
        if kind == "median":
            return cls("quantile", fld, 0.5)
        return cls(kind, fld)

    @property
    def name(self) -> str:
        if self.kind == "count":
            return "count"
        if self.kind == "quantile":
            return f"p{self.q * 100:g}_{self.field}".replace(".", "_")
        return f"{self.kind}_{self.field}"


def rollup(*dims: str) -> list[tuple[str, ...]]:
    """Grouping sets of SQL ``ROLLUP(d1, d2, ...)``: every prefix, finest first, then ``()``."""
    return [tuple(dims[:k]) for k in range(len(dims), -1, -1)]


@dataclass
class CubeSpec:
    """Declaration of a cube.

    Parameters
    ----------
    dimensions : sequence of str or Dimension
        Built-in names (see ``telcoanalytics.cube.dims.builtin_dimension``) or Dimension objects.
    measures : sequence of str or Measure
        ``count``, ``sum/min/max/mean/var/std:<field>``, ``distinct:<hash field>``,
        ``pNN:<field>`` / ``median:<field>`` (see :class:`Measure`).
    cuboids : "all" or sequence of tuples of dimension names
        Materialised group-bys: every subset (``"all"``, at most 12 dimensions), or grouping
        sets, e.g. ``rollup("region", "site")`` or ``[("site", "hour"), ("region",)]``.
    cell_budget : int
        Most cells over all materialised cuboids; a batch that would exceed it raises
        ``CubeBudgetError`` and changes nothing.
    retention_ms : int or None
        Keep only the time buckets of ``time_dimension`` newer than this (relative to the latest
        event seen); every materialised cuboid must then contain ``time_dimension``.
    time_dimension : str or None
        The time-bucket dimension retention applies to (default: the first time-bucket one).
    source : str
        Canonical source of the records (``"cdr"`` by default).
    time_origin_ms : int
        Origin of the time-bucket codes (multiple of the granularities for hour-of-day roll-up).
    dense_limit : int
        Cuboids whose key space is at most this use a dense index, others a hash table.
    hll_p : int
        HyperLogLog precision (4..16): relative standard error ``1.04 / sqrt(2**hll_p)``.
    quantile_alpha, quantile_min, quantile_max : float
        Percentile sketch relative accuracy and value range (values below ``quantile_min``
        report as 0, above ``quantile_max`` as the top bucket).
    direct_min_keys : int or None
        How a batch reaches the cube when one cuboid holds every stored dimension (element x
        service x hour ...). The *direct build* accumulates the events straight into that
        cuboid's state and rolls the other cuboids up from small deltas, each fed by its own pass
        over the events; the *delta build* accumulates the batch once into a delta of the finest
        key space, rolls every cuboid's delta up from it and merges them. None (the default):
        per batch, the build with the lower modelled cost, one unit per event of each pass over
        the batch and per delta cell rolled up or merged, the delta cells estimated as the
        distinct keys of a uniform batch (``P (1 - exp(-n / P))`` of ``P`` possible keys); the
        direct build wins when a batch makes nearly as many cells as it has events. An int: the
        direct build whenever the finest stored key space has at least this many keys (1 forces
        it, ``2**62`` disables it). Either way the direct build applies only when the batch
        cannot exceed ``cell_budget``.
    direct_group_max_keys : int
        Largest key space of a small delta in the direct build (else the delta build is used).
    positional_max_keys : int
        In the direct build, the finest cuboid's measures are stored by position (row = mixed
        radix number of the codes, no index lookup per event) when the product of its
        dimensions' cardinalities is at most this, its key space is within ``dense_limit``, and the measures are count and at most one value field's
        sum / min / max / mean (no var / std / distinct / percentiles); 0 (the default)
        disables it. Streaming batches into a long-lived cube is faster this way, building a new
        cube from scratch is not (creating the cells and first-touching memory dominate; see
        ``bench_cube.py::test_stream_into_existing_element_cube``), and the compact cells are
        gathered again at the first read after a batch (O(cells touched)). E.g. ``1 << 23``.
    values : dict name -> callable(BatchContext) -> array or None, optional
        Custom value fields (hash fields too, for ``distinct``); ``None`` declares a field that
        only ``Cube.update_codes`` supplies.
    """

    dimensions: Sequence
    measures: Sequence = ("count",)
    cuboids: object = "all"
    cell_budget: int = 5_000_000
    retention_ms: int | None = None
    time_dimension: str | None = None
    source: str = "cdr"
    time_origin_ms: int = 0
    dense_limit: int = 1 << 23
    hll_p: int = 12
    quantile_alpha: float = 0.01
    quantile_min: float = 1.0
    quantile_max: float = 1e10
    values: dict | None = None
    direct_min_keys: int | None = None
    direct_group_max_keys: int = 1 << 18
    positional_max_keys: int = 0

    def validate(self):
        if not 4 <= int(self.hll_p) <= 16:
            raise ValueError(f"hll_p must be in 4..16, got {self.hll_p}")
        if not 0.0 < float(self.quantile_alpha) < 0.5:
            raise ValueError(f"quantile_alpha must be in (0, 0.5), got {self.quantile_alpha}")
        if not 0.0 < float(self.quantile_min) < float(self.quantile_max):
            raise ValueError(f"need 0 < quantile_min < quantile_max, got {self.quantile_min}, {self.quantile_max}")
        if int(self.cell_budget) < 1:
            raise ValueError(f"cell_budget must be >= 1, got {self.cell_budget}")
        if self.direct_min_keys is not None and int(self.direct_min_keys) < 1:
            raise ValueError(
                f"direct_min_keys must be None (build chosen by modelled cost) or >= 1, got {self.direct_min_keys}"
            )
        if self.retention_ms is not None and int(self.retention_ms) <= 0:
            raise ValueError(f"retention_ms must be > 0 or None, got {self.retention_ms}")

    @property
    def quantile_gamma(self) -> float:
        a = float(self.quantile_alpha)
        return (1.0 + a) / (1.0 - a)

    @property
    def quantile_buckets(self) -> int:
        return int(math.ceil(math.log(self.quantile_max / self.quantile_min) / math.log(self.quantile_gamma))) + 2


def reduce_dims(names: Sequence[str], dims: dict[str, Dimension]) -> tuple[str, ...]:
    """Drop every dimension derivable from another one kept (in the given order)."""
    kept = list(names)
    for nm in list(names):
        others = [o for o in kept if o != nm]
        if any(nm in dims[o].derive for o in others):
            kept.remove(nm)
    return tuple(kept)


def derivation_for(target: str, stored: Sequence[str], dims: dict[str, Dimension]):
    """(position in ``stored``, Derivation or None) giving ``target``, or None if impossible."""
    if target in stored:
        return stored.index(target), None
    for j, s in enumerate(stored):
        if target in dims[s].derive:
            return j, dims[s].derive[target]
    return None


def covers(stored: Sequence[str], needed: Sequence[str], dims: dict[str, Dimension]) -> bool:
    return all(derivation_for(t, stored, dims) is not None for t in needed)


@dataclass
class KeySpace:
    """Packed-key layout of a tuple of stored dimensions (first dimension most significant).

    Every radix is the cardinality rounded up to a power of two, so a code is recovered from a
    key with a shift and a mask (no division) when cells are rolled up or decoded.
    """

    dims: tuple[str, ...]
    radix: np.ndarray
    strides: np.ndarray
    shifts: np.ndarray
    size: int

    @classmethod
    def of(cls, names: Sequence[str], dims: dict[str, Dimension]) -> KeySpace:
        bits = [max(0, int(dims[n].cardinality - 1).bit_length()) for n in names]
        total = sum(bits)
        if total > 62:
            raise ValueError(
                f"the key space of cuboid {tuple(names)} needs {total} bits (> 2**62 "
                "keys); use coarser dimensions or set a time_origin_ms close to the data"
            )
        shifts = []
        acc = 0
        for b in reversed(bits):
            shifts.append(acc)
            acc += b
        shifts = np.array(shifts[::-1], dtype=np.int64)
        return cls(
            tuple(names),
            np.array([1 << b for b in bits], dtype=np.int64),
            np.left_shift(np.int64(1), shifts).astype(np.int64),
            shifts,
            1 << total,
        )


@dataclass
class DerivePlan:
    """Arguments of ``cube_rekey`` / ``cube_decode`` mapping a parent key space to targets."""

    shift: np.ndarray
    mask: np.ndarray
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    m: np.ndarray
    t_off: np.ndarray
    t_len: np.ndarray
    tables: np.ndarray

    @classmethod
    def build(cls, parent: KeySpace, targets: Sequence[str], dims: dict[str, Dimension]) -> DerivePlan:
        cols = {k: [] for k in ("shift", "mask", "a", "b", "c", "m", "t_off", "t_len")}
        tables = []
        off = 0
        for t in targets:
            found = derivation_for(t, parent.dims, dims)
            if found is None:
                raise ValueError(f"dimension {t!r} cannot be derived from {parent.dims}")
            j, der = found
            der = der or Derivation()
            cols["shift"].append(parent.shifts[j])
            cols["mask"].append(parent.radix[j] - 1)
            cols["a"].append(der.a)
            cols["b"].append(der.b)
            cols["c"].append(der.c)
            cols["m"].append(der.m)
            if der.table is not None:
                tab = np.asarray(der.table, dtype=np.int64)
                reach = min(dims[parent.dims[j]].cardinality, der.m)
                if der.b == 1 and der.a == 0 and der.c == 0 and len(tab) < reach:
                    raise ValueError(
                        f"the derivation table {parent.dims[j]!r} -> {t!r} has "
                        f"{len(tab)} entries for {reach} codes; give one per code"
                    )
                tables.append(tab)
                cols["t_off"].append(off)
                cols["t_len"].append(len(tab))
                off += len(tab)
            else:
                cols["t_off"].append(0)
                cols["t_len"].append(0)
        arrs = {k: np.array(v, dtype=np.int64) for k, v in cols.items()}
        tab = np.concatenate(tables) if tables else np.zeros(1, dtype=np.int64)
        return cls(tables=np.ascontiguousarray(tab), **arrs)

    def args(self) -> tuple:
        """The plan as the kernels take it: a plain tuple laid out as ``kernels.cube.DeriveArgs`` (plain
        tuples take Numba's fast dispatch path, see ``kernels.cube``)."""
        return (self.shift, self.mask, self.a, self.b, self.c, self.m, self.t_off, self.t_len, self.tables)


def resolve_cuboids(cuboids, names: Sequence[str]) -> list[tuple[str, ...]]:
    """The materialised grouping sets as tuples in the cube's dimension order (deduplicated)."""
    if isinstance(cuboids, str):
        if cuboids != "all":
            raise ValueError(f"cuboids must be 'all' or a list of grouping sets, got {cuboids!r}")
        if len(names) > MAX_ALL_DIMS:
            raise ValueError(
                f"cuboids='all' over {len(names)} dimensions is 2**{len(names)} cuboids; "
                f"list grouping sets instead (at most {MAX_ALL_DIMS} dimensions for 'all')"
            )
        out = []
        for k in range(len(names), -1, -1):
            out.extend(itertools.combinations(names, k))
        return out
    out: list[tuple[str, ...]] = []
    for g in cuboids:
        g = (g,) if isinstance(g, str) else tuple(g)
        unknown = [x for x in g if x not in names]
        if unknown:
            raise ValueError(f"cuboid {g} names {unknown}, not dimensions of the cube {tuple(names)}")
        if len(set(g)) != len(g):
            raise ValueError(f"cuboid {g} repeats a dimension")
        t = tuple(x for x in names if x in g)
        if t not in out:
            out.append(t)
    if not out:
        raise ValueError("cuboids is empty; give at least one grouping set")
    return out
