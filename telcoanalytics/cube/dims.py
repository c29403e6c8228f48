"""Cube dimensions, value fields and the per-batch arrays they produce.

A :class:`Dimension` turns a canonical record batch (plus the topology) into small integer codes
``0..cardinality-1`` (``-1`` for a value it cannot code, such as an element missing from the
topology: such rows are rejected and counted, never silently dropped). A dimension also knows
which coarser dimensions derive from its codes (:class:`Derivation`): element > site > region,
element > equipment class / vendor / technology, minute > hour > day > day of week, and so on.
Those derivations drive roll-up in queries and the choice of the cuboid that answers them.

A :class:`ValueField` turns a batch into float64 values (NaN = missing) for the measures; a hash
field gives int64 identities (subscribers) for distinct counts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from telcoanalytics.records import (
    CAUSE_CONGESTION,
    CAUSE_FAILURE,
    CAUSE_NORMAL,
    CAUSE_USER,
    DTYPES,
    ELEMENT_FIELD,
    EQUIPMENT_CLASSES,
    Q850_MAX,
    SERVICES,
    TECHNOLOGIES,
    TIME_FIELD,
    VENDORS,
)
from telcoanalytics.topology.model import Topology

BIG_MOD = 1 << 62
MS_MINUTE = 60_000
MS_HOUR = 3_600_000
MS_DAY = 86_400_000
TIME_GRANULARITY_MS = {"minute": MS_MINUTE, "hour": MS_HOUR, "day": MS_DAY}
CAUSE_CLASSES = ("normal", "user", "congestion", "failure", "other")
# 1970-01-01 was a Thursday; day_of_week codes are 0 = Monday .. 6 = Sunday.
_EPOCH_DOW = 3
_CODE_MAX = np.iinfo(np.int32).max


@dataclass(frozen=True)
class Derivation:
    """Map the codes of one dimension to the codes of a coarser one.

    ``out = ((code + a) // b + c) % m``, then ``out = table[out]`` when ``table`` is given
    (every code must map to a code >= 0). Topology roll-ups are tables; time roll-ups are
    arithmetic.
    """

    a: int = 0
    b: int = 1
    c: int = 0
    m: int = BIG_MOD
    table: np.ndarray | None = None

    def __post_init__(self):
        if self.b < 1 or self.m < 1:
            raise ValueError(f"Derivation needs b >= 1 and m >= 1, got b={self.b}, m={self.m}")
        if self.table is not None:
            t = np.asarray(self.table)
            if t.ndim != 1 or t.dtype.kind not in "iu" or (len(t) and t.min() < 0):
                raise ValueError("a derivation table must be a 1-d array of codes >= 0 (one per source code)")


class BatchContext:
    """One canonical record batch with the lookups every dimension shares (computed once).

    Parameters
    ----------
    records : structured array of a canonical dtype (``records.DTYPES``)
    topology : Topology or None
    source : str
        Source name (``"cdr"``, ``"equip"``, ``"flow"``, ``"qos"``).
    element_idx : int array or None
        Dense element index of every row when the caller already has it (``-1`` unknown).
    """

    def __init__(
        self, records: np.ndarray, topology: Topology | None, source: str = "cdr", element_idx: np.ndarray | None = None
    ):
        if source not in DTYPES:
            raise ValueError(f"source must be one of {tuple(DTYPES)}, got {source!r}")
        names = getattr(getattr(records, "dtype", None), "names", None)
        if names is None:
            raise ValueError(
                f"records must be a structured array of the {source!r} dtype "
                f"(records.DTYPES[{source!r}]), got {type(records).__name__}"
            )
        missing = [f for f in DTYPES[source].names if f not in names]
        if missing:
            raise ValueError(
                f"records lack fields {missing} of the {source!r} dtype; convert with telcoanalytics ingest first"
            )
        self.records = records
        self.topology = topology
        self.source = source
        self.n = len(records)
        if element_idx is not None:
            element_idx = np.asarray(element_idx)
            if element_idx.shape != (self.n,):
                raise ValueError(
                    f"element_idx has shape {element_idx.shape}, expected ({self.n},) "
                    "(one dense element index per record)"
                )
        self._element_idx = element_idx
        self.cache: dict[str, np.ndarray] = {}

    @property
    def element_idx(self) -> np.ndarray:
        if self._element_idx is None:
            if self.topology is None:
                raise ValueError("a topology dimension needs a topology; pass topology=")
            self._element_idx = self.topology.index_of(self.records[ELEMENT_FIELD[self.source]])
        return self._element_idx

    @property
    def time_ms(self) -> np.ndarray:
        return self.records[TIME_FIELD[self.source]]


@dataclass(eq=False)
class Dimension:
    """A named coding of records into ``0..cardinality-1``.

    Parameters
    ----------
    name : str
    cardinality : int
        Number of codes (the radix of this dimension in packed keys).
    compute : callable(BatchContext) -> int array
        Codes of a batch, ``-1`` where the row has no valid code.
    labels : array or None
        Label of each code (external ids, names). ``None``: the label is
        ``label_offset + code * label_scale`` (time buckets: the bucket start in ms).
    derive : dict name -> Derivation
        Coarser dimensions computable from this one's codes.
    recipe : str
        ``"builtin"`` for the dimensions of :func:`builtin_dimension` (rebuilt by name when a
        cube is restored) or ``"custom"`` (must be passed again to ``from_state``).
    canon : int array or None
        Code that queries group and filter by, per code, when several codes share a label (the
        versioned topology codes of :class:`TopologySlots`); None: every code is its own.
    """

    name: str
    cardinality: int
    compute: Callable[[BatchContext], np.ndarray]
    labels: np.ndarray | None = None
    derive: dict[str, Derivation] = field(default_factory=dict)
    label_scale: int = 1
    label_offset: int = 0
    recipe: str = "custom"
    canon: np.ndarray | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"dimension name must be a non-empty string, got {self.name!r}")
        if int(self.cardinality) < 1 or int(self.cardinality) > _CODE_MAX:
            raise ValueError(f"dimension {self.name!r}: cardinality must be in 1..{_CODE_MAX}, got {self.cardinality}")
        self.cardinality = int(self.cardinality)
        if self.labels is not None:
            self.labels = np.asarray(self.labels)
            if len(self.labels) != self.cardinality:
                raise ValueError(
                    f"dimension {self.name!r}: {len(self.labels)} labels for cardinality "
                    f"{self.cardinality}; give one label per code"
                )
        self._label_index: dict | None = None

    def codes(self, ctx: BatchContext) -> np.ndarray:
        """Codes of a batch as int32, out-of-range values replaced by -1 (counted by the caller)."""
        c = np.asarray(self.compute(ctx))
        if c.shape != (ctx.n,):
            raise ValueError(
                f"dimension {self.name!r} returned shape {c.shape} for a batch of "
                f"{ctx.n} rows; compute must return one code per row"
            )
        if c.dtype.kind not in "iu":
            raise ValueError(f"dimension {self.name!r} returned dtype {c.dtype}; codes must be integers")
        c64 = c.astype(np.int64, copy=False)
        bad = (c64 < 0) | (c64 >= self.cardinality)
        out = c64.astype(np.int32)
        if bad.any():
            out[bad] = -1
        return out

    def label_of(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes, dtype=np.int64)
        if self.labels is not None:
            return self.labels[codes]
        return self.label_offset + codes * self.label_scale

    @property
    def label_dtype(self) -> np.dtype:
        return self.labels.dtype if self.labels is not None else np.dtype(np.int64)

    def encode(self, values) -> np.ndarray:
        """Codes of the given labels; raises ValueError naming any unknown label."""
        vals = np.atleast_1d(np.asarray(values))
        if self.labels is None:
            v = vals.astype(np.int64) - self.label_offset
            codes = v // self.label_scale
            bad = (v % self.label_scale != 0) | (codes < 0) | (codes >= self.cardinality)
        else:
            if self._label_index is None:
                self._label_index = {
                    lab.item() if hasattr(lab, "item") else lab: i for i, lab in enumerate(self.labels)
                }
            codes = np.array(
                [self._label_index.get(x.item() if hasattr(x, "item") else x, -1) for x in vals], dtype=np.int64
            )
            bad = codes < 0
            if self.canon is not None and not bad.any():
                codes = self.canon[codes]
        if bad.any():
            known = self.labels[:5].tolist() if self.labels is not None else "bucket starts"
            raise ValueError(
                f"dimension {self.name!r} has no value {vals[bad][0].item()!r}; known values include {known}"
            )
        return codes


@dataclass(eq=False)
class ValueField:
    """A float64 value per record (NaN = missing) or, with ``kind="hash"``, an int64 identity."""

    name: str
    compute: Callable[[BatchContext], np.ndarray]
    kind: str = "value"


# ---- built-ins ---------------------------------------------------------------------------
def _cause_class_table() -> np.ndarray:
    t = np.full(Q850_MAX + 1, 4, dtype=np.int32)
    t[0] = -1
    for code, group in ((0, CAUSE_NORMAL), (1, CAUSE_USER), (2, CAUSE_CONGESTION), (3, CAUSE_FAILURE)):
        t[list(group)] = code
    return t


_CAUSE_TABLE = _cause_class_table()


def _lookup(table: np.ndarray, idx: np.ndarray) -> np.ndarray:
    idx = np.asarray(idx, dtype=np.int64)
    ok = (idx >= 0) & (idx < len(table))
    out = np.full(idx.shape, -1, dtype=np.int64)
    out[ok] = table[idx[ok]]
    return out


ATTRIBUTE_NAMES = {"equipment_class": EQUIPMENT_CLASSES, "vendor": VENDORS, "technology": TECHNOLOGIES}


class TopologySlots:
    """Versioned codes of the topology nodes: a cube's codes for region / site / element.

    A *slot* is a node together with its ancestors (and, for elements, its attributes) as they
    were when the slot was created. Initially slot ``i`` of a level is node ``i``. When a
    topology change moves a node (re-home) or changes an element's attributes, the node gets a
    new slot from then on; its old slot keeps the old parent. Cells accumulated before the
    change therefore keep rolling up to the parent their events had (history is not rewritten),
    events after it roll up to the new parent, and grouping by the node itself merges its slots
    (``canon``: the node's first slot). Slots are append-only, so stored cell codes stay valid.

    Parameters
    ----------
    levels : tuple of str
    ids : dict level -> int64 array
        External id of every slot.
    parent : dict level -> int64 array
        Parent slot (at the level above) of every slot of a non-root level.
    current : dict level -> int64 array
        Slot that new events of every node of the current topology use.
    attrs : dict name -> int64 array
        Attribute code of every element slot (``-1`` unknown).
    """

    def __init__(self, levels, ids, parent, current, attrs):
        self.levels = tuple(levels)
        self.ids = {lv: np.asarray(ids[lv], dtype=np.int64) for lv in self.levels}
        self.parent = {lv: np.asarray(parent[lv], dtype=np.int64) for lv in self.levels[1:]}
        self.current = {lv: np.asarray(current[lv], dtype=np.int64) for lv in self.levels}
        self.attrs = {a: np.asarray(v, dtype=np.int64) for a, v in attrs.items()}

    @classmethod
    def initial(cls, topology: Topology) -> TopologySlots:
        lv = topology.levels
        attrs = {
            a: np.asarray(topology.attributes[a], dtype=np.int64) for a in ATTRIBUTE_NAMES if a in topology.attributes
        }
        return cls(
            lv,
            {x: topology.ids[x] for x in lv},
            {x: topology.parent[x] for x in lv[1:]},
            {x: np.arange(topology.n_nodes(x), dtype=np.int64) for x in lv},
            attrs,
        )

    @property
    def identity(self) -> bool:
        """True while every slot is its node (no node has moved yet)."""
        return all(
            len(self.ids[lv]) == len(self.current[lv])
            and np.array_equal(self.current[lv], np.arange(len(self.current[lv])))
            for lv in self.levels
        )

    def n_slots(self, level: str) -> int:
        return len(self.ids[level])

    def advance(self, topology: Topology, old_to_new: dict | None = None) -> TopologySlots:
        """The slots after a change to ``topology``.

        Parameters
        ----------
        topology : Topology
            The new topology (same levels).
        old_to_new : dict level -> int64 array, optional
            New dense index of every node of the previous topology (the composition of the
            ``TopologyChange.old_to_new`` maps; -1 removed). Identity when omitted (append-only
            changes).

        Raises
        ------
        ValueError
            If the levels differ.
        """
        if tuple(topology.levels) != self.levels:
            raise ValueError(
                f"the new topology has levels {tuple(topology.levels)}, the cube was built "
                f"for {self.levels}; a cube cannot change its hierarchy"
            )
        ids = dict(self.ids)
        parent = dict(self.parent)
        attrs = dict(self.attrs)
        current = {}
        e_lv = self.levels[-1]
        for k, lv in enumerate(self.levels):
            n_new = topology.n_nodes(lv)
            cur = np.full(n_new, -1, dtype=np.int64)
            old_cur = self.current[lv]
            o2n = (
                np.arange(len(old_cur), dtype=np.int64)
                if old_to_new is None
                else np.asarray(old_to_new[lv], dtype=np.int64)
            )
            keep = (o2n >= 0) & (o2n < n_new)
            cur[o2n[keep]] = old_cur[keep]
            want_parent = current[self.levels[k - 1]][topology.parent[lv]] if k > 0 else None
            stale = cur < 0
            have = np.flatnonzero(~stale)
            if k > 0:
                stale[have] |= parent[lv][cur[have]] != want_parent[have]
            if lv == e_lv:
                for a in attrs:
                    if a in topology.attributes:
                        want = np.asarray(topology.attributes[a], dtype=np.int64)
                        stale[have] |= attrs[a][cur[have]] != want[have]
            new_nodes = np.flatnonzero(stale)
            first = len(ids[lv])
            cur[new_nodes] = first + np.arange(len(new_nodes))
            ids[lv] = np.concatenate([ids[lv], topology.ids[lv][new_nodes]])
            if k > 0:
                parent[lv] = np.concatenate([parent[lv], want_parent[new_nodes]])
            if lv == e_lv:
                for a in attrs:
                    src = (
                        np.asarray(topology.attributes[a], dtype=np.int64)[new_nodes]
                        if a in topology.attributes
                        else np.full(len(new_nodes), -1, dtype=np.int64)
                    )
                    attrs[a] = np.concatenate([attrs[a], src])
            current[lv] = cur
        return TopologySlots(self.levels, ids, parent, current, attrs)

    def slot_to(self, level: str, up: str) -> np.ndarray:
        """Ancestor slot at level ``up`` of every slot of ``level``."""
        k, u = self.levels.index(level), self.levels.index(up)
        cur = np.arange(self.n_slots(level), dtype=np.int64)
        for i in range(k, u, -1):
            cur = self.parent[self.levels[i]][cur]
        return cur

    def canon(self, level: str) -> np.ndarray | None:
        """First slot of the same node for every slot (None while slots are nodes)."""
        ids = self.ids[level]
        _, first, inv = np.unique(ids, return_index=True, return_inverse=True)
        out = first[inv].astype(np.int64)
        return None if np.array_equal(out, np.arange(len(ids))) else out

    def to_state(self, prefix: str = "slots.") -> dict:
        d = {f"{prefix}levels": np.array(self.levels), f"{prefix}attrs": np.array(list(self.attrs), dtype="U32")}
        for lv in self.levels:
            d[f"{prefix}ids.{lv}"] = self.ids[lv]
            d[f"{prefix}current.{lv}"] = self.current[lv]
        for lv in self.levels[1:]:
            d[f"{prefix}parent.{lv}"] = self.parent[lv]
        for a, v in self.attrs.items():
            d[f"{prefix}attr.{a}"] = v
        return d

    @classmethod
    def from_state(cls, d: dict, prefix: str = "slots.") -> TopologySlots:
        levels = tuple(str(x) for x in d[f"{prefix}levels"])
        return cls(
            levels,
            {lv: d[f"{prefix}ids.{lv}"] for lv in levels},
            {lv: d[f"{prefix}parent.{lv}"] for lv in levels[1:]},
            {lv: d[f"{prefix}current.{lv}"] for lv in levels},
            {str(a): d[f"{prefix}attr.{a}"] for a in d[f"{prefix}attrs"]},
        )


def _topology_dims(topology: Topology, slots: TopologySlots | None = None) -> dict[str, Dimension]:
    slots = slots if slots is not None else TopologySlots.initial(topology)
    dims: dict[str, Dimension] = {}
    levels = topology.levels
    e_lv = topology.element_level
    e_slot = slots.current[e_lv]  # slot of every element for new events
    for lv in levels:
        table = slots.slot_to(e_lv, lv)[e_slot] if len(e_slot) else np.zeros(0, dtype=np.int64)

        def compute(ctx, table=table):
            return _lookup(table, ctx.element_idx)

        derive = {}
        k = levels.index(lv)
        for up in levels[:k]:
            derive[up] = Derivation(table=slots.slot_to(lv, up))
        dims[lv] = Dimension(
            lv,
            max(slots.n_slots(lv), 1),
            compute,
            labels=slots.ids[lv],
            derive=derive,
            recipe="builtin",
            canon=slots.canon(lv),
        )
    e_dim = dims[e_lv]
    for attr, names in ATTRIBUTE_NAMES.items():
        if attr not in slots.attrs:
            continue
        per_slot = slots.attrs[attr]
        labels = np.array(names)
        if (per_slot < 0).any():  # an element without this attribute: code "unknown"
            labels = np.array(list(names) + ["unknown"])
            per_slot = np.where(per_slot < 0, len(names), per_slot)
        table = per_slot[e_slot]

        def compute(ctx, table=table):
            return _lookup(table, ctx.element_idx)

        dims[attr] = Dimension(attr, len(labels), compute, labels=labels, recipe="builtin")
        e_dim.derive[attr] = Derivation(table=per_slot)
    return dims


def _time_dims(origin_ms: int) -> dict[str, Dimension]:
    def bucket(gran):
        def compute(ctx):
            d = ctx.time_ms.astype(np.int64) - origin_ms
            c = d // gran
            return np.where((d >= 0) & (c <= _CODE_MAX - 1), c, -1)

        return compute

    dims: dict[str, Dimension] = {}
    for name, gran in TIME_GRANULARITY_MS.items():
        card = min(_CODE_MAX, (1 << 42) // gran)
        dims[name] = Dimension(name, card, bucket(gran), label_scale=gran, label_offset=origin_ms, recipe="builtin")
    dims["hour_of_day"] = Dimension(
        "hour_of_day", 24, lambda ctx: (ctx.time_ms.astype(np.int64) // MS_HOUR) % 24, recipe="builtin"
    )
    dims["day_of_week"] = Dimension(
        "day_of_week",
        7,
        lambda ctx: (ctx.time_ms.astype(np.int64) // MS_DAY + _EPOCH_DOW) % 7,
        labels=np.array(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]),
        recipe="builtin",
    )
    for name, gran in TIME_GRANULARITY_MS.items():
        dims[name].derive.update(time_derivations(gran, origin_ms))
    return dims


def time_derivations(gran_ms: int, origin_ms: int) -> dict[str, Derivation]:
    """Derivations from a time bucket of ``gran_ms`` (codes relative to ``origin_ms``) to the
    coarser built-in time dimensions it divides."""
    out: dict[str, Derivation] = {}
    for name, g in TIME_GRANULARITY_MS.items():
        if g > gran_ms and g % gran_ms == 0:
            # floor((t - o) / gran) // k == floor((t - o) / (gran k)): same origin, exact
            out[name] = Derivation(b=g // gran_ms)
    aligned = origin_ms % gran_ms == 0
    if aligned and MS_HOUR % gran_ms == 0:
        out["hour_of_day"] = Derivation(a=origin_ms // gran_ms, b=MS_HOUR // gran_ms, m=24)
    if aligned and MS_DAY % gran_ms == 0:
        out["day_of_week"] = Derivation(a=origin_ms // gran_ms, b=MS_DAY // gran_ms, c=_EPOCH_DOW, m=7)
    return out


def builtin_dimension(
    name: str, topology: Topology | None, time_origin_ms: int = 0, slots: TopologySlots | None = None
) -> Dimension:
    """The built-in dimension called ``name``.

    Names: any topology level (``region``, ``site``, ``element``), ``equipment_class``,
    ``vendor``, ``technology`` (topology attributes), ``service``, ``cause_class`` (normal / user /
    congestion / failure / other from the Q.850 groups of ``records``), time buckets ``minute``,
    ``hour``, ``day`` or ``time:<granularity_ms>`` (codes count buckets from ``time_origin_ms``),
    ``hour_of_day`` (UTC) and ``day_of_week`` (UTC, Monday first).

    ``slots`` (:class:`TopologySlots`) gives the versioned codes of the topology dimensions
    after topology changes; by default every node is its own code.

    Raises
    ------
    ValueError
        For an unknown name, or a topology name without a topology.
    """
    if topology is not None:
        tdims = _topology_dims(topology, slots)
        if name in tdims:
            return tdims[name]
    if name == "service":
        return Dimension(
            "service", len(SERVICES), lambda ctx: ctx.records["service"], labels=np.array(SERVICES), recipe="builtin"
        )
    if name == "cause_class":
        return Dimension(
            "cause_class",
            len(CAUSE_CLASSES),
            lambda ctx: _lookup(_CAUSE_TABLE, ctx.records["cause"]),
            labels=np.array(CAUSE_CLASSES),
            recipe="builtin",
        )
    tdims = _time_dims(int(time_origin_ms))
    if name in tdims:
        return tdims[name]
    m = re.fullmatch(r"time:(\d+)", name)
    if m:
        gran = int(m.group(1))
        if gran < 1000:
            raise ValueError(f"time bucket {name!r}: granularity must be >= 1000 ms")

        def compute(ctx):
            d = ctx.time_ms.astype(np.int64) - time_origin_ms
            c = d // gran
            return np.where((d >= 0) & (c <= _CODE_MAX - 1), c, -1)

        return Dimension(
            name,
            min(_CODE_MAX, (1 << 42) // gran),
            compute,
            label_scale=gran,
            label_offset=int(time_origin_ms),
            derive=time_derivations(gran, int(time_origin_ms)),
            recipe="builtin",
        )
    topo_names = () if topology is None else topology.levels + ("equipment_class", "vendor", "technology")
    hint = "" if topology is not None else " (topology dimensions need topology=)"
    raise ValueError(
        f"unknown dimension {name!r}{hint}; built-ins are {list(topo_names)} + "
        "['service', 'cause_class', 'minute', 'hour', 'day', 'time:<ms>', 'hour_of_day', "
        "'day_of_week'], or pass a Dimension object"
    )


def time_granularity_ms(dim: Dimension) -> int | None:
    """Bucket width of a time-bucket dimension (label scale > 1), else None."""
    return dim.label_scale if dim.label_scale > 1 else None


def _answered(ctx):
    return ctx.records["answer_ms"] >= 0


def _dropped(ctx):
    cause = ctx.records["cause"]
    ok = np.isin(cause, CAUSE_NORMAL + CAUSE_USER)
    return _answered(ctx) & ~ok


BUILTIN_VALUES: dict[str, Callable[[BatchContext], np.ndarray]] = {
    "duration_ms": lambda ctx: (ctx.records["end_ms"] - ctx.records["start_ms"]).astype(np.float64),
    "setup_ms": lambda ctx: np.where(_answered(ctx), ctx.records["answer_ms"] - ctx.records["start_ms"], np.nan).astype(
        np.float64
    ),
    "answered": lambda ctx: _answered(ctx).astype(np.float64),
    "dropped": lambda ctx: _dropped(ctx).astype(np.float64),
    "congested": lambda ctx: np.isin(ctx.records["cause"], CAUSE_CONGESTION).astype(np.float64),
    "bytes": lambda ctx: (ctx.records["bytes_up"] + ctx.records["bytes_down"]).astype(np.float64),
}
"""Derived CDR value fields: call duration, setup time (NaN if unanswered), answered and dropped
flags (dropped = answered and ended with a cause outside CAUSE_NORMAL + CAUSE_USER), congestion
flag (a CAUSE_CONGESTION release), total bytes."""


def builtin_value(name: str, source: str, kind: str = "value") -> ValueField:
    """A value field: a numeric field of the source dtype, or one of ``BUILTIN_VALUES`` (CDR).

    Raises
    ------
    ValueError
        When ``name`` is neither.
    """
    dt = DTYPES[source]
    if name in (dt.names or ()):
        if kind == "hash":
            return ValueField(name, lambda ctx: ctx.records[name].astype(np.int64), kind="hash")
        return ValueField(name, lambda ctx: ctx.records[name].astype(np.float64))
    if source == "cdr" and name in BUILTIN_VALUES and kind == "value":
        return ValueField(name, BUILTIN_VALUES[name])
    known = list(dt.names) + (list(BUILTIN_VALUES) if source == "cdr" and kind == "value" else [])
    raise ValueError(
        f"unknown {kind} field {name!r} for source {source!r}; known: {known}, "
        "or pass values={name: callable(ctx) -> array}"
    )


def splitmix64(x: np.ndarray) -> np.ndarray:
    """64-bit finaliser of SplitMix64 (Steele et al. 2014) as int64 bit patterns, vectorised.

    NumPy array arithmetic wraps modulo 2**64 silently, which is what the hash needs.
    """
    z = np.asarray(x).astype(np.int64).view(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return z.view(np.int64)


@dataclass
class BatchArrays:
    """The arrays all cubes of a set read for one batch (codes and values computed once).

    ``codes[dim_row[name]]`` are int32 codes (-1 invalid), ``vals[val_row[name]]`` float64
    values, ``hashes[hash_row[name]]`` int64 hashes. ``invalid[name]`` counts rows without a
    valid code of that dimension.
    """

    n: int
    codes: np.ndarray
    dim_row: dict[str, int]
    vals: np.ndarray
    val_row: dict[str, int]
    hashes: np.ndarray
    hash_row: dict[str, int]
    invalid: dict[str, int]


def prepare_batch(
    ctx: BatchContext, dims: dict[str, Dimension], values: dict[str, ValueField], hashes: dict[str, ValueField]
) -> BatchArrays:
    """Compute every dimension's codes and every field once for a batch."""
    n = ctx.n
    codes = np.empty((len(dims), n), dtype=np.int32)
    dim_row, invalid = {}, {}
    for r, (name, dim) in enumerate(dims.items()):
        codes[r] = dim.codes(ctx)
        dim_row[name] = r
        invalid[name] = int(np.count_nonzero(codes[r] < 0))
    vals = np.empty((len(values), n), dtype=np.float64)
    val_row = {}
    for r, (name, vf) in enumerate(values.items()):
        v = np.asarray(vf.compute(ctx), dtype=np.float64)
        if v.shape != (n,):
            raise ValueError(f"value field {name!r} returned shape {v.shape}, expected ({n},)")
        vals[r] = v
        val_row[name] = r
    hs = np.empty((len(hashes), n), dtype=np.int64)
    hash_row = {}
    for r, (name, hf) in enumerate(hashes.items()):
        h = np.asarray(hf.compute(ctx))
        if h.shape != (n,) or h.dtype.kind not in "iu":
            raise ValueError(
                f"hash field {name!r} must return one integer per row, got shape {h.shape} dtype {h.dtype}"
            )
        hs[r] = splitmix64(h)
        hash_row[name] = r
    return BatchArrays(n, codes, dim_row, vals, val_row, hs, hash_row, invalid)
