r"""Event-time merge of file sources: a k-way merge over chunked readers with a bounded reorder buffer.

Files hold rows roughly in arrival order: mostly increasing event time, with out-of-order and
late rows mixed in. Reading the files one after another (or round robin, chunk by chunk) hands
the pipeline hours of one source before a minute of the next, so its clock races ahead and most
rows look late. :func:`merged_batches` reads every file in bounded chunks and releases rows in
event-time order across all files, so a replay from files sees the stream a live feed would have
delivered.

How it works
------------
Each file has a *clock*: the running maximum, over its rows in file order, of the smallest event
time among the last 32 rows (so up to 31 rows in a row dated in the future, or late rows, do not
move it). Each row gets a *release key*: its event time, or its file's clock at the row minus
``max_disorder_ms`` when that is later (a late row goes out when it was delivered, not back in
the past). Rows go out in one batch per ``batch_ms`` slot of release key and per file (inside a
batch by event time); a slot goes out once every file's clock has passed its end plus
``max_disorder_ms``, and the merge always reads the next chunk of the file whose clock is
furthest behind. So rows up to ``max_disorder_ms`` out of order are put back in order, late rows
stay late, a row dated in the future waits for its time (and does not hold the others back), and
the batches depend only on the files' contents: not on ``chunk_rows`` and not on the order in
which the files are given. Rows whose event time does not parse go out with the rows around them
(ingest quarantines them). Memory: the rows within ``max_disorder_ms`` of the slowest file's clock,
one chunk per file, and rows dated ahead of every clock.

Position and resume (the contract)
----------------------------------
``it.position()`` is a JSON-able dict, valid between two ``next(it)`` calls; it describes exactly
the rows handed out so far::

    {"format": 1, "max_disorder_ms": int, "batch_ms": int,
     "files": {"<path>": {"consumed": int, "committed": int, "released_ms": int | None}, ...}}

For each file: rows ``0 .. committed-1`` have all been handed out; of the rows ``committed ..
consumed-1``, exactly those whose release key is below ``released_ms`` have been handed out (the
rest were still buffered); rows from ``consumed`` on were not handed out. ``released_ms`` None
means no row of the file was released yet. Rows are numbered from 0, the first data row of the
file (CSV: the line after the header).

Pass such a dict back as ``merged_batches(..., start=position)`` (same files; ``chunk_rows`` may
differ) and the iterator continues exactly after the last batch handed out: no row is handed out
twice and none is lost. A consumer that checkpoints its own state together with ``position()``
after each batch it processed can therefore resume after a crash. Resuming re-reads each file
from its start to recompute the clocks (reading and parsing the time column only; nothing before
``committed`` is handed out again), then goes on with the same batches an uninterrupted run
would have produced.

Examples
--------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "equip.csv").write_text("ts_ms,element_id,metric_id,value\n" + "".join(
...     f"{1_700_000_000_000 + 1000 * (i ^ 1)},7,0,{i}.0\n" for i in range(100)))
>>> it = merged_batches({"equip": [d / "equip.csv"]}, chunk_rows=10)
>>> source, chunk = next(it)
>>> source, chunk.n, chunk.rows()[:4].tolist()
('equip', 40, [1, 0, 3, 2])
>>> it.position()["files"][str(d / "equip.csv")]["committed"]
40
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from telcoanalytics.ingest.readers import DEFAULT_CHUNK_ROWS, RawChunk, iter_chunks
from telcoanalytics.ingest.schema import REGISTRY, SchemaError, SchemaRegistry, parse_column
from telcoanalytics.records import DTYPES, TIME_FIELD

DEFAULT_MAX_DISORDER_MS = 60_000
"""Rows up to this much out of event-time order (within a file and across files) are put back in order."""

DEFAULT_BATCH_MS = 60_000
"""Event-time width of the batches handed out (one minute, as a live feed's micro-batches)."""

POSITION_FORMAT = 1
_NO_TIME = int(np.iinfo(np.int64).min)  # rows whose event time does not parse: released at once
_MAX_TIME = int(np.iinfo(np.int64).max)
_WINDOW = 32  # rows whose minimum event time drives a file's clock (a power of two)

__all__ = [
    "DEFAULT_MAX_DISORDER_MS",
    "DEFAULT_BATCH_MS",
    "MergedBatches",
    "merged_batches",
    "take_rows",
    "concat_chunks",
]


# ---- raw chunk surgery ---------------------------------------------------------------------------
def _take_col(col, idx: np.ndarray):
    if isinstance(col, np.ndarray):
        return col[idx]
    import pyarrow as pa

    return col.take(pa.array(idx, type=pa.int64()))


def take_rows(chunk: RawChunk, idx: np.ndarray) -> RawChunk:
    """The rows ``idx`` (local indices) of ``chunk`` as a new chunk that keeps their file row numbers."""
    idx = np.asarray(idx, dtype=np.int64)
    if isinstance(chunk.columns, np.ndarray):
        cols = chunk.columns[idx]
    else:
        cols = {k: _take_col(v, idx) for k, v in chunk.columns.items()}
    missing = {k: np.asarray(v)[idx] for k, v in chunk.missing.items()}
    bad_rows = np.zeros(0, np.int64)
    bad_text: list = []
    if len(chunk.bad_rows):
        pos = np.full(chunk.n, -1, dtype=np.int64)
        pos[idx] = np.arange(len(idx))
        keep = pos[chunk.bad_rows] >= 0
        bad_rows = pos[chunk.bad_rows][keep]
        bad_text = [t for t, k in zip(chunk.bad_text, keep) if k]
    return RawChunk(
        cols,
        len(idx),
        chunk.row_offset + (int(idx[0]) if len(idx) else 0),
        missing,
        bad_rows,
        bad_text,
        row_numbers=chunk.rows()[idx],
        origin=chunk.origin,
    )


def concat_chunks(chunks: list[RawChunk]) -> RawChunk:
    """Rows of several chunks of one input (same columns) as one chunk, file row numbers kept."""
    if len(chunks) == 1:
        return chunks[0]
    first = chunks[0]
    if isinstance(first.columns, np.ndarray):
        cols = np.concatenate([c.columns for c in chunks])
    else:
        cols = {}
        for k, v in first.columns.items():
            parts = [c.columns[k] for c in chunks]
            if isinstance(v, np.ndarray):
                cols[k] = np.concatenate(parts)
            else:
                import pyarrow as pa

                cols[k] = pa.concat_arrays(parts)
    names = {k for c in chunks for k in c.missing}
    missing = {k: np.concatenate([np.asarray(c.missing.get(k, np.zeros(c.n, bool))) for c in chunks]) for k in names}
    starts = np.cumsum([0] + [c.n for c in chunks])
    bad_rows = np.concatenate([c.bad_rows + s for c, s in zip(chunks, starts)])
    bad_text = [t for c in chunks for t in c.bad_text]
    return RawChunk(
        cols,
        int(starts[-1]),
        first.row_offset,
        missing,
        bad_rows.astype(np.int64),
        bad_text,
        row_numbers=np.concatenate([c.rows() for c in chunks]),
        origin=first.origin,
    )


# ---- one file ------------------------------------------------------------------------------------
def _window_min(x: np.ndarray, k: int) -> np.ndarray:
    """``out[i] = min(x[i - k + 1 .. i])`` for ``i >= k - 1`` (length ``len(x) - k + 1``); k a power of two."""
    m = x
    w = 1
    while w < k:
        m = np.minimum(m[w:], m[:-w])
        w *= 2
    return m


class _File:
    """One input file: its reader, the file clock, buffered rows and position bookkeeping."""

    def __init__(self, key: str, source: str, path: Path, chunk_rows: int, time_of, max_disorder_ms: int):
        self.key, self.source, self.path = key, source, path
        self.reader = iter_chunks(path, chunk_rows)
        self.time_of = time_of
        self.d = max_disorder_ms
        self.done = False
        self.consumed = 0  # rows read from the file
        self.clock = _NO_TIME  # file clock after the last row read
        self.window = np.full(_WINDOW - 1, _NO_TIME, np.int64)  # times of the last rows (absent: -inf)
        self.buf: list[tuple[RawChunk, np.ndarray, np.ndarray]] = []  # (chunk, release key, event time)
        # position as of the last batch handed out
        self.released_ms: int | None = None
        self.reported = 0
        self.pending_min: int | None = None
        self.skip = None  # (committed, consumed, released_ms) while resuming

    def read(self) -> None:
        """Read one chunk: file clock and release key of every row, into the buffer."""
        try:
            chunk = next(self.reader, None)
        except (ValueError, OSError) as e:  # pyarrow's errors and UnicodeDecodeError are ValueErrors too
            msg = f"{self.path} (after data row {self.consumed}): {e}"
            raise (OSError(msg) if isinstance(e, OSError) else ValueError(msg)) from e
        if chunk is None:
            self.done = True
            return
        if chunk.n == 0:
            return
        rows = chunk.rows()
        self.consumed = int(rows[-1]) + 1
        t = self.time_of(self.source, chunk, self.path)
        # file clock: running max of the minimum event time over the last _WINDOW rows, so that
        # up to _WINDOW - 1 rows in a row dated in the future do not move it
        x = np.where(t == _NO_TIME, _MAX_TIME, t)
        wmin = _window_min(np.concatenate([self.window, x]), _WINDOW)
        wmin[wmin == _MAX_TIME] = _NO_TIME  # a window of rows without time says nothing
        a = np.maximum.accumulate(np.maximum(wmin, self.clock))
        self.window = np.concatenate([self.window, x])[-(_WINDOW - 1) :]
        self.clock = int(a[-1])
        # release key: the event time, or the clock minus the disorder allowed when later (late rows)
        key = np.maximum(t, np.where(a == _NO_TIME, _NO_TIME, a - self.d))
        key[t == _NO_TIME] = np.where(a == _NO_TIME, _NO_TIME, a - self.d)[t == _NO_TIME]
        keep = None
        if self.skip is not None:
            committed, consumed, released = self.skip
            keep = rows >= committed
            if released is not None:
                keep &= ~((rows < consumed) & (key < released))
            if self.consumed >= consumed:
                self.skip = None
        if keep is not None and not keep.all():
            idx = np.flatnonzero(keep)
            chunk, key, t = take_rows(chunk, idx), key[idx], t[idx]
        if chunk.n:
            self.buf.append((chunk, key, t))

    def pull(self, until_ms: int, batch_ms: int) -> tuple[RawChunk | None, np.ndarray]:
        """Remove and return the buffered rows with release key below ``until_ms``, ordered by
        (release slot, event time, row), and their slots."""
        out, keep_buf = [], []
        for chunk, k, t in self.buf:
            m = k < until_ms
            if m.all():
                out.append((chunk, k, t))
            elif m.any():
                i, j = np.flatnonzero(m), np.flatnonzero(~m)
                out.append((take_rows(chunk, i), k[i], t[i]))
                keep_buf.append((take_rows(chunk, j), k[j], t[j]))
            else:
                keep_buf.append((chunk, k, t))
        self.buf = keep_buf
        if not out:
            return None, np.zeros(0, np.int64)
        c = concat_chunks([o[0] for o in out])
        slot = np.concatenate([o[1] for o in out]) // batch_ms
        t = np.concatenate([o[2] for o in out])
        o = np.lexsort((c.rows(), t, slot))
        if np.any(o[1:] < o[:-1]):
            c, slot = take_rows(c, o), slot[o]
        return c, slot

    def min_buffered_row(self) -> int:
        return min((int(c.rows().min()) for c, _, _ in self.buf if c.n), default=self.consumed)


# ---- the merge -----------------------------------------------------------------------------------
class MergedBatches(Iterator):
    """Iterator of ``(source, RawChunk)`` over several files in event-time order; see the module docstring.

    Each chunk holds rows of one file (``chunk.row_numbers`` are their 0-based rows in that file,
    ``chunk.origin`` the file path); feed it to ``Pipeline.process(source, chunk)``.
    """

    def __init__(
        self,
        paths_by_source: dict,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        max_disorder_ms: int = DEFAULT_MAX_DISORDER_MS,
        batch_ms: int = DEFAULT_BATCH_MS,
        start: dict | None = None,
        registry: SchemaRegistry | None = None,
        allow_extra_columns: bool = False,
    ):
        for name, v, lo in (("max_disorder_ms", max_disorder_ms, 0), ("batch_ms", batch_ms, 1)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo} (ms), got {v!r}")
        self.max_disorder_ms = int(max_disorder_ms)
        self.batch_ms = int(batch_ms)
        self.registry = registry if registry is not None else REGISTRY
        self.allow_extra_columns = bool(allow_extra_columns)
        self._schemas: dict = {}
        self.files: list[_File] = []
        if not isinstance(paths_by_source, dict) or not paths_by_source:
            raise ValueError("paths_by_source must be a non-empty dict source -> path or list of paths")
        for source, paths in paths_by_source.items():
            if source not in DTYPES:
                raise ValueError(f"unknown source {source!r} in paths_by_source; known sources: {', '.join(DTYPES)}")
            for p in [paths] if isinstance(paths, (str, Path)) else list(paths):
                p = Path(p)
                if not p.exists():
                    raise FileNotFoundError(f"input file {str(p)!r} does not exist")
                self.files.append(_File(str(p), source, p, chunk_rows, self._times, self.max_disorder_ms))
        keys = [f.key for f in self.files]
        if len(set(keys)) != len(keys):
            raise ValueError(f"a file is listed twice: {sorted({k for k in keys if keys.count(k) > 1})}")
        self.files.sort(key=lambda f: f.key)  # the output does not depend on the order given
        self._out: deque = deque()  # (file, chunk or None, released_ms, pending_min, consumed) to hand out
        self._released = _NO_TIME
        if start is not None:
            self._resume(start)

    # ---- event times
    def _times(self, source: str, chunk: RawChunk, path: Path) -> np.ndarray:
        key = (source, chunk.names)
        sv = self._schemas.get(key)
        if sv is None:
            try:
                sv = self.registry.resolve(source, chunk.names, None, self.allow_extra_columns)
            except SchemaError as e:
                raise SchemaError(f"{path}: {e}") from None
            self._schemas[key] = sv
        r = sv.fields[TIME_FIELD[source]]
        vals, st = parse_column(chunk.column(r.column), "i", r, chunk.missing.get(r.column))
        vals = np.array(vals, dtype=np.int64)  # a copy: never write into the chunk's columns
        if st is not None:
            vals[st != 0] = _NO_TIME
        if len(chunk.bad_rows):
            vals[chunk.bad_rows] = _NO_TIME
        return vals

    # ---- resume
    def _resume(self, pos: dict) -> None:
        if not isinstance(pos, dict) or pos.get("format") != POSITION_FORMAT or not isinstance(pos.get("files"), dict):
            raise ValueError(f"start must be a position() dict of format {POSITION_FORMAT}, got {str(pos)[:200]}")
        if pos.get("max_disorder_ms") != self.max_disorder_ms or pos.get("batch_ms") != self.batch_ms:
            raise ValueError(
                f"start was taken with max_disorder_ms={pos.get('max_disorder_ms')} batch_ms={pos.get('batch_ms')}; "
                "resume with the same values"
            )
        known = {f.key for f in self.files}
        if set(pos["files"]) != known:
            raise ValueError(
                f"start lists files {sorted(pos['files'])}, the merge was given {sorted(known)}; resume with the same files"
            )
        rel = []
        for f in self.files:
            p = pos["files"][f.key]
            committed, consumed = int(p["committed"]), int(p["consumed"])
            released = None if p.get("released_ms") is None else int(p["released_ms"])
            if not 0 <= committed <= consumed:
                raise ValueError(f"start position of {f.key}: need 0 <= committed <= consumed, got {p}")
            f.skip = (committed, consumed, released)
            f.released_ms, f.reported = released, consumed
            if released is not None:
                rel.append(released)
            # re-read the file up to the resume point: the clock comes out as in the first run,
            # the rows handed out before are dropped, the others buffered again
            while not f.done and f.skip is not None:
                f.read()
            if f.consumed < consumed:
                raise ValueError(
                    f"start position of {f.key}: the file has {f.consumed} rows, the position says {consumed}"
                )
        self._released = min(rel) if rel else _NO_TIME

    # ---- position
    def position(self) -> dict:
        """Where the merge stands (JSON-able); see the module docstring for the contract."""
        files = {}
        for f in self.files:
            committed = min(f.min_buffered_row(), f.reported)
            if f.pending_min is not None:
                committed = min(committed, f.pending_min)
            files[f.key] = {
                "consumed": f.reported,
                "committed": committed,
                "released_ms": f.released_ms,
            }
        return {
            "format": POSITION_FORMAT,
            "max_disorder_ms": self.max_disorder_ms,
            "batch_ms": self.batch_ms,
            "files": files,
        }

    # ---- iteration
    def __iter__(self):
        return self

    def __next__(self):
        while True:
            while self._out:
                f, chunk, rel, pending_min, consumed = self._out.popleft()
                f.released_ms, f.pending_min, f.reported = rel, pending_min, consumed
                if chunk is not None:
                    return f.source, chunk
            if all(f.done for f in self.files) and not any(f.buf for f in self.files):
                raise StopIteration
            self._step()

    def _step(self) -> None:
        """Read one chunk from the file whose clock is furthest behind; release what is complete."""
        active = [f for f in self.files if not f.done]
        if active:
            min(active, key=lambda x: (x.clock, x.key)).read()
        active = [f for f in self.files if not f.done]
        if not active:
            self._emit(_MAX_TIME)
            return
        clock = min(f.clock for f in active)
        if clock == _NO_TIME:
            return
        # rows not read yet have a release key >= clock - max_disorder: earlier slots are complete
        bound = (clock - self.max_disorder_ms) // self.batch_ms * self.batch_ms
        if bound > self._released:
            self._emit(bound)

    def _emit(self, bound: int) -> None:
        """Queue the buffered rows with release key below ``bound`` as one batch per slot and file."""
        b = self.batch_ms
        pulled = []
        for f in self.files:
            c, slot = f.pull(bound, b)
            if c is not None:
                pulled.append((f, c, slot))
        slots = np.unique(np.concatenate([s for _, _, s in pulled])) if pulled else np.zeros(0, np.int64)
        q = self._out
        for s in slots.tolist():
            end = min((s + 1) * b, _MAX_TIME)
            for f, c, slot in pulled:
                lo = int(np.searchsorted(slot, s, side="left"))
                hi = int(np.searchsorted(slot, s, side="right"))
                if hi == lo:
                    continue
                rows = c.rows()
                rest = int(rows[hi:].min()) if hi < len(rows) else None
                part = c if (lo == 0 and hi == c.n) else take_rows(c, np.arange(lo, hi))
                q.append((f, part, end, rest, f.consumed))
        for f in self.files:  # every file: all its rows with a key below the bound are out now
            q.append((f, None, bound, None, f.consumed))
        self._released = max(self._released, bound)


def merged_batches(
    paths_by_source: dict,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    max_disorder_ms: int = DEFAULT_MAX_DISORDER_MS,
    batch_ms: int = DEFAULT_BATCH_MS,
    start: dict | None = None,
    registry: SchemaRegistry | None = None,
    allow_extra_columns: bool = False,
) -> MergedBatches:
    """Merge CSV / Parquet files of several sources by event time (see the module docstring).

    Parameters
    ----------
    paths_by_source : dict source -> path or list of paths
        Files per source (``records.SOURCES``); each file is one stream of the merge, in any order.
    chunk_rows : int
        Rows per read (bounded memory); the output does not depend on it.
    max_disorder_ms : int
        Rows up to this much out of order are put back in event-time order (default 60 s).
    batch_ms : int
        Event-time width of the output batches (default 60 s).
    start : dict, optional
        A ``position()`` of an earlier run over the same files: continue right after it.
    registry : SchemaRegistry, optional
        Schema versions used to find each file's event-time column (default the global one).
    allow_extra_columns : bool
        Accept columns no schema version maps (as ``Ingestor(allow_extra_columns=True)``).

    Returns
    -------
    MergedBatches
        Iterator of ``(source, RawChunk)``; ``position()`` says how far it got.

    Raises
    ------
    FileNotFoundError, ValueError, SchemaError
        A missing file, an unknown source, a bad ``start``, columns that match no schema version
        (the message names the file).
    """
    return MergedBatches(paths_by_source, chunk_rows, max_disorder_ms, batch_ms, start, registry, allow_extra_columns)
