"""Readers: turn any supported input into raw column chunks of bounded size.

A reader yields :class:`RawChunk` objects holding the input's columns as they came (numbers,
text, datetime64), at most ``chunk_rows`` rows each; ``telcoanalytics.ingest.schema`` maps them to
canonical arrays and ``telcoanalytics.ingest.ingestor`` validates them. Nothing here rejects data:
text that does not parse is found by the schema mapping, and CSV rows with the wrong number of
fields are flagged in the chunk (``bad_rows``) and quarantined as ``unparseable`` by ingest.

Supported inputs (:func:`iter_chunks`)
--------------------------------------
* a path (str or ``pathlib.Path``) to ``.csv`` / ``.csv.gz`` / ``.tsv`` or ``.parquet`` /
  ``.pq`` (Parquet needs pyarrow: ``pip install 'telcoanalytics[io]'``);
* a NumPy structured array (chunks are views, no copy);
* a dict of equal-length 1-D arrays or lists;
* a pyarrow ``Table`` / ``RecordBatch``, or a pandas / polars DataFrame;
* an iterable of dicts (one per record; missing keys are missing values).
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_CHUNK_ROWS = 1_000_000


def _pyarrow():
    """Import pyarrow lazily; raise an ImportError that says how to install it."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:  # pragma: no cover - pyarrow is installed in the test env
        raise ImportError(
            "reading or writing Parquet needs pyarrow; install it with pip install 'telcoanalytics[io]'"
        ) from e
    return pa, pq


@dataclass
class RawChunk:
    """Up to ``chunk_rows`` input rows, as raw columns.

    Attributes
    ----------
    columns : dict name -> 1-D array, or a structured ndarray
        Values as read (numbers, text, datetime64).
    n : int
        Number of rows.
    row_offset : int
        Row number (0-based data row of the whole input) of the first row.
    missing : dict name -> bool array
        Values known to be absent (Arrow nulls); text readers leave absence as empty text.
    bad_rows : int64 array
        Local indices of rows that could not be split into the columns (CSV rows with too
        few or too many fields); their column values are empty text.
    bad_text : list of str
        The raw text of each of ``bad_rows``.
    row_numbers : int64 array or None
        Row number in the input of each row, when the rows are not the consecutive
        ``row_offset, row_offset + 1, ...`` (a chunk assembled by the event-time merge).
    origin : str or None
        Where the rows came from (the file path), for the quarantine.
    """

    columns: object
    n: int
    row_offset: int = 0
    missing: dict = field(default_factory=dict)
    bad_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    bad_text: list = field(default_factory=list)
    row_numbers: np.ndarray | None = None
    origin: str | None = None

    def rows(self) -> np.ndarray:
        """Row number in the input of each row (int64)."""
        if self.row_numbers is not None:
            return self.row_numbers
        return np.arange(self.row_offset, self.row_offset + self.n, dtype=np.int64)

    def rows_at(self, idx: np.ndarray) -> np.ndarray:
        """Row numbers in the input of the local rows ``idx`` (``rows()[idx]``, without building
        the numbers of every row)."""
        if self.row_numbers is not None:
            return self.row_numbers[idx]
        return self.row_offset + np.asarray(idx, dtype=np.int64)

    @property
    def names(self) -> tuple[str, ...]:
        if isinstance(self.columns, np.ndarray):
            return tuple(self.columns.dtype.names or ())
        return tuple(self.columns)

    def column(self, name: str) -> np.ndarray:
        return self.columns[name]


def _check_chunk_rows(chunk_rows) -> int:
    if not isinstance(chunk_rows, (int, np.integer)) or isinstance(chunk_rows, bool) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive int, got {chunk_rows!r}")
    return int(chunk_rows)


# ---- CSV -------------------------------------------------------------------------------------
CSV_ENGINES = ("auto", "arrow", "python")


def _has_pyarrow() -> bool:
    try:
        import pyarrow.csv  # noqa: F401
    except ImportError:  # pragma: no cover - pyarrow is installed in the test env
        return False
    return True


