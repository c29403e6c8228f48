"""Ingestion: any supported input -> validated canonical arrays + a quarantine of rejected rows.

``Ingestor(source, ...)`` reads an input (see ``telcoanalytics.ingest.readers``), maps it through its
schema version (``telcoanalytics.ingest.schema``: detected from the columns or declared) to the
canonical dtype of ``records.DTYPES[source]``, validates every row with vectorised NumPy, and
returns the accepted rows. Every rejected row goes to ``Ingestor.quarantine`` with a reason.

Invariant: ``n_accepted + n_quarantined == n_read`` for every call, and per reason.

Check order
-----------
A row with several problems is counted once, under the first reason in this order (the order
of ``quarantine.REASONS``), and within a reason the first field in canonical order:

1. ``unparseable``, 2. ``missing_value``, 3. ``non_finite`` (found by the schema mapping, where
   the lowest of these in a row wins, ties going to the earlier column; then NaN/inf in float
   fields, of which only ``mos`` and a complaint's ``lat``/``lon`` may be NaN),
4. ``time_out_of_range`` (event time and, for CDRs, ``end_ms`` outside ``time_range_ms``),
5. ``negative_duration`` (CDR whose ``end_ms`` came from a ``duration_s`` column) or
6. ``end_before_start`` (``end_ms < start_ms``),
7. ``answer_outside_call`` (``answer_ms >= 0`` and not within ``[start_ms, end_ms]``),
8. ``bad_cause`` (cause outside 1..127),
9. ``out_of_domain`` (a value outside the bounds of ``records.DOMAIN`` / ``records.METRIC_DOMAIN``:
   unknown service, metric or complaint category code, a call longer than 7 days, a negative
   answer time other than -1 "not answered", latency or jitter outside 0..10 min, loss outside
   0..100 %, MOS outside 1..5, counters above their maximum, a negative element id, a metric
   value outside its range, complaint latitude / longitude outside +-90 / +-180 or only one of
   them given),
10. ``negative_counter`` (negative bytes, packets, flows, ``error_count``, ``unavailable_s``),
11. ``unknown_element`` (the routing element, ``records.ELEMENT_FIELD``, is not in the
    topology or ``known_element_ids``; flows' destination may be a link id and is not checked;
    a complaint with a location but no cell, ``element_id = -1``, lands here unless
    ``analysis.locate_complaints`` resolved it first),
12. ``duplicate_id`` (a row whose natural key, ``records.NATURAL_KEY``, was seen before in this
    batch or an earlier one within the source's horizon, ``DEDUP_HORIZON_MS``: the CDR
    ``record_id``; element, metric and time of equipment counters; source, destination and time
    of flows; element and time of QoS probes. Multi-field keys are compared by a 64-bit hash
    (a false match about once in 2**64 pairs). Only rows that passed every other check count
    as seen, so a corrupt first copy does not hide a valid second one. Keys holding the event
    time are kept per 5-min event-time bucket and always caught while the row's time is within
    the horizon behind the robust clock: ``telcoanalytics.ingest.dedup``).
13. ``time_in_future`` is not checked here: a pipeline decides it after ingest, against its robust
    event-time clock (``telcoanalytics.ingest.clock``), and moves such rows here with
    :meth:`Ingestor.reject_accepted`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numba
import numpy as np

from kernels.dedup import (
    EMPTY,
    hashmap_build,
    hashmap_lookup,
    natural_key_hash,
    natural_keys_equip,
    natural_keys_flow,
    natural_keys_qos,
)
from kernels.dedup_batch import (
    idset_dedup_cdr,
    idset_dedup_complaint,
    ring_dedup_compact,
)
from kernels.validate import (
    CDR_CHECK_FIELDS,
    COMPLAINT_CHECK_FIELDS,
    EQUIP_CHECK_FIELDS,
    FLOW_CHECK_FIELDS,
    QOS_CHECK_FIELDS,
    cdr_check_route,
    complaint_check_route,
    equip_check_route,
    flow_check_route,
    lookup_mark_unknown,
    mark_flagged,
    mark_negative,
    qos_check_route,
    rejected_rows,
)
from telcoanalytics.ingest.dedup import DEFAULT_DEDUP_HORIZON_MS, DedupClock, DedupSet, TimeBucketKeySet
from telcoanalytics.ingest.quarantine import ORIGIN_COLUMN, REASON_CODE, REASONS, Quarantine
from telcoanalytics.ingest.readers import DEFAULT_CHUNK_ROWS, RawChunk, iter_chunks
from telcoanalytics.ingest.schema import REGISTRY, SchemaRegistry, SchemaVersion
from telcoanalytics.records import (
    COMPLAINT_CATEGORIES,
    COUNTER_METRICS,
    DOMAIN,
    DTYPES,
    ELEMENT_FIELD,
    MAX_BYTES,
    METRIC_DOMAIN,
    METRICS,
    NATURAL_KEY,
    NO_TIME_MS,
    Q850_MAX,
    Q850_MIN,
    SERVICES,
    TIME_FIELD,
    empty,
)

DEFAULT_TIME_RANGE_MS = (946_684_800_000, 4_102_444_800_000)
"""Sane event-time range: [2000-01-01, 2100-01-01) UTC in ms."""

DEDUP_HORIZON_MS = {
    "cdr": DEFAULT_DEDUP_HORIZON_MS,
    "equip": 2 * 3_600_000,
    "flow": 2 * 3_600_000,
    "qos": 2 * 3_600_000,
    "complaint": DEFAULT_DEDUP_HORIZON_MS,
}
"""Default duplicate-detection horizon per source. Measurements (equipment, flows, QoS) are many
rows per element and minute, so their keys are kept for 2 h of event time (a batch delivered
again within that is caught; memory about 23-46 bytes per row of the last 4 h, in one table per
5 min of event time: ``dedup.TimeBucketKeySet``); record ids of
calls are few enough to keep a day."""


_ROW_KEYS = {"equip": natural_keys_equip, "flow": natural_keys_flow, "qos": natural_keys_qos}
"""Natural-key hash kernels over a whole canonical array (equal to ``natural_key_hash`` of the fields)."""

_ID_DEDUP = {"cdr": idset_dedup_cdr, "complaint": idset_dedup_complaint}
"""One compiled call per batch for ids: clock, key, probe/insert and duplicate mark (the sources with
a natural key by event time use ``kernels.dedup_batch.ring_dedup_compact``)."""

_NARROW_KEY_FIELDS = {f for s, fs in NATURAL_KEY.items() for f in fs if DTYPES[s][f] != np.int64}
"""Natural-key fields stored narrower than int64 (widened before hashing)."""


_NOJIT = numba.config.DISABLE_JIT
"""Kernels run as plain Python (``NUMBA_DISABLE_JIT=1``): their wrapping uint64 hash would warn."""


def _key_set(source: str, horizon_ms):
    """The duplicate-key set of ``source``: per event-time bucket when the natural key holds the
    event time (and there is a horizon), else one table in two generations."""
    if horizon_ms is not None and TIME_FIELD[source] in NATURAL_KEY[source]:
        return TimeBucketKeySet(horizon_ms)
    return DedupSet(horizon_ms)


_C = REASON_CODE
# value bounds per metric_id from records.METRIC_DOMAIN (the extra last entry catches unknown codes)
_METRIC_LO = np.array([METRIC_DOMAIN[m][0] for m in METRICS] + [np.nan])
_METRIC_HI = np.array([METRIC_DOMAIN[m][1] for m in METRICS] + [np.nan])
_METRIC_COUNTER = np.array([m in COUNTER_METRICS for m in METRICS] + [False])
_METRIC_UNKNOWN = len(METRICS)
# element id fields checked for >= 0 when there is no topology (with one, membership decides)
_ELEMENT_ID_FIELDS = {
    "cdr": ("element_id",),
    "equip": ("element_id",),
    "flow": ("src_element_id", "dst_element_id"),
    "qos": ("element_id",),
    "complaint": (),  # -1 = no cell, the location names the place (analysis.locate_complaints resolves it)
}


# ---- results --------------------------------------------------------------------------------
@dataclass
class IngestResult:
    """Outcome of one ingest call (or one chunk of ``ingest_file``).

    Attributes
    ----------
    source : str
    accepted : ndarray of ``records.DTYPES[source]``
        Valid rows in input order. When the input already had the canonical dtype and every
        row was accepted, this is the input array itself (no copy).
    n_read, n_accepted, n_quarantined : int
        ``n_accepted + n_quarantined == n_read``.
    by_reason : dict reason -> int
        Quarantined rows per reason (only reasons that occurred, in check order).
    schema_version : int or None
        The schema version used (None for an empty input without columns).
    row_offset : int
        Input row number of this chunk's first row.
    element_index : int64 array or None
        Dense topology index of each accepted row's routing element (when the Ingestor has a
        topology), ready for partitioning.
    """

    source: str
    accepted: np.ndarray
    n_read: int
    n_accepted: int
    n_quarantined: int
    by_reason: dict = field(default_factory=dict)
    schema_version: int | None = None
    row_offset: int = 0
    element_index: np.ndarray | None = None
    row_numbers: np.ndarray | None = field(default=None, repr=False)
    origin: str | None = None

    def __post_init__(self):
        assert self.n_accepted + self.n_quarantined == self.n_read, "ingest conservation violated"

    def accepted_rows(self) -> np.ndarray:
        """Input row number of each accepted row."""
        if self.row_numbers is None:
            of = getattr(self, "_rows_of", None)
            if of is not None:
                chunk, code = of  # (the rows' first-failure codes, or None: every row accepted)
                self.row_numbers = chunk.rows() if code is None else chunk.rows()[code == 0]
            else:
                self.row_numbers = np.arange(self.row_offset, self.row_offset + self.n_accepted, dtype=np.int64)
        return self.row_numbers


class _Status:
    """First-reason bookkeeping: reason code (0 = accepted) and failing field per row.

    ``field`` indexes ``names``, whose first entries are the field names the source's compiled
    check writes (``kernels.validate.*_CHECK_FIELDS``); others are appended as they occur.
    """

    __slots__ = ("code", "field", "names")

    def __init__(self, n: int, source: str):
        self.code = np.zeros(n, dtype=np.int8)
        self.field = np.empty(n, dtype=np.int8)
        self.field.fill(-1)  # (np.full: the same, through a Python-level wrapper)
        self.names: list[str] = list(_KERNEL_FIELDS[source])

    def name_index(self, name: str) -> int:
        if name not in self.names:
            self.names.append(name)
        return self.names.index(name)

    def mark_before(self, code: int, name: str, mask: np.ndarray) -> None:
        """Rows of ``mask`` not failed yet, or failed with a reason that comes later in check order,
        get ``code`` and the field ``name``."""
        m = mask & ((self.code == 0) | (self.code > code))
        if m.any():
            self.code[m] = code
            self.field[m] = self.name_index(name)


# ---- per-source checks: the row checks and the element lookup in one compiled pass each ----------
_KERNEL_FIELDS = {
    "cdr": CDR_CHECK_FIELDS,
    "equip": EQUIP_CHECK_FIELDS,
    "flow": FLOW_CHECK_FIELDS,
    "qos": QOS_CHECK_FIELDS,
    "complaint": COMPLAINT_CHECK_FIELDS,
}
_CDR_CODES = {
    neg: np.array(
        [
            _C["time_out_of_range"],
            _C["negative_duration"] if neg else _C["end_before_start"],
            _C["answer_outside_call"],
            _C["bad_cause"],
            _C["out_of_domain"],
            _C["negative_counter"],
        ],
        dtype=np.int64,
    )
    for neg in (False, True)
}
_EQUIP_CODES = np.array(
    [_C["non_finite"], _C["time_out_of_range"], _C["out_of_domain"], _C["negative_counter"]], dtype=np.int64
)
_FLOW_CODES = np.array([_C["time_out_of_range"], _C["out_of_domain"], _C["negative_counter"]], dtype=np.int64)
_QOS_CODES = np.array([_C["non_finite"], _C["time_out_of_range"], _C["out_of_domain"]], dtype=np.int64)
_QOS_BOUNDS = np.array([DOMAIN["qos"][f] for f in ("latency_ms", "jitter_ms", "loss_pct", "mos")], dtype=np.float64)


def _row_checks(source: str, d: np.ndarray, lo: int, hi: int, neg_duration: bool, st: _Status) -> None:
    """The checks of ``source`` in the documented order, on rows not rejected yet (``st.code == 0``):
    the fused kernel with a lookup that knows no id and marks nothing."""
    scratch = np.empty(len(d), dtype=np.int64)
    _ROUTE_CHECKS[source](
        d, *_route_limits(source, lo, hi, neg_duration), st.code, st.field, _NO_LUT, _NO_ROUTE, scratch
    )


def _route_limits(source: str, lo: int, hi: int, neg_duration: bool = False) -> tuple:
    """The check arguments of ``source``'s ``kernels.validate.*_check_route`` before ``out_code``
    (``neg_duration``: a CDR's ``end_ms`` came from a duration column)."""
    limits = np.array([lo, hi], dtype=np.int64)
    if source == "cdr":
        limits = np.array(
            [lo, hi, Q850_MIN, Q850_MAX, len(SERVICES), DOMAIN["cdr"]["duration_ms"][1], MAX_BYTES, NO_TIME_MS],
            dtype=np.int64,
        )
        return limits, _CDR_CODES[bool(neg_duration)]
    if source == "equip":
        return limits, _METRIC_LO[:-1], _METRIC_HI[:-1], _METRIC_COUNTER[:-1], _EQUIP_CODES
    if source == "flow":
        dom = DOMAIN["flow"]
        return np.array([lo, hi, dom["bytes"][1], dom["packets"][1], dom["flows"][1]], dtype=np.int64), _FLOW_CODES
    if source == "complaint":
        return limits, len(COMPLAINT_CATEGORIES), _QOS_CODES
    return limits, _QOS_BOUNDS, _QOS_CODES


_ROUTE_CHECKS = {
    "cdr": cdr_check_route,
    "equip": equip_check_route,
    "flow": flow_check_route,
    "qos": qos_check_route,
    "complaint": complaint_check_route,
}
"""The row checks and the element lookup in one compiled pass (``_route_limits`` gives their arguments)."""

_NO_LUT = np.full(1, -1, dtype=np.int32)
_NO_ROUTE = np.array([1, 0, 0, -1], dtype=np.int64)
"""A ``route`` for ``_ROUTE_CHECKS`` without element lookup: an empty id range (every row's index
-1) and failure code 0 for it (no row marked), so only the row checks decide."""


class _ElementLookup:
    """Element id -> dense index (-1 if unknown): a table when ids fill most of their range, a
    paged table when they come in a few dense runs far apart, else a hash map.

    Dense ids (range below ``max(8 n, 2**20)``) index a table directly. Ids in runs far apart (a
    region or class prefix before a sequence number: the synthetic network's ids) go through a
    paged table: a directory of pages of ``2**shift`` ids, only the pages holding ids stored
    (``kernels.validate``, module docstring), taken when it holds at most ``max(16 n, 2**21)``
    entries. Other sparse ids go through an open-addressing hash map at load <= 0.5, which stays
    in cache for tens of thousands of elements (a binary search costs ~log2(n) dependent misses).

    ``table`` and ``geometry`` are what the compiled checks take (``lut`` and the ``route``
    entries around the code and field), None for the hash map.
    """

    def __init__(self, ids: np.ndarray, index: np.ndarray):
        ids = np.asarray(ids, dtype=np.int64)
        self.n = len(ids)
        self.lut = None
        self.map_keys = None
        self.table = None
        self.geometry = None
        self.paged = None
        if not len(ids):
            return
        lo_id, hi_id = int(ids.min()), int(ids.max())
        if hi_id - lo_id < max(8 * len(ids), 1 << 20):
            # dense ids: table over [min, max] with a -1 sentinel at each end; ``take(mode="clip")``
            # sends every id outside the range (also after int64 wrap-around) to a sentinel
            self.shift = np.int64(lo_id - 1)
            self.id_range = (lo_id, hi_id)
            self.lut = np.full(hi_id - lo_id + 3, -1, dtype=np.int64)
            self.lut[ids - self.shift] = index
            # the same table in int32 for the compiled lookup when the indices fit (half the cache lines)
            self.lut_small = self.lut.astype(np.int32) if len(ids) < 2**31 - 1 else self.lut
            self.table, self.geometry = self.lut_small, (lo_id, hi_id)
            return
        paged = _paged_table(ids, np.asarray(index, dtype=np.int64), lo_id, hi_id)
        if paged is not None:
            self.table, shift, n_dir = paged
            self.id_range = (lo_id, hi_id)
            self.paged = (shift, n_dir)
            self.geometry = (lo_id, hi_id, shift, n_dir)
            return
        ok = ids != EMPTY  # the hash map's empty marker; no topology uses int64 min as an id
        cap = 1 << max(4, (2 * len(ids)).bit_length())
        self.map_keys = np.full(cap, EMPTY, dtype=np.int64)
        self.map_vals = np.full(cap, -1, dtype=np.int64)
        hashmap_build(ids[ok], np.asarray(index, dtype=np.int64)[ok], self.map_keys, self.map_vals)

    def route(self, code: int, field: int) -> np.ndarray | None:
        """The ``route`` argument of the compiled checks (None for the hash map)."""
        if self.geometry is None:
            return None
        g = self.geometry
        return np.array([g[0], g[1], code, field, *g[2:]], dtype=np.int64)

    def __call__(self, q: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if self.lut is not None:
            return np.take(self.lut, q - self.shift, mode="clip", out=out)
        if out is None:
            out = np.empty(len(q), dtype=np.int64)
        if self.paged is not None:
            lo_id, hi_id = self.id_range
            shift, n_dir = self.paged
            q = np.asarray(q, dtype=np.int64)
            ok = (q >= lo_id) & (q <= hi_id)
            d = np.where(ok, q - np.int64(lo_id), 0)  # (rows outside the range: 0, whatever q - lo_id wrapped to)
            pg = self.table[d >> shift].astype(np.int64)
            ok &= pg >= 0
            at = n_dir + (np.maximum(pg, 0) << shift) + (d & ((1 << shift) - 1))
            out[...] = np.where(ok, self.table[np.where(ok, at, 0)], -1)
            return out
        if self.map_keys is None:
            out[...] = -1
            return out
        q = q if q.dtype == np.int64 else q.astype(np.int64)  # a strided view is fine for the kernel
        return hashmap_lookup(q, self.map_keys, self.map_vals, -1, out)


def _paged_table(ids: np.ndarray, index: np.ndarray, lo_id: int, hi_id: int):
    """``(table, shift, n_dir)`` of the smallest paged table for ``ids`` (pages of 2**6 .. 2**20
    ids) when it has at most ``max(16 n, 2**21)`` entries and a directory of at most 2**22, else
    None (see ``kernels.validate``)."""
    n = len(ids)
    if hi_id - lo_id >= 1 << 62 or n >= 2**31 - 1:
        return None
    d = ids - np.int64(lo_id)
    base = np.unique(d >> 6)
    budget = max(16 * n, 1 << 21)
    best = None
    for shift in range(6, 21):
        n_dir = ((hi_id - lo_id) >> shift) + 1
        if n_dir > 1 << 22:
            continue
        k = shift - 6
        n_pages = 1 + int(np.count_nonzero(np.diff(base >> k))) if k else len(base)
        size = n_dir + (n_pages << shift)
        if size <= budget and (best is None or size < best[0]):
            best = (size, shift, n_dir)
    if best is None:
        return None
    _, shift, n_dir = best
    pages = np.unique(d >> shift)
    table = np.full(n_dir + (len(pages) << shift), -1, dtype=np.int32)
    table[pages] = np.arange(len(pages), dtype=np.int32)
    page_no = np.searchsorted(pages, d >> shift).astype(np.int64)
    table[n_dir + (page_no << shift) + (d & ((1 << shift) - 1))] = index
    return table, shift, n_dir


def _take(col, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` of a raw column (NumPy or Arrow) as a NumPy array."""
    if isinstance(col, np.ndarray) or not hasattr(col, "take"):
        return np.asarray(col)[idx]
    import pyarrow as pa

    return col.take(pa.array(idx, pa.int64())).to_numpy(zero_copy_only=False)


# ---- the ingestor ---------------------------------------------------------------------------
class Ingestor:
    """Validate one source's input into canonical arrays; quarantine what is not valid.

    Parameters
    ----------
    source : {"cdr", "equip", "flow", "qos"}
    topology : telcoanalytics.topology.model.Topology, optional
        Known elements; rows whose routing element is not in it are ``unknown_element``, and
        results carry ``element_index`` (dense indices). After a topology change assign the
        new version to ``ingestor.topology``; the next call routes by it. Retired elements
        still count as known (their late data from before the retirement is valid).
    known_element_ids : int array, optional
        Known element ids when no topology is given (exclusive with ``topology``). Without
        either, element ids are not checked.
    time_range_ms : (int, int)
        Sane event-time range ``[lo, hi)`` in ms UTC; default 2000-01-01 .. 2100-01-01.
    schema_version : int, optional
        Declared input schema version; default: detected from each input's columns.
    registry : SchemaRegistry, optional
        Schema versions to use; default the process-wide ``schema.REGISTRY``.
    quarantine : Quarantine, optional
        Where rejected rows go (shareable between Ingestors); default a new one.
    dedup_horizon_ms : int, None or "auto"
        Event-time horizon of duplicate detection by natural key (``records.NATURAL_KEY``); None
        remembers keys for the lifetime of the Ingestor; "auto" (default) takes
        ``DEDUP_HORIZON_MS[source]`` (CDR 24 h, the others 2 h). See :class:`DedupSet`.
    allow_extra_columns : bool
        Ignore input columns that the schema version cannot map instead of raising.
    dedup : bool
        Detect duplicates (default True); False skips the check (its cost: one compiled call per
        batch, a 64-bit hash and a probe of a small hash table per row, see ``bench_ingest``'s
        A/B, plus the key set's memory) for inputs known to be free of them.

    Raises
    ------
    ValueError
        For an unknown source, both topology and known ids, a bad time range.

    Examples
    --------
    >>> from telcoanalytics.records import empty
    >>> qos = empty("qos", 3)
    >>> qos["ts_ms"] = 1_700_000_000_000
    >>> qos["element_id"] = [1, 2, 3]
    >>> qos["loss_pct"] = [0.5, 150.0, 1.0]
    >>> ing = Ingestor("qos")
    >>> r = ing.ingest(qos)
    >>> r.n_read, r.n_accepted, r.by_reason
    (3, 2, {'out_of_domain': 1})
    >>> ing.ingest(qos[:1]).by_reason  # the same probe again: element and time seen before
    {'duplicate_id': 1}
    """

    def __init__(
        self,
        source: str,
        topology=None,
        known_element_ids=None,
        time_range_ms: tuple[int, int] = DEFAULT_TIME_RANGE_MS,
        schema_version: int | None = None,
        registry: SchemaRegistry | None = None,
        quarantine: Quarantine | None = None,
        dedup_horizon_ms: int | None | str = "auto",
        allow_extra_columns: bool = False,
        dedup: bool = True,
    ):
        if source not in DTYPES:
            raise ValueError(f"unknown source {source!r}; known sources: {', '.join(DTYPES)}")
        if topology is not None and known_element_ids is not None:
            raise ValueError("pass either topology or known_element_ids, not both")
        try:
            lo, hi = (int(x) for x in time_range_ms)
        except (TypeError, ValueError):
            raise ValueError(f"time_range_ms must be a pair (lo_ms, hi_ms), got {time_range_ms!r}") from None
        if not lo < hi:
            raise ValueError(f"time_range_ms must have lo < hi, got {time_range_ms!r}")
        self.source = source
        self.topology = topology
        self.time_range_ms = (lo, hi)
        self.registry = registry if registry is not None else REGISTRY
        if schema_version is not None:
            self.registry.get(source, schema_version)  # fail early on an unknown version
        self.schema_version = schema_version
        self.allow_extra_columns = bool(allow_extra_columns)
        self.quarantine = quarantine if quarantine is not None else Quarantine()
        if isinstance(dedup_horizon_ms, str) and dedup_horizon_ms == "auto":
            dedup_horizon_ms = DEDUP_HORIZON_MS[source]
        self.dedup = _key_set(source, dedup_horizon_ms) if dedup else None
        self._dedup_clock = DedupClock()
        self.fused_dedup = True
        """False: the duplicate check in separate steps (clock, key array, key set), the path before
        the one compiled call per batch; same decisions (kept for ``bench_ingest``'s A/B)."""
        self._key_name = "+".join(NATURAL_KEY[source])
        self._known_ids = None if known_element_ids is None else np.unique(np.asarray(known_element_ids, np.int64))
        self._lookup: _ElementLookup | None = None
        self._lookup_version = None
        self._route_args: dict = {}  # (lo, hi, neg_duration) -> (lookup, check limits, route)
        self._schema_cache: dict[tuple, SchemaVersion] = {}
        self.n_batches = 0
        self.n_read = 0
        self.n_accepted = 0
        self._by_reason = np.zeros(len(REASONS) + 1, dtype=np.int64)

    # ---- public API ---------------------------------------------------------------------
    @property
    def by_reason(self) -> dict[str, int]:
        """Quarantined rows per reason over the Ingestor's lifetime."""
        return {r: int(self._by_reason[i + 1]) for i, r in enumerate(REASONS) if self._by_reason[i + 1]}

    @property
    def n_quarantined(self) -> int:
        return int(self._by_reason.sum())

    def ingest(self, data, chunk_rows: int | None = None) -> IngestResult:
        """Ingest one input completely and return one result.

        Parameters
        ----------
        data : structured ndarray, dict of arrays, iterable of dicts, pyarrow Table, DataFrame,
            or a file path (see ``readers.iter_chunks``)
        chunk_rows : int, optional
            Work in chunks of this many rows (bounded working memory; the accepted rows of
            all chunks are concatenated).

        Returns
        -------
        IngestResult

        Raises
        ------
        SchemaError
            If the columns match no known schema version (or not the declared one).
        """
        if chunk_rows is None and isinstance(data, np.ndarray) and data.dtype.names and data.ndim == 1:
            return self._ingest_chunk(RawChunk(data, len(data)))  # a structured array: one chunk, no copy
        results = [self._ingest_chunk(c) for c in iter_chunks(data, chunk_rows)]
        if len(results) == 1:
            return results[0]
        by = {}
        for r in results:
            for k, v in r.by_reason.items():
                by[k] = by.get(k, 0) + v
        idx = [r.element_index for r in results]
        return IngestResult(
            self.source,
            np.concatenate([r.accepted for r in results]) if results else empty(self.source),
            sum(r.n_read for r in results),
            sum(r.n_accepted for r in results),
            sum(r.n_quarantined for r in results),
            {k: by[k] for k in REASONS if k in by},
            results[-1].schema_version if results else None,
            0,
            np.concatenate(idx) if results and all(i is not None for i in idx) else None,
        )

    def ingest_file(self, path, chunk_rows: int = DEFAULT_CHUNK_ROWS, fmt: str | None = None) -> Iterator[IngestResult]:
        """Ingest a CSV or Parquet file chunk by chunk (bounded memory).

        Parameters
        ----------
        path : str or Path
        chunk_rows : int
            Rows per chunk (CSV rows or Parquet batch size).
        fmt : {"csv", "parquet"}, optional
            Default: from the file suffix.

        Yields
        ------
        IngestResult
            One per chunk; ``row_offset`` gives the chunk's first row in the file.
        """
        for chunk in iter_chunks(path, chunk_rows, fmt):
            yield self._ingest_chunk(chunk)

    def ingest_chunk(self, chunk: RawChunk) -> IngestResult:
        """Ingest one raw chunk from ``telcoanalytics.ingest.readers``."""
        return self._ingest_chunk(chunk)

    def reject_accepted(self, res: IngestResult, mask: np.ndarray, reason: str, field_name: str) -> IngestResult:
        """Move accepted rows of ``res`` (``mask`` over ``res.accepted``) to the quarantine with
        ``reason`` (a decision made after ingest, e.g. ``time_in_future`` by the pipeline's clock);
        returns the result without them. Counts stay conserved."""
        mask = np.asarray(mask, dtype=bool)
        k = int(mask.sum())
        if k == 0:
            return res
        code = REASON_CODE[reason]
        bad = res.accepted[mask]
        cols = {name: bad[name] for name in bad.dtype.names}
        if res.origin is not None:
            cols[ORIGIN_COLUMN] = np.full(k, res.origin, dtype=object)
        self.quarantine.add(
            self.source,
            res.accepted_rows()[mask],
            np.full(k, code, np.int8),
            np.full(k, field_name, dtype=object),
            cols,
            batch=self.n_batches - 1,
        )
        self.n_accepted -= k
        self._by_reason[code] += k
        by = dict(res.by_reason)
        by[reason] = by.get(reason, 0) + k
        keep = ~mask
        return IngestResult(
            self.source,
            res.accepted[keep],
            res.n_read,
            res.n_accepted - k,
            res.n_quarantined + k,
            {r: by[r] for r in REASONS if r in by},
            res.schema_version,
            res.row_offset,
            None if res.element_index is None else res.element_index[keep],
            res.accepted_rows()[keep],
            res.origin,
        )

    # ---- internals ----------------------------------------------------------------------
    def _schema(self, names: tuple) -> SchemaVersion:
        s = self._schema_cache.get(names)
        if s is None:
            s = self.registry.resolve(self.source, names, self.schema_version, self.allow_extra_columns)
            self._schema_cache[names] = s
        return s

    def _element_lookup(self) -> _ElementLookup | None:
        topo = self.topology
        if topo is not None:
            key = (id(topo), topo.version, topo.n_elements)
            if self._lookup is None or self._lookup_version != key:
                ids = topo.ids[topo.element_level]
                self._lookup = _ElementLookup(ids, np.arange(len(ids), dtype=np.int64))
                self._lookup_version = key
            return self._lookup
        if self._known_ids is not None:
            if self._lookup is None:
                self._lookup = _ElementLookup(self._known_ids, np.arange(len(self._known_ids), dtype=np.int64))
            return self._lookup
        return None

    def _ingest_chunk(self, chunk: RawChunk) -> IngestResult:
        batch = self.n_batches
        self.n_batches += 1
        n = chunk.n
        if n == 0 and not chunk.names:
            return IngestResult(
                self.source,
                empty(self.source),
                0,
                0,
                0,
                {},
                None,
                chunk.row_offset,
                np.zeros(0, np.int64) if self.topology is not None else None,
            )
        sv = self._schema(chunk.names)
        data, pstatus, pfield, pnames = sv.to_canonical(chunk.columns, n, chunk.missing)
        st = _Status(n, self.source)
        if len(chunk.bad_rows):
            st.code[chunk.bad_rows] = _C["unparseable"]
            st.field[chunk.bad_rows] = st.name_index("<line>")
        if pstatus is not None:
            m = (pstatus != 0) & (st.code == 0)
            names_idx = np.array([st.name_index(c) for c in pnames], dtype=np.int8)
            st.code[m] = pstatus[m]
            st.field[m] = names_idx[pfield[m]]
        element_index = None
        gathered = None
        if n:
            lo, hi = self.time_range_ms
            neg_dur = self.source == "cdr" and sv.derived_from_duration("end_ms")
            element_index = self._checks_and_elements(data, lo, hi, neg_dur, st)
            if self.dedup is not None:
                gathered = self._check_duplicates(data, st, element_index)
        elif self.topology is not None:
            element_index = np.zeros(0, np.int64)
        # ---- split accepted / quarantined
        code_of = None
        if gathered is not None and gathered[2] < 0 or gathered is None and not st.code.any():
            accepted = data
            n_q = 0
            by = {}
        else:
            code_of = st.code
            if gathered is not None:  # the kept rows, gathered by the duplicate check as it went
                acc, acc_eidx, kept = gathered
                accepted = acc[:kept] if 2 * kept >= n else acc[:kept].copy()
                if element_index is not None:
                    element_index = acc_eidx[:kept] if 2 * kept >= n else acc_eidx[:kept].copy()
            else:
                # compact through an opaque-bytes view: ~3x faster than boolean-indexing the fields
                ok = st.code == 0
                accepted = data.view(np.dtype((np.void, data.dtype.itemsize)))[ok].view(data.dtype)
                if element_index is not None:
                    element_index = element_index[ok]
            counts = np.zeros(len(REASONS) + 1, dtype=np.int64)  # per reason code ([0] stays 0)
            bad_idx = rejected_rows(st.code, counts)  # (and counts: no mask arrays)
            self._quarantine(chunk, batch, bad_idx, st)
            n_q = int(counts.sum())
            self._by_reason += counts
            by = {REASONS[i - 1]: int(counts[i]) for i in np.flatnonzero(counts)}
        self.n_read += n
        self.n_accepted += n - n_q
        res = IngestResult(
            self.source, accepted, n, n - n_q, n_q, by, sv.version, chunk.row_offset, element_index, None, chunk.origin
        )
        res._rows_of = (chunk, code_of)  # row numbers computed on demand
        return res

    def _checks_and_elements(self, data: np.ndarray, lo: int, hi: int, neg_dur: bool, st: _Status):
        """The row checks, then ``unknown_element`` (returns the dense element index or None): one
        compiled pass with an element table (flat or paged; each row read once), else the two
        steps (hash map, known ids without a table, no topology, a non-canonical dtype)."""
        lookup = self._element_lookup()
        canonical = DTYPES[self.source]
        if lookup is None or lookup.table is None or (data.dtype is not canonical and data.dtype != canonical):
            _row_checks(self.source, data, lo, hi, neg_dur, st)
            return self._check_elements(data, st)
        key = (lo, hi, neg_dur)
        args = self._route_args.get(key)
        if args is None or args[0] is not lookup:
            args = (lookup, _route_limits(self.source, lo, hi, neg_dur), lookup.route(_C["unknown_element"], -1))
            self._route_args[key] = args
        route = args[2]
        route[3] = st.name_index(ELEMENT_FIELD[self.source])  # (its place among the names depends on the batch)
        out = np.empty(len(data), dtype=np.int64)
        _ROUTE_CHECKS[self.source](data, *args[1], st.code, st.field, lookup.table, route, out)
        return out if self.topology is not None else None

    def _check_elements(self, data: np.ndarray, st: _Status) -> np.ndarray | None:
        """``unknown_element`` by the topology (or known ids), returning the dense element index;
        without either, element ids must be non-negative (``out_of_domain``)."""
        lookup = self._element_lookup()
        efield = ELEMENT_FIELD[self.source]
        if lookup is None:
            for f in _ELEMENT_ID_FIELDS[self.source]:
                st.mark_before(_C["out_of_domain"], f, data[f] < 0)
            return None
        out = np.empty(len(data), dtype=np.int64)
        code, fi = _C["unknown_element"], st.name_index(efield)
        if lookup.lut is not None:  # dense ids: table lookup and mark in one compiled pass
            lookup_mark_unknown(data[efield], lookup.lut_small, *lookup.id_range, out, code, st.code, st.field, fi)
        else:
            mark_negative(lookup(data[efield], out), code, st.code, st.field, fi)
        return out if self.topology is not None else None

    def _check_duplicates(self, data: np.ndarray, st: _Status, element_index: np.ndarray | None = None):
        """``duplicate_id`` by natural key, over the rows that passed every other check.

        Returns ``(acc, acc_eidx, kept)`` when the check gathered the kept rows as it went (the
        key sets per event-time bucket: ``acc[:kept]`` are the accepted rows and ``acc_eidx[:kept]``
        their element indices; ``kept`` -1: every row was kept), else None."""
        mark = (_C["duplicate_id"], st.name_index(self._key_name))
        if self.fused_dedup and data.dtype == DTYPES[self.source]:  # one compiled call
            if isinstance(self.dedup, TimeBucketKeySet):
                n = len(data)
                acc = np.empty(n, data.dtype)  # (pages untouched unless a row is rejected)
                acc_eidx = None if element_index is None else np.empty(n, np.int64)
                compact = (element_index, acc, acc_eidx)
                args = (data, ring_dedup_compact, self._dedup_clock, mark, st.code, st.field, self._row_keys, compact)
                if _NOJIT:
                    with np.errstate(over="ignore"):  # the hash wraps by design (plain-Python kernels)
                        done = self.dedup.check_rows(*args)
                else:
                    done = self.dedup.check_rows(*args)
                if done:
                    kept = self.dedup.kept
                    return None if kept is None else (acc, acc_eidx, kept)
            elif self.source in _ID_DEDUP:
                self.dedup.check_rows(data, _ID_DEDUP[self.source], self._dedup_clock, mark, st.code, st.field)
                return None
        n = len(data)
        tcol = data[TIME_FIELD[self.source]]
        ok = st.code == 0
        t_ref = self._dedup_clock.observe(tcol, ok)  # a robust clock: rows far ahead do not move it
        key_fields = NATURAL_KEY[self.source]
        if len(key_fields) == 1:
            keys = data[key_fields[0]]
        else:
            keys = np.empty(n, dtype=np.int64)
            with np.errstate(over="ignore"):  # the hash wraps by design (plain-Python kernels)
                if data.dtype == DTYPES[self.source] and self.source in _ROW_KEYS:
                    _ROW_KEYS[self.source](data, keys)  # one compiled call over the records
                else:
                    cols = [data[f] if f not in _NARROW_KEY_FIELDS else data[f].astype(np.int64) for f in key_fields]
                    if len(cols) == 2:
                        cols.append(np.zeros(n, dtype=np.int64))
                    natural_key_hash(cols[0], cols[1], cols[2], keys)
        if isinstance(self.dedup, TimeBucketKeySet):
            dup = self.dedup.check_insert(keys, tcol, ok, t_ref)
        else:
            dup = self.dedup.check_insert(keys, ok, t_ref)
        mark_flagged(dup, mark[0], st.code, st.field, mark[1])
        return None

    def _row_keys(self, rows: np.ndarray) -> np.ndarray:
        """Natural keys of canonical records (the rows of a batch outside the bucket ring)."""
        keys = np.empty(len(rows), dtype=np.int64)
        with np.errstate(over="ignore"):
            _ROW_KEYS[self.source](rows, keys)
        return keys

    def _quarantine(self, chunk: RawChunk, batch: int, bad_idx: np.ndarray, st: _Status) -> None:
        raw = chunk.columns
        if (
            isinstance(raw, np.ndarray)
            and raw.dtype.names
            and chunk.origin is None
            and not len(chunk.bad_rows)
            and not chunk.missing
        ):  # records (e.g. canonical arrays): the rejected ones in one gather, their fields the columns
            names = np.array(st.names + ["?"], dtype=object)
            # gathered as opaque records of the same bytes (a structured gather goes field by field:
            # ~30x slower for 100 flow rows)
            if raw.dtype.hasobject:  # (object fields cannot be viewed as bytes)
                bad = raw[bad_idx]
            else:
                bad = raw.view(np.dtype((np.void, raw.dtype.itemsize)))[bad_idx].view(raw.dtype)
            self.quarantine.add(
                self.source, chunk.rows_at(bad_idx), st.code[bad_idx], names[st.field[bad_idx]], bad, batch
            )
            return
        cols = {name: _take(chunk.column(name), bad_idx) for name in chunk.names}
        if len(chunk.bad_rows):
            line = np.full(chunk.n, None, dtype=object)
            line[chunk.bad_rows] = chunk.bad_text
            cols["<line>"] = line[bad_idx]
        for name, m in chunk.missing.items():  # nulls read as placeholder values: show them as null
            mm = np.asarray(m)[bad_idx]
            if mm.any():
                c = cols[name].astype(object)
                c[mm] = None
                cols[name] = c
        if chunk.origin is not None:
            cols[ORIGIN_COLUMN] = np.full(len(bad_idx), chunk.origin, dtype=object)
        names = np.array(st.names + ["?"], dtype=object)
        self.quarantine.add(
            self.source, chunk.rows_at(bad_idx), st.code[bad_idx], names[st.field[bad_idx]], cols, batch=batch
        )

    # ---- checkpoint ---------------------------------------------------------------------
    def to_state(self, include_quarantine: bool = True) -> dict:
        """Counters, dedup set and quarantine as arrays and scalars (see ``from_state``).

        Pass ``include_quarantine=False`` when the quarantine is shared and checkpointed on
        its own (``from_state`` then starts an empty one; assign the shared store after).
        """
        st = {
            "source": self.source,
            "time_lo_ms": self.time_range_ms[0],
            "time_hi_ms": self.time_range_ms[1],
            "schema_version": -1 if self.schema_version is None else int(self.schema_version),
            "allow_extra_columns": int(self.allow_extra_columns),
            "dedup": int(self.dedup is not None),
            "n_batches": self.n_batches,
            "n_read": self.n_read,
            "n_accepted": self.n_accepted,
            "by_reason": self._by_reason.copy(),
            "known_element_ids": np.zeros(0, np.int64) if self._known_ids is None else self._known_ids.copy(),
            "has_known_ids": int(self._known_ids is not None),
        }
        if self.dedup is not None:
            st.update({f"dedup_{k}": v for k, v in self.dedup.to_state().items()})
        if include_quarantine:
            st.update({f"quarantine_{k}": v for k, v in self.quarantine.to_state().items()})
        return st

    @classmethod
    def from_state(cls, d: dict, topology=None, registry: SchemaRegistry | None = None) -> Ingestor:
        """Restore an Ingestor from ``to_state()``; pass the topology again (it is not part of the
        state) and the registry if a custom one was used."""
        sv = int(d["schema_version"])
        ing = cls(
            str(d["source"]),
            topology=topology,
            known_element_ids=d["known_element_ids"] if int(d["has_known_ids"]) else None,
            time_range_ms=(int(d["time_lo_ms"]), int(d["time_hi_ms"])),
            schema_version=None if sv < 0 else sv,
            registry=registry,
            allow_extra_columns=bool(int(d["allow_extra_columns"])),
            dedup=bool(int(d.get("dedup", 1))),
        )
        ing.n_batches = int(d["n_batches"])
        ing.n_read = int(d["n_read"])
        ing.n_accepted = int(d["n_accepted"])
        ing._by_reason = np.asarray(d["by_reason"], dtype=np.int64).copy()
        dd = {k[6:]: v for k, v in d.items() if k.startswith("dedup_")}
        if ing.dedup is not None and dd:
            if "bucket_ms" in dd:
                ing.dedup = TimeBucketKeySet.from_state(dd)
            elif isinstance(ing.dedup, TimeBucketKeySet) and int(dd["horizon_ms"]) > 0:
                ing.dedup.legacy = DedupSet.from_state(dd)  # a checkpoint of the one-table design
            else:
                ing.dedup = DedupSet.from_state(dd)
        q = {k[11:]: v for k, v in d.items() if k.startswith("quarantine_")}
        if q:
            ing.quarantine = Quarantine.from_state(q)
        return ing

    def summary(self) -> str:
        """One line: read / accepted / quarantined with the reasons."""
        reasons = ", ".join(f"{k} {v}" for k, v in self.by_reason.items()) or "none"
        return (
            f"{self.source}: read {self.n_read}, accepted {self.n_accepted}, quarantined "
            f"{self.n_quarantined} ({reasons})"
        )
