"""Quarantine: the side output for rejected input rows, with a reason code per row.

Nothing is silently dropped at ingest: every row that is not accepted lands here with the
source, the reason code, the field (input column or canonical field) that failed, its row
number in the input and its original values. Counts per reason are exact even when the
store is told to keep only the first ``max_kept`` rows' details.

Reason codes
------------
The codes below are listed in the order in which ingest checks them; a row with several
problems is counted once, under the first that applies (see ``telcoanalytics.ingest.ingestor``).

=====================  ===========================================================
``unparseable``        text that is not a number / time / known code, or a ragged CSV row
``missing_value``      required value absent (empty CSV cell, None, Arrow null)
``non_finite``         NaN or +-inf where a number is required
``time_out_of_range``  a timestamp outside the Ingestor's sane range
``negative_duration``  a duration column (legacy schemas) below zero
``end_before_start``   ``end_ms < start_ms``
``answer_outside_call`` answer time before the start or after the end of the call
``bad_cause``          release cause outside Q.850 (1..127)
``out_of_domain``      unknown service / metric code, loss_pct outside 0..100, negative
                       latency or jitter, MOS outside 1..5, percentage metric outside 0..100
``negative_counter``   bytes, packets, flows, error counts or unavailable seconds below zero
``unknown_element``    element id not in the topology / known ids
``duplicate_id``       a record already seen: same CDR ``record_id``, or for the other sources the
                       same natural key (see ``telcoanalytics.ingest.ingestor``)
``time_in_future``     event time further ahead of the pipeline's robust clock than its horizon
                       (``telcoanalytics.ingest.clock``); decided after the row checks
=====================  ===========================================================
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

UNPARSEABLE = "unparseable"
MISSING_VALUE = "missing_value"
NON_FINITE = "non_finite"
TIME_OUT_OF_RANGE = "time_out_of_range"
NEGATIVE_DURATION = "negative_duration"
END_BEFORE_START = "end_before_start"
ANSWER_OUTSIDE_CALL = "answer_outside_call"
BAD_CAUSE = "bad_cause"
OUT_OF_DOMAIN = "out_of_domain"
NEGATIVE_COUNTER = "negative_counter"
UNKNOWN_ELEMENT = "unknown_element"
DUPLICATE_ID = "duplicate_id"
TIME_IN_FUTURE = "time_in_future"

REASONS: tuple[str, ...] = (
    UNPARSEABLE,
    MISSING_VALUE,
    NON_FINITE,
    TIME_OUT_OF_RANGE,
    NEGATIVE_DURATION,
    END_BEFORE_START,
    ANSWER_OUTSIDE_CALL,
    BAD_CAUSE,
    OUT_OF_DOMAIN,
    NEGATIVE_COUNTER,
    UNKNOWN_ELEMENT,
    DUPLICATE_ID,
    TIME_IN_FUTURE,
)
"""All reason codes in check order. Code number ``i + 1`` is ``REASONS[i]``; 0 means accepted."""

REASON_CODE: dict[str, int] = {r: i + 1 for i, r in enumerate(REASONS)}

_TABLE_FIELDS = ("source", "batch", "file", "row", "reason", "field", "original")

MAX_VALUE_CHARS = 1024
"""Each original value (and a ragged line's raw text) is kept up to this many characters; a
longer one is cut and marked ``TRUNCATED_MARK`` plus the number of characters dropped, so the
quarantine's memory and checkpoint size do not depend on what a bad row contained."""

TRUNCATED_MARK = "...[truncated "

ORIGIN_COLUMN = "<file>"
"""A column of this name in :meth:`Quarantine.add`'s ``columns`` holds the file each row came
from (one value per row, or None): it is kept as the record's ``file`` (next to ``row``, the
row within that file), not among the original values. ``Ingestor`` fills it whenever its input
is a file, so with several files feeding one source every quarantined row names its file."""


def truncate(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """``text`` cut to ``limit`` characters and marked when longer.

    >>> truncate("x" * 1030)[-28:]
    'xxx...[truncated 6 chars]'
    """
    if len(text) <= limit:
        return text
    return f"{text[:limit]}{TRUNCATED_MARK}{len(text) - limit} chars]"


def _text(v) -> str | None:
    """The original value as text: strings verbatim, numbers in Python's repr, None as null."""
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return repr(f) if math.isfinite(f) else str(f)
    if isinstance(v, (np.integer, int, np.bool_, bool)):
        return str(int(v)) if not isinstance(v, (bool, np.bool_)) else str(bool(v))
    if isinstance(v, np.datetime64):
        return str(v)
    return str(v)


def _texts(values: list) -> list:
    """``_text`` of every value of a column's ``tolist()``, with the usual column kinds (all ints,
    all floats) converted without the type tests per value."""
    kind = type(values[0]) if values else None
    if kind is int and all(type(x) is int for x in values):
        return [str(x) for x in values]
    if kind is float and all(type(x) is float for x in values):
        return [repr(x) if math.isfinite(x) else str(x) for x in values]
    return [_text(x) for x in values]


def _kept_values(v, keep: int) -> np.ndarray:
    """The first ``keep`` values of a column as they will be kept: numbers as they are, text as
    variable-length (object) strings truncated to ``MAX_VALUE_CHARS`` (never a fixed-width array
    sized by its longest value)."""
    if hasattr(v, "to_pylist") and not isinstance(v, np.ndarray):  # a pyarrow array
        v = np.array(v.slice(0, keep).to_pylist(), dtype=object)
    a = np.asarray(v)[:keep]
    if a.dtype.kind in "iufbM":
        return a.copy()
    out = np.empty(len(a), dtype=object)
    out[:] = [None if x is None else truncate(_text(x)) for x in a.tolist()]
    return out


def _field_names(fields: np.ndarray) -> np.ndarray:
    """The failing-field names of rejected rows as kept (text of at most 200 characters, each
    ``truncate(str(f), 200)``): a copy of the array when its few distinct values are such text
    already (an ingest's field names), without a conversion per row."""
    try:
        distinct = set(fields.tolist())
    except TypeError:  # an unhashable value
        distinct = None
    if distinct is not None and all(type(f) is str and len(f) <= 200 for f in distinct):
        return fields.astype(object)
    return np.array([truncate(str(f), 200) for f in fields], dtype=object)


_RECORD_NAMES: dict = {}
"""dtype -> ((field, kept name) of each field, whether every field is a number): see ``_kept_records``."""


def _kept_records(records: np.ndarray, keep: int):
    """The first ``keep`` rows of a structured array as they will be kept (as ``_kept_values`` keeps
    each field): ``(rows, None)`` with one copy of the rows when every field is a number (the block
    reads its columns from it), else ``(None, columns)``."""
    spec = _RECORD_NAMES.get(records.dtype)
    if spec is None:
        dt = records.dtype
        spec = (tuple((f, truncate(str(f), 200)) for f in dt.names), all(dt[f].kind in "iufbM" for f in dt.names))
        _RECORD_NAMES[dt] = spec
    names, numeric = spec
    if numeric:
        part = records[:keep]
        if part.flags.c_contiguous:  # copied as opaque bytes (a structured copy goes field by field)
            return part.view(np.dtype((np.void, part.dtype.itemsize))).copy().view(part.dtype), None
        return part.copy(), None
    return None, {name: _kept_values(records[f], keep) for f, name in names}


class _Block:
    """Rejected rows of one ingest chunk, kept columnar until they are asked for (the rows of a
    structured array of numbers are kept as that array: its columns are views made when asked)."""

    __slots__ = ("source", "batch", "rows", "reasons", "fields", "_columns", "files", "records")

    def __init__(self, source, batch, rows, reasons, fields, columns, files=None, records=None):
        self.source = source
        self.batch = batch
        self.rows = rows  # int64 (k,)
        self.reasons = reasons  # int8 codes (k,)
        self.fields = fields  # object array of str (k,)
        self._columns = columns  # dict name -> array (k,) of original values (None: from ``records``)
        self.files = files  # object array (k,) of the file of each row (None: not from a file)
        self.records = records  # structured array (k,) of numbers, or None

    @property
    def columns(self) -> dict:
        """name -> array (k,) of the original values."""
        if self._columns is None:
            names = _RECORD_NAMES[self.records.dtype][0]
            self._columns = {name: self.records[f] for f, name in names}
        return self._columns

    def __len__(self):
        return len(self.rows)

    def originals(self) -> list[dict]:
        recs = self.records
        if recs is not None and self._columns is None:
            names = [name for _, name in _RECORD_NAMES[recs.dtype][0]]
            kinds = [recs.dtype[i].kind for i in range(len(names))]
            if all(k in "iuf" for k in kinds):  # one tolist of the rows, each field written as _texts does
                cols = [
                    [str(x) for x in col] if k != "f" else [repr(x) if math.isfinite(x) else str(x) for x in col]
                    for k, col in zip(kinds, zip(*recs.tolist()))
                ]
                return [dict(zip(names, vals)) for vals in zip(*cols)]
        names = list(self.columns)
        if not names:
            return [{} for _ in range(len(self.rows))]
        cols = [
            _texts(self.columns[c].tolist() if hasattr(self.columns[c], "tolist") else list(self.columns[c]))
            for c in names
        ]
        return [dict(zip(names, vals)) for vals in zip(*cols)]


class Quarantine:
    """In-memory store of rejected rows, writable to JSON lines or Parquet.

    Parameters
    ----------
    max_kept : int or None
        Keep the details (original values) of at most this many rows; later rows are only
        counted (``n_not_kept``). None (default) keeps every row.

    Notes
    -----
    Counts per reason and per source are always exact. The store is mergeable (``merge``) and
    checkpointable (``to_state`` / ``from_state``).

    Examples
    --------
    >>> import numpy as np
    >>> q = Quarantine()
    >>> q.add("qos", rows=np.array([3]), reasons=np.array([REASON_CODE["non_finite"]]),
    ...       fields=np.array(["latency_ms"], dtype=object), columns={"latency_ms": np.array([np.nan])})
    >>> q.counts()
    {'non_finite': 1}
    >>> q.records()[0]["original"]
    {'latency_ms': 'nan'}
    """

    def __init__(self, max_kept: int | None = None):
        if max_kept is not None and (not isinstance(max_kept, (int, np.integer)) or max_kept < 0):
            raise ValueError(f"max_kept must be a non-negative int or None, got {max_kept!r}")
        self.max_kept = None if max_kept is None else int(max_kept)
        self._blocks: list[_Block] = []
        self._n_kept = 0
        self.n_not_kept = 0
        self._counts: dict[tuple[str, str], int] = {}

    # ---- filling ----------------------------------------------------------------------------
    def add(self, source: str, rows, reasons, fields, columns: dict, batch: int = 0) -> None:
        """Add rejected rows.

        Parameters
        ----------
        source : str
            Source name (``cdr``, ``equip``, ``flow``, ``qos`` or a user source).
        rows : int array (k,)
            Row number of each rejected row in its input (0-based data rows).
        reasons : int array (k,)
            Reason codes (``REASON_CODE``), each in 1..len(REASONS).
        fields : array (k,) of str
            The input column or canonical field that failed.
        columns : dict name -> array (k,), or a structured array (k,)
            Original values of the rejected rows, one array per input column (or the rejected
            records, a column per field); an entry ``ORIGIN_COLUMN`` of the dict gives the file of
            each row instead (the record's ``file``).
        batch : int
            Number of the ingest call / chunk the rows came from.

        Raises
        ------
        ValueError
            If lengths differ or a reason code is unknown.
        """
        rows = np.asarray(rows, dtype=np.int64)
        reasons = np.asarray(reasons, dtype=np.int8)
        fields = np.asarray(fields, dtype=object)
        records = None
        if isinstance(columns, np.ndarray):
            if columns.dtype.names is None or columns.ndim != 1:
                raise ValueError("columns must be a dict of arrays or a 1-D structured array")
            records, columns = columns, {}
        columns = dict(columns)
        files = columns.pop(ORIGIN_COLUMN, None)
        k = len(rows)
        if files is not None and len(files) != k:
            raise ValueError(f"columns[{ORIGIN_COLUMN!r}] must hold one file per row ({k}), got {len(files)}")
        if (
            len(reasons) != k
            or len(fields) != k
            or (records is not None and len(records) != k)
            or any(len(v) != k for v in columns.values())
        ):
            raise ValueError(f"rows, reasons, fields and every column must have the same length ({k})")
        if k == 0:
            return
        binc = np.bincount(reasons.view(np.uint8), minlength=256)  # (negative codes land at 128 and up)
        if binc[0] or binc[len(REASONS) + 1 :].any():
            raise ValueError(
                f"reason codes must be in 1..{len(REASONS)} (see REASONS), got "
                f"{sorted(set(reasons.tolist()) - set(range(1, len(REASONS) + 1)))}"
            )
        counts = self._counts
        for code in np.flatnonzero(binc[: len(REASONS) + 1]).tolist():
            key = (source, REASONS[code - 1])
            counts[key] = counts.get(key, 0) + int(binc[code])
        keep = k if self.max_kept is None else max(0, min(k, self.max_kept - self._n_kept))
        self.n_not_kept += k - keep
        if keep:
            sl = slice(0, keep)
            kept_records = None
            if records is not None:
                kept_records, kept_columns = _kept_records(records, keep)
            else:
                kept_columns = {truncate(str(c), 200): _kept_values(v, keep) for c, v in columns.items()}
            self._blocks.append(
                _Block(
                    source,
                    int(batch),
                    rows[sl].copy(),
                    reasons[sl].copy(),
                    _field_names(fields[sl]),
                    kept_columns,
                    None if files is None else _kept_values(files, keep),
                    kept_records,
                )
            )
            self._n_kept += keep

    # ---- accessors --------------------------------------------------------------------------
    def __len__(self) -> int:
        return sum(self._counts.values())

    @property
    def n_kept(self) -> int:
        """Rows whose details are held (``len(self) - n_not_kept``)."""
        return self._n_kept

    def counts(self, source: str | None = None) -> dict[str, int]:
        """Number of rejected rows per reason (only reasons that occurred), in check order."""
        out: dict[str, int] = {}
        for r in REASONS:
            n = sum(v for (s, rr), v in self._counts.items() if rr == r and (source is None or s == source))
            if n:
                out[r] = n
        return out

    def counts_by_source(self) -> dict[str, dict[str, int]]:
        """``{source: {reason: count}}`` for every source with rejected rows."""
        return {s: self.counts(s) for s in sorted({s for s, _ in self._counts})}

    def records(self, source: str | None = None, reason: str | None = None) -> list[dict]:
        """Kept rejected rows as dicts ``{source, batch, row, reason, field, original}``, and
        ``file`` (the input file; ``row`` is then the data row within it) for rows read from a
        file; ``original`` maps each input column to its value as text (None where absent)."""
        if reason is not None and reason not in REASON_CODE:
            raise ValueError(f"unknown reason {reason!r}; known reasons: {', '.join(REASONS)}")
        out = []
        for b in self._blocks:
            if source is not None and b.source != source:
                continue
            origs = b.originals()
            files = [None] * len(b) if b.files is None else b.files.tolist()
            for i, (code, row, fld, f) in enumerate(zip(b.reasons.tolist(), b.rows.tolist(), b.fields.tolist(), files)):
                r = REASONS[code - 1]
                if reason is None or r == reason:
                    rec = {"source": b.source, "batch": b.batch}
                    if f is not None:
                        rec["file"] = str(f)
                    rec.update(row=row, reason=r, field=str(fld), original=origs[i])
                    out.append(rec)
        return out

    def table(self) -> dict[str, np.ndarray]:
        """Kept rows as columns: source, batch, file ("" when not from a file), row, reason, field
        (str) and original (JSON text)."""
        recs = self.records()
        return {
            "source": np.array([r["source"] for r in recs], dtype=str),
            "batch": np.array([r["batch"] for r in recs], dtype=np.int64),
            "file": np.array([r.get("file", "") for r in recs], dtype=object),
            "row": np.array([r["row"] for r in recs], dtype=np.int64),
            "reason": np.array([r["reason"] for r in recs], dtype=str),
            "field": np.array([r["field"] for r in recs], dtype=str),
            "original": np.array([json.dumps(r["original"], sort_keys=True) for r in recs], dtype=object),
        }

    # ---- writing ----------------------------------------------------------------------------
    def write_jsonl(self, path) -> int:
        """Write the kept rows as JSON lines (one object per row); returns the number written."""
        recs = self.records()
        with open(Path(path), "w", encoding="utf-8") as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")
        return len(recs)

    def write_parquet(self, path) -> int:
        """Write the kept rows to Parquet (``original`` as a JSON string column); returns the
        number written.

        Raises
        ------
        ImportError
            If pyarrow is not installed (``pip install 'telcoanalytics[io]'``).
        """
        from telcoanalytics.ingest.readers import _pyarrow

        pa, pq = _pyarrow()
        t = self.table()
        pq.write_table(
            pa.table(
                {k: pa.array(v.tolist(), type=pa.int64() if v.dtype.kind == "i" else pa.string()) for k, v in t.items()}
            ),
            str(path),
        )
        return len(t["row"])

    # ---- state ------------------------------------------------------------------------------
    def to_state(self) -> dict:
        """Checkpoint as NumPy arrays and scalars (``from_state`` restores it)."""
        keys = sorted(self._counts)
        t = self.table()
        st = {f"kept_{k}": v for k, v in t.items() if k not in ("original", "file")}
        # the file of each row as an index into the distinct names (a path per row would dominate the size)
        names, idx = np.unique(np.array(t["file"].tolist() or [""], dtype=str), return_inverse=True)
        st["kept_file_names"] = names
        st["kept_file_index"] = idx.astype(np.int32)[: len(t["file"])]
        # the originals as one UTF-8 byte string and offsets: the size is that of the text kept
        enc = [o.encode("utf-8") for o in t["original"].tolist()]
        st["kept_original_bytes"] = np.frombuffer(b"".join(enc), dtype=np.uint8).copy()
        st["kept_original_offsets"] = np.cumsum([0] + [len(e) for e in enc]).astype(np.int64)
        st.update(
            {
                "count_source": np.array([k[0] for k in keys], dtype=str),
                "count_reason": np.array([k[1] for k in keys], dtype=str),
                "count_n": np.array([self._counts[k] for k in keys], dtype=np.int64),
                "n_not_kept": self.n_not_kept,
                "max_kept": -1 if self.max_kept is None else self.max_kept,
            }
        )
        return st

    @classmethod
    def from_state(cls, d: dict) -> Quarantine:
        """Rebuild a store from ``to_state()`` output."""
        q = cls(None if int(d["max_kept"]) < 0 else int(d["max_kept"]))
        q._counts = {(str(s), str(r)): int(n) for s, r, n in zip(d["count_source"], d["count_reason"], d["count_n"])}
        q.n_not_kept = int(d["n_not_kept"])
        src = np.asarray(d["kept_source"])
        if "kept_original_bytes" in d:
            raw = bytes(np.asarray(d["kept_original_bytes"], dtype=np.uint8))
            off = np.asarray(d["kept_original_offsets"], dtype=np.int64)
            originals = np.array([raw[off[i] : off[i + 1]].decode("utf-8") for i in range(len(off) - 1)], dtype=object)
        else:  # checkpoints written before the originals were stored as bytes
            originals = np.asarray(d["kept_original"], dtype=object)
        for s in dict.fromkeys(src.tolist()):
            for b in dict.fromkeys(np.asarray(d["kept_batch"])[src == s].tolist()):
                m = (src == s) & (np.asarray(d["kept_batch"]) == b)
                origs = [json.loads(o) for o in originals[m]]
                names = list(dict.fromkeys(c for o in origs for c in o))
                cols = {c: np.array([o.get(c) for o in origs], dtype=object) for c in names}
                files = None
                if "kept_file_names" in d:  # checkpoints before files were named have none
                    f = np.asarray(d["kept_file_names"])[np.asarray(d["kept_file_index"])[m]]
                    files = np.array([x if x else None for x in f.tolist()], dtype=object) if any(f) else None
                q._blocks.append(
                    _Block(
                        s,
                        int(b),
                        np.asarray(d["kept_row"])[m].astype(np.int64),
                        np.array([REASON_CODE[r] for r in np.asarray(d["kept_reason"])[m]], np.int8),
                        np.asarray(d["kept_field"])[m].astype(object),
                        cols,
                        files,
                    )
                )
                q._n_kept += int(m.sum())
        return q

    def merge(self, other: Quarantine) -> Quarantine:
        """Add the rows and counts of ``other`` into this store (in place); returns self."""
        for k, v in other._counts.items():
            self._counts[k] = self._counts.get(k, 0) + v
        self.n_not_kept += other.n_not_kept
        for b in other._blocks:
            keep = len(b) if self.max_kept is None else max(0, min(len(b), self.max_kept - self._n_kept))
            self.n_not_kept += len(b) - keep
            if keep:
                self._blocks.append(
                    _Block(
                        b.source,
                        b.batch,
                        b.rows[:keep],
                        b.reasons[:keep],
                        b.fields[:keep],
                        {c: v[:keep] for c, v in b.columns.items()},
                        None if b.files is None else b.files[:keep],
                    )
                )
                self._n_kept += keep
        return self

    def __repr__(self) -> str:
        return f"Quarantine({len(self)} rows: {self.counts()})"