def read_csv(
    path,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    delimiter: str | None = None,
    encoding: str = "utf-8",
    engine: str = "auto",
) -> Iterator[RawChunk]:
    """Read a CSV file (header row first) in chunks of at most ``chunk_rows`` rows.

    Every record after the header is one row: ``row`` numbers in the quarantine are the 0-based
    record after the header (line number - 2 until a quoted value spans lines, see below). A
    blank line is a row of empty values (so it is quarantined as ``missing_value``, not silently
    skipped). Rows with the wrong number of fields are listed in ``bad_rows`` with their raw
    text (quarantined as ``unparseable``).

    Parameters
    ----------
    path : str or Path
        ``.csv``, ``.tsv`` (tab-delimited) or either gzip-compressed (``.gz``).
    chunk_rows : int
        Maximum rows per chunk; memory is bounded by one chunk of text.
    delimiter : str, optional
        Field separator; default ``\t`` for ``.tsv`` and ``,`` otherwise.
    encoding : str
    engine : {"auto", "arrow", "python"}
        ``arrow`` parses with pyarrow's CSV reader (about 10x faster), ``python`` line by line
        with the standard library. ``auto``: arrow when pyarrow is installed and the encoding is
        UTF-8. Both give the same chunks' contents and row numbers, except in a file with a lone
        carriage return (one not followed by a line feed): pyarrow ends a line there, the line
        engine keeps it in the value (either way every row is counted: read == accepted +
        quarantined). When pyarrow meets a
        damaged block (text that is not UTF-8, a line longer than its block), the rest of the
        file is read by the line engine, from the first row not yet handed out.

    Hostile files
    -------------
    A UTF-8 byte-order mark before the header is dropped. A row is a line, except that a quoted
    value may hold line breaks (RFC 4180): a line ending inside a quote is joined with the next
    lines when, within ``MAX_RECORD_LINES`` lines and ``MAX_LINE_BYTES``, the quote closes and
    the record has the header's number of fields; such a record is one row. Otherwise the quote
    is unclosed: that line alone is one ``unparseable`` row and reading goes on at the next
    line, so an unclosed quote damages only its own line. (From the first value with a line
    break on, the file is read by the line engine.) A line that is not valid text in
    ``encoding``, that the CSV parser rejects, or that is longer than ``MAX_LINE_BYTES`` (1 MiB)
    is one ``unparseable`` row, kept with a description and its (truncated) text; reading goes
    on at the next line. Only a header that cannot be read is an error for the whole file.

    Yields
    ------
    RawChunk
        Columns as text (NumPy arrays, or Arrow string arrays with the arrow engine).

    Raises
    ------
    ValueError
        If the file is empty (no header row), the header repeats a column name, or the engine
        is unknown.
    """
    chunk_rows = _check_chunk_rows(chunk_rows)
    if engine not in CSV_ENGINES:
        raise ValueError(f"engine must be one of {CSV_ENGINES}, got {engine!r}")
    path = Path(path)
    if delimiter is None:
        delimiter = "\t" if path.name.lower().removesuffix(".gz").endswith(".tsv") else ","
    header = _read_header(path, delimiter, encoding)
    if engine == "auto":
        engine = "arrow" if _has_pyarrow() and encoding.lower().replace("-", "") in ("utf8", "utf8sig") else "python"
    if engine == "python":
        yield from _read_csv_lines(path, header, chunk_rows, delimiter, encoding, 0)
        return
    offset = 0
    try:
        for chunk in _read_csv_arrow(path, header, chunk_rows, delimiter, "utf8"):
            yield chunk
            offset = chunk.row_offset + chunk.n
    except (ValueError, OSError, _QuoteAcrossLines) as e:  # pyarrow's errors are ValueErrors: invalid UTF-8
        if isinstance(e, FileNotFoundError):
            raise
        # the rest of the file line by line: every damaged line is one quarantined row
        yield from _read_csv_lines(path, header, chunk_rows, delimiter, encoding, offset)


MAX_LINE_BYTES = 1 << 20
"""A CSV line longer than this (1 MiB) is one ``unparseable`` row (its text cut to the quarantine's
``MAX_VALUE_CHARS``); reading goes on at the next line, and memory stays bounded."""

MAX_RECORD_LINES = 64
"""A quoted CSV value may hold line breaks, within a record of at most this many lines (and
``MAX_LINE_BYTES``); a quote still open after that is unclosed (see :func:`read_csv`)."""


if csv.field_size_limit() < MAX_LINE_BYTES:  # a field may be as long as a line may be
    csv.field_size_limit(MAX_LINE_BYTES)


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _read_header(path: Path, delimiter: str, encoding: str) -> list:
    with _open_binary(path) as f:
        raw = f.readline(MAX_LINE_BYTES + 1)
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]  # a UTF-8 byte-order mark is not part of the first column's name
    if len(raw) > MAX_LINE_BYTES:
        raise ValueError(f"{path}: the header line is longer than {MAX_LINE_BYTES} bytes; is this a CSV file?")
    try:
        text = raw.decode("utf-8-sig" if encoding.lower().replace("-", "") == "utf8" else encoding)
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path}: the header line is not valid {encoding} text (byte offset {e.start}); "
            "save the file as UTF-8 or pass encoding=..."
        ) from None
    try:
        header = next(csv.reader([text.rstrip("\r\n")], delimiter=delimiter), None)
    except csv.Error as e:  # e.g. a carriage return inside the header line
        raise ValueError(f"{path}: the header line is not valid CSV ({e}); fix the file's first line") from None
    if not header or not any(h.strip() for h in header):
        raise ValueError(f"{path}: empty CSV file; the first line must be a header naming the columns")
    header = [h.strip() for h in header]
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise ValueError(f"{path}: header repeats column(s) {dup}; column names must be unique")
    return header


class _QuoteAcrossLines(Exception):
    """pyarrow folded lines into one quoted value (an unclosed quote): read on line by line."""


class _BadLine:
    """A line that could not be read as fields: its text (for the quarantine)."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


def _physical_lines(f):
    """Raw lines of a binary file: ``(bytes, None)``, or ``(None, head)`` for a line longer than
    ``MAX_LINE_BYTES`` (skipped to its end in bounded steps; ``head`` is its first 4 KiB)."""
    while True:
        raw = f.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            head = raw[:4096]
            while raw and not raw.endswith(b"\n"):
                raw = f.readline(MAX_LINE_BYTES + 1)
            yield None, head
        else:
            yield raw, None


def _join_quoted(text: str, more, back: deque, delimiter: str, encoding: str, ncol: int):
    """A line whose quote is still open at its end: join the following lines (at most
    ``MAX_RECORD_LINES`` in all and ``MAX_LINE_BYTES``) until the quote closes. Returns the
    record's fields when the joined text parses to ``ncol`` fields; else None, with the lines
    read put back in ``back`` (the first line alone is then the row)."""
    taken = []
    parts = [text]
    size = len(text)
    open_quote = True
    while open_quote and len(taken) < MAX_RECORD_LINES - 1 and size <= MAX_LINE_BYTES:
        item = more()
        if item is None:
            break
        taken.append(item)
        raw = item[0]
        if raw is None:
            break
        try:
            line = raw.decode(encoding).rstrip("\r\n")
        except UnicodeDecodeError:
            break
        parts.append(line)
        size += len(line) + 1
        open_quote = (sum(p.count('"') for p in parts) % 2) == 1
    if not open_quote and size <= MAX_LINE_BYTES:
        try:
            fields = next(csv.reader(io.StringIO("\n".join(parts)), delimiter=delimiter, strict=True), [])
        except csv.Error:
            fields = []
        if len(fields) == ncol:
            return fields
    back.extendleft(reversed(taken))
    return None


def _lines(path: Path, delimiter: str, encoding: str, start_row: int, ncol: int):
    """Rows after the header from row ``start_row``: a list of fields, or a :class:`_BadLine` for
    an overlong line, text that does not decode, or a line the CSV parser rejects.

    A row is a line, except that a quoted value may hold line breaks: a line that ends inside a
    quote is joined with the following ones (at most ``MAX_RECORD_LINES`` lines and
    ``MAX_LINE_BYTES``) when that gives a record of ``ncol`` fields; otherwise the quote is
    unclosed, the line alone is the (bad) row and reading goes on at the next line."""
    from telcoanalytics.ingest.quarantine import truncate

    with _open_binary(path) as f:
        f.readline(MAX_LINE_BYTES + 1)
        phys = _physical_lines(f)
        back: deque = deque()

        def more():
            return back.popleft() if back else next(phys, None)

        row = 0
        while True:
            item = more()
            if item is None:
                return
            raw, head = item
            if raw is None:
                rec = _BadLine(
                    f"line longer than {MAX_LINE_BYTES} bytes: " + truncate(head.decode("utf-8", "replace"), 256)
                )
            else:
                try:
                    text = raw.decode(encoding).rstrip("\r\n")
                except UnicodeDecodeError as e:
                    rec = _BadLine(
                        f"not valid {encoding} at byte {e.start} of the line: "
                        + truncate(raw.decode("utf-8", "replace").rstrip("\r\n"))
                    )
                else:
                    rec = None
                    if text.count('"') % 2 == 1:
                        rec = _join_quoted(text, more, back, delimiter, encoding, ncol)
                    if rec is None:
                        try:
                            rec = next(csv.reader([text], delimiter=delimiter, strict=True), [])
                        except csv.Error as e:
                            rec = _BadLine(f"{e}: {truncate(text)}")
            if row >= start_row:
                yield rec
            row += 1


def _read_csv_lines(path: Path, header: list, chunk_rows: int, delimiter: str, encoding: str, start_row: int):
    it = _lines(path, delimiter, encoding, start_row, len(header))
    offset = start_row
    while True:
        rows = list(itertools.islice(it, chunk_rows))
        if not rows:
            return
        chunk = _rows_to_chunk(rows, header, offset, delimiter)
        chunk.origin = str(path)
        yield chunk
        offset += len(rows)


def _rows_to_chunk(rows: list, header: list, offset: int, delimiter: str) -> RawChunk:
    ncol = len(header)
    bad = [i for i, r in enumerate(rows) if isinstance(r, _BadLine) or (len(r) != ncol and r)]
    bad_text = []
    for i, r in enumerate(rows):
        if not isinstance(r, _BadLine) and not r:
            rows[i] = [""] * ncol  # blank line: a row of empty values
    for i in bad:  # the raw text is kept; the columns are left empty
        r = rows[i]
        bad_text.append(r.text if isinstance(r, _BadLine) else delimiter.join(r))
        rows[i] = [""] * ncol
    cols = list(zip(*rows))
    columns = {h: np.array(c, dtype=str) for h, c in zip(header, cols)}
    return RawChunk(columns, len(rows), offset, bad_rows=np.array(bad, dtype=np.int64), bad_text=bad_text)


def _spans_lines(bad: list) -> bool:
    """Whether an invalid row pyarrow reported holds a line break (an unclosed quote that ran on
    over the following lines: the line engine must tell those lines apart)."""
    return any("\n" in text for _, text in bad)


def _read_csv_arrow(path: Path, header: list, chunk_rows: int, delimiter: str, encoding: str):
    """pyarrow's streaming CSV reader, all columns as strings, ragged rows put back in place."""
    pa, _ = _pyarrow()
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    bad: list[tuple[int, str]] = []

    def on_invalid(row):  # pragma: no cover - runs on a pyarrow thread coverage cannot see; tested
        bad.append((row.number, row.text))
        return "skip"

    ro = pcsv.ReadOptions(use_threads=False, block_size=1 << 22, column_names=header, skip_rows=1, encoding=encoding)
    # (a UTF-8 byte-order mark is on the header line, which skip_rows drops)
    po = pcsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid, ignore_empty_lines=False)
    co = pcsv.ConvertOptions(column_types={h: pa.string() for h in header}, strings_can_be_null=False)
    offset = 0  # row number (line - 2) of the next row
    with pa.input_stream(str(path), compression="detect") as stream:
        for batch in pcsv.open_csv(stream, ro, po, co):
            cols = dict(zip(header, batch.columns))
            # a line break inside a value: a quoted multi-line value, or an unclosed quote that
            # pyarrow let swallow the following lines; the line engine tells them apart, so this
            # batch and the rest of the file go through it
            if any(pc.any(pc.match_substring(c, "\n")).as_py() for c in cols.values()) or _spans_lines(bad):
                raise _QuoteAcrossLines()
            m, k = batch.num_rows, len(bad)
            bad_pos = np.zeros(0, dtype=np.int64)
            texts: list[str] = []
            if k:
                bad_pos = np.array([n - 2 - offset for n, _ in bad], dtype=np.int64)
                texts = [t for _, t in bad]
                bad.clear()
                if bad_pos.min() < 0 or bad_pos.max() >= m + k:  # pragma: no cover - pyarrow contract
                    raise RuntimeError("pyarrow reported an invalid CSV row outside the current block")
                is_bad = np.zeros(m + k, dtype=bool)
                is_bad[bad_pos] = True
                src = np.full(m + k, m, dtype=np.int64)  # index m is the "" pad
                src[~is_bad] = np.arange(m)
                take = pa.array(src)
                cols = {h: pa.concat_arrays([c, pa.array([""], pa.string())]).take(take) for h, c in cols.items()}
            n = m + k
            for s0 in range(0, n, chunk_rows):
                s1 = min(n, s0 + chunk_rows)
                sel = (bad_pos >= s0) & (bad_pos < s1)
                yield RawChunk(
                    {h: c.slice(s0, s1 - s0) for h, c in cols.items()},
                    s1 - s0,
                    offset + s0,
                    bad_rows=bad_pos[sel] - s0,
                    bad_text=[t for t, b in zip(texts, sel) if b],
                    origin=str(path),
                )
            offset += n
    if _spans_lines(bad):  # an unclosed quote that pyarrow let swallow the rest of the file
        raise _QuoteAcrossLines()
    if bad:  # invalid rows of a last block that held nothing else: one chunk of them
        pos = np.array([n - 2 - offset for n, _ in bad], dtype=np.int64)
        k = int(pos.max()) + 1
        if pos.min() < 0 or len(pos) != k:  # pragma: no cover - pyarrow contract
            raise RuntimeError("pyarrow reported invalid CSV rows out of order after the last block")
        empty_col = pa.array([""] * k, pa.string())
        yield RawChunk(
            {h: empty_col for h in header}, k, offset, bad_rows=pos, bad_text=[t for _, t in bad], origin=str(path)
        )


# ---- Parquet / Arrow ---------------------------------------------------------------------------
def _arrow_columns(batch) -> tuple[dict, dict]:
    pa, _ = _pyarrow()
    cols, missing = {}, {}
    for name, arr in zip(batch.schema.names, batch.columns):
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        if pa.types.is_decimal(arr.type):  # exact integers stay integers, others become float64
            arr = arr.cast(pa.int64() if arr.type.scale <= 0 else pa.float64(), safe=False)
        if arr.null_count:
            missing[name] = arr.is_null().to_numpy(zero_copy_only=False)
        cols[name] = arr.to_numpy(zero_copy_only=False)
    return cols, missing


def read_parquet(path, chunk_rows: int = DEFAULT_CHUNK_ROWS, columns=None) -> Iterator[RawChunk]:
    """Read a Parquet file in record batches of at most ``chunk_rows`` rows (bounded memory).

    Numeric columns without nulls reach NumPy without a copy; nulls are reported in
    ``RawChunk.missing``; Arrow timestamps arrive as datetime64.

    Raises
    ------
    ImportError
        If pyarrow is missing (``pip install 'telcoanalytics[io]'``).
    """
    chunk_rows = _check_chunk_rows(chunk_rows)
    _, pq = _pyarrow()
    pf = pq.ParquetFile(str(path))
    offset = 0
    for batch in pf.iter_batches(batch_size=chunk_rows, columns=columns):
        cols, missing = _arrow_columns(batch)
        yield RawChunk(cols, batch.num_rows, offset, missing, origin=str(path))
        offset += batch.num_rows


def read_arrow(table, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[RawChunk]:
    """Chunks of a pyarrow ``Table`` or ``RecordBatch``."""
    chunk_rows = _check_chunk_rows(chunk_rows)
    pa, _ = _pyarrow()
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if table.num_rows == 0:
        cols, missing = _arrow_columns(table)
        yield RawChunk(cols, 0, 0, missing)
        return
    offset = 0
    for b in table.to_batches(max_chunksize=chunk_rows):
        if b.num_rows:
            cols, missing = _arrow_columns(b)
            yield RawChunk(cols, b.num_rows, offset, missing)
            offset += b.num_rows


# ---- in-memory inputs -------------------------------------------------------------------------
def read_numpy(arr: np.ndarray, chunk_rows: int | None = None) -> Iterator[RawChunk]:
    """Chunks (views) of a 1-D structured array; one chunk when ``chunk_rows`` is None."""
    if not isinstance(arr, np.ndarray) or arr.dtype.names is None or arr.ndim != 1:
        raise ValueError(
            f"expected a 1-D NumPy structured array, got "
            f"{type(arr).__name__} {getattr(arr, 'dtype', '')} {getattr(arr, 'shape', '')}"
        )
    step = len(arr) if chunk_rows is None else _check_chunk_rows(chunk_rows)
    if len(arr) == 0:
        yield RawChunk(arr, 0, 0)
        return
    for start in range(0, len(arr), step):
        part = arr[start : start + step]
        yield RawChunk(part, len(part), start)


def read_dict(d: dict, chunk_rows: int | None = None) -> Iterator[RawChunk]:
    """Chunks of a dict of equal-length 1-D arrays (or lists)."""
    cols = {str(k): np.asarray(v) for k, v in d.items()}
    if not cols:
        raise ValueError("the dict of arrays has no columns")
    lens = {k: (len(v) if v.ndim == 1 else None) for k, v in cols.items()}
    bad = [k for k, n in lens.items() if n is None]
    if bad:
        raise ValueError(f"columns {bad} are not one-dimensional; pass one 1-D array per column")
    n = next(iter(lens.values()))
    if any(v != n for v in lens.values()):
        raise ValueError(f"columns have different lengths {lens}; every column needs one value per row")
    step = n if chunk_rows is None else _check_chunk_rows(chunk_rows)
    if n == 0:
        yield RawChunk(cols, 0, 0)
        return
    for start in range(0, n, step):
        part = {k: v[start : start + step] for k, v in cols.items()}
        yield RawChunk(part, min(step, n - start), start)


def read_records(records, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[RawChunk]:
    """Chunks of an iterable of dicts (one per record). The columns of a chunk are the union
    of its records' keys in order of first appearance; an absent key is a missing value.

    Raises
    ------
    ValueError
        If an item is not a dict (mapping).
    """
    chunk_rows = _check_chunk_rows(chunk_rows)
    it = iter(records)
    offset = 0
    while True:
        recs = list(itertools.islice(it, chunk_rows))
        if not recs:
            if offset == 0:
                yield RawChunk({}, 0, 0)
            return
        names: dict[str, None] = {}
        for j, r in enumerate(recs):
            if not hasattr(r, "keys"):
                raise ValueError(f"record {offset + j} is a {type(r).__name__}, expected a dict of field -> value")
            names.update(dict.fromkeys(r.keys()))
        cols = {}
        for c in names:
            vals = [r.get(c) for r in recs]
            a = None
            if not any(v is None for v in vals):
                try:
                    a = np.asarray(vals)
                except (ValueError, TypeError):  # ragged values: keep them as objects
                    a = None
            if a is None or a.ndim != 1:
                a = np.empty(len(vals), dtype=object)
                a[:] = vals
            cols[str(c)] = a
        yield RawChunk(cols, len(recs), offset)
        offset += len(recs)


def _is_dataframe(x) -> bool:
    return (
        hasattr(x, "columns")
        and hasattr(x, "__getitem__")
        and hasattr(x, "shape")
        and type(x).__module__.split(".")[0] in ("pandas", "polars")
    )


def iter_chunks(data, chunk_rows: int | None = None, fmt: str | None = None) -> Iterator[RawChunk]:
    """Dispatch ``data`` to the matching reader.

    Parameters
    ----------
    data : path, structured ndarray, dict of arrays, pyarrow Table/RecordBatch, pandas/polars
        DataFrame, or iterable of dicts
    chunk_rows : int, optional
        Maximum rows per chunk; None reads in-memory inputs as one chunk and files in chunks of
        ``DEFAULT_CHUNK_ROWS``.
    fmt : {"csv", "parquet"}, optional
        File format; by default taken from the file name's suffix.

    Raises
    ------
    ValueError
        For an unsupported input type or file suffix (naming the supported ones).
    FileNotFoundError
        If a path does not exist.
    """
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.exists():
            raise FileNotFoundError(f"input file {str(path)!r} does not exist")
        name = path.name.lower().removesuffix(".gz")
        kind = fmt or (
            "csv"
            if name.endswith((".csv", ".tsv", ".txt"))
            else "parquet"
            if name.endswith((".parquet", ".pq"))
            else None
        )
        rows = DEFAULT_CHUNK_ROWS if chunk_rows is None else chunk_rows
        if kind == "csv":
            return read_csv(path, rows)
        if kind == "parquet":
            return read_parquet(path, rows)
        raise ValueError(
            f"cannot tell the format of {str(path)!r}: use a .csv/.tsv(.gz) or .parquet/.pq "
            "suffix or pass fmt='csv' or fmt='parquet'"
        )
    if isinstance(data, np.ndarray):
        return read_numpy(data, chunk_rows)
    if isinstance(data, dict):
        return read_dict(data, chunk_rows)
    if type(data).__module__.startswith("pyarrow") and hasattr(data, "num_rows"):
        return read_arrow(data, DEFAULT_CHUNK_ROWS if chunk_rows is None else chunk_rows)
    if _is_dataframe(data):
        return read_dict({str(c): np.asarray(data[c]) for c in data.columns}, chunk_rows)
    if isinstance(data, (bytes, io.IOBase)) or not hasattr(data, "__iter__"):
        raise ValueError(
            f"unsupported input {type(data).__name__}; pass a file path (.csv/.parquet), a "
            "structured ndarray, a dict of arrays, a pyarrow Table, a DataFrame or an "
            "iterable of dicts"
        )
    return read_records(data, DEFAULT_CHUNK_ROWS if chunk_rows is None else chunk_rows)
