"""Arrival-order stream of the synthetic network: delays, duplicates, corrupted rows, writing.

Every clean record becomes available at a *base* time (a CDR at its ``start_ms``, or at its
release ``end_ms`` with ``cdr_arrival="end"``; a PM/flow/QoS row at the end of its measurement
interval ``ts_ms + interval``) and arrives after a delivery delay drawn from a mixture:

============  ===============================  ====================================
category      default share                    delay
============  ===============================  ====================================
on time       rest (~96.5%)                    U(0, 5 s)
out of order  ``p_out_of_order`` = 3%          U(5 s, 60 s)
late          ``p_late`` = 0.5%                U(60 s, ``max_late_ms`` = 15 min)
very late     ``p_very_late`` = 0.02%          U(1 h, 6 h)
============  ===============================  ====================================

Equipment rows of one element and interval share a delay (they come in one PM file).
On top of the clean rows the stream carries *extra* rows: duplicates of CDRs (same record id,
arriving 1 s - 5 min after the original) and corrupted copies of clean rows of every source
(``CORRUPT_KINDS``) arriving with their original. So for every source:
``n_arrived == n_clean + n_duplicates + n_corrupted``, and the clean rows that arrive are exactly
the ground-truth arrays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from telcoanalytics.records import DTYPES, ELEMENT_FIELD, METRIC_CODE, NO_TIME_MS, SOURCES, TIME_FIELD
from telcoanalytics.synth._kernels import expand_groups, group_starts, nth_true, stable_argsort
from telcoanalytics.synth.sources import mix63

# Corruption kinds are named after the quarantine reason a validator should give them
# (telcoanalytics.ingest.quarantine.REASONS); each corrupted row has exactly one problem.
CORRUPT_KINDS: tuple[str, ...] = (
    "non_finite",
    "time_out_of_range",
    "end_before_start",
    "answer_outside_call",
    "bad_cause",
    "out_of_domain",
    "negative_counter",
    "unknown_element",
)
SOURCE_CORRUPTIONS: dict[str, tuple[str, ...]] = {
    "cdr": (
        "time_out_of_range",
        "end_before_start",
        "answer_outside_call",
        "bad_cause",
        "out_of_domain",
        "negative_counter",
        "unknown_element",
    ),
    "equip": ("non_finite", "time_out_of_range", "out_of_domain", "negative_counter", "unknown_element"),
    "flow": ("time_out_of_range", "negative_counter", "unknown_element"),
    "qos": ("non_finite", "time_out_of_range", "out_of_domain", "unknown_element"),
    "complaint": ("time_out_of_range", "out_of_domain", "unknown_element"),
}
ORIGIN_CLEAN = 0
ORIGIN_DUPLICATE = 1
ORIGIN_CORRUPTED = 2  # origin code of kind CORRUPT_KINDS[i] is ORIGIN_CORRUPTED + i
UNKNOWN_ELEMENT_BASE = 9_000_000_000_000
TIME_TOO_EARLY_MS = 86_400_000  # 1970-01-02
TIME_TOO_LATE_MS = 7_258_118_400_000  # 2200-01-01
UNPARSEABLE_TOKENS = ("n/a", "#VALUE!", "1.2.3", "abc", "12;5", "0x1G", "--")


@dataclass
class SourceStream:
    """Arrival data of one source: clean rows by arrival plus the extra (duplicate/corrupt) rows."""

    clean_arrival_sorted: np.ndarray  # int64, arrival times of the clean rows, ascending
    clean_order: np.ndarray  # int64, clean row index of each entry above
    extra: np.ndarray  # canonical dtype, sorted by arrival
    extra_arrival: np.ndarray  # int64 ascending
    extra_origin: np.ndarray  # int8 origin code per extra row


def _delays(n: int, cfg, rng: np.random.Generator):
    """Delivery delay (ms) and category (0 on time, 1 out of order, 2 late, 3 very late)."""
    u = rng.random(n)
    p1, p2, p3 = cfg.p_out_of_order, cfg.p_late, cfg.p_very_late
    cat = np.select([u < p3, u < p3 + p2, u < p3 + p2 + p1], [3, 2, 1], 0).astype(np.int8)
    lo = np.array([0, 5_000, 60_000, 3_600_000], dtype=np.float64)[cat]
    hi = np.array([5_000, 60_000, cfg.max_late_ms, 21_600_000], dtype=np.float64)[cat]
    return np.round(lo + (hi - lo) * rng.random(n)).astype(np.int64), cat


def _corrupt_pool(source: str, a: np.ndarray, kind: str):
    """Rows of ``a`` a corruption of ``kind`` may copy, as a boolean mask (None: any row)."""
    if source == "equip" and kind == "negative_counter":
        m = a["metric_id"]
        pool = (m == METRIC_CODE["error_count"]) | (m == METRIC_CODE["unavailable_s"])
        return pool if pool.any() else None
    if source == "cdr" and kind == "answer_outside_call":
        pool = a["answer_ms"] != NO_TIME_MS
        return pool if pool.any() else None
    return None


def _corrupt(source: str, rows: np.ndarray, kinds: list, rng) -> None:
    """Damage ``rows`` in place, row i according to the kind name ``kinds[i]``.

    ``non_finite``: NaN or +-inf in a required float (equip ``value``; QoS latency, jitter or
    loss). ``time_out_of_range``: event time moved to 1970 or after 2200 (a CDR keeps its
    internal durations). ``end_before_start``: CDR ``end_ms`` up to a minute before ``start_ms``
    (and unanswered). ``answer_outside_call``: answer after the release. ``bad_cause``: cause 0
    or 200. ``out_of_domain``: CDR service 9, equip metric id 99, complaint category 99, QoS
    negative latency/jitter or loss above 100 %. ``negative_counter``: negative bytes (CDR, flow), error count or
    unavailable seconds. ``unknown_element``: element id ``UNKNOWN_ELEMENT_BASE + i``.
    """
    tf, ef = TIME_FIELD[source], ELEMENT_FIELD[source]
    for i, k in enumerate(kinds):
        if k == "non_finite":
            f = "value" if source == "equip" else ("latency_ms", "jitter_ms", "loss_pct")[rng.integers(3)]
            rows[f][i] = (np.nan, np.inf, -np.inf)[rng.integers(3)]
        elif k == "time_out_of_range":
            new_t = (
                TIME_TOO_EARLY_MS * int(rng.integers(1, 1000))
                if rng.random() < 0.5
                else TIME_TOO_LATE_MS + int(rng.integers(0, 10**10))
            )
            delta = new_t - int(rows[tf][i])
            rows[tf][i] = new_t
            if source == "cdr":
                rows["end_ms"][i] += delta
                if rows["answer_ms"][i] != NO_TIME_MS:
                    rows["answer_ms"][i] += delta
        elif k == "end_before_start":
            rows["end_ms"][i] = rows["start_ms"][i] - int(rng.integers(1, 60_000))
            rows["answer_ms"][i] = NO_TIME_MS
        elif k == "answer_outside_call":
            rows["answer_ms"][i] = rows["end_ms"][i] + int(rng.integers(1, 60_000))
        elif k == "bad_cause":
            rows["cause"][i] = 0 if rng.random() < 0.5 else 200
        elif k == "out_of_domain":
            if source == "cdr":
                rows["service"][i] = 9
            elif source == "equip":
                rows["metric_id"][i] = 99
            elif source == "complaint":
                rows["category"][i] = 99
            else:
                j = int(rng.integers(3))
                if j == 0:
                    rows["latency_ms"][i] = -abs(rows["latency_ms"][i]) - 1.0
                elif j == 1:
                    rows["jitter_ms"][i] = -abs(rows["jitter_ms"][i]) - 0.5
                else:
                    rows["loss_pct"][i] = 100.0 + float(rng.uniform(1.0, 50.0))
        elif k == "negative_counter":
            if source == "equip":
                rows["value"][i] = -abs(rows["value"][i]) - 1.0
            else:
                f = "bytes_down" if source == "cdr" else ("bytes", "packets", "flows")[rng.integers(3)]
                rows[f][i] = -abs(int(rows[f][i])) - 1
        else:  # unknown_element
            rows[ef][i] = UNKNOWN_ELEMENT_BASE + i


class _GroupArrival:
    """Arrival times of rows that arrive in groups: ``arrival[idx]`` is the arrival of the group
    holding each row (groups start at the ascending ``first``; ``g_arr`` per group)."""

    def __init__(self, first: np.ndarray, g_arr: np.ndarray):
        self.first, self.g_arr = first, g_arr

    def __getitem__(self, idx):
        return self.g_arr[np.searchsorted(self.first, idx, side="right") - 1]


def build_streams(arrays: dict, cfg, id_salt: int, rng: np.random.Generator):
    """Arrival times, duplicates and corrupted rows for every source.

    Returns
    -------
    (dict source -> SourceStream, stats dict)
    """
    streams: dict[str, SourceStream] = {}
    stats: dict = {
        k: {}
        for k in (
            "n",
            "n_arrived",
            "n_duplicates",
            "n_corrupted",
            "n_on_time",
            "n_out_of_order",
            "n_late",
            "n_very_late",
        )
    }
    for source in [s for s in SOURCES if s in arrays]:  # complaints only when generated
        a = arrays[source]
        n = len(a)
        if source == "cdr":
            base = a["end_ms"] if cfg.cdr_arrival == "end" else a["start_ms"]
            delay, cat = _delays(n, cfg, rng)
        elif source == "complaint":  # a ticket is exported when filed
            base = a["ts_ms"]
            delay, cat = _delays(n, cfg, rng)
        else:
            if source == "equip" and n:
                # one delay per PM file (element, interval): sort the files, then expand to rows
                ts = a["ts_ms"]
                first = group_starts(ts, a["element_id"])
                size = np.diff(np.append(first, n))
                d, c = _delays(len(first), cfg, rng)
                g_arr = ts[first] + cfg.pm_interval_ms + d
                order, arrival_sorted = expand_groups(first, size, stable_argsort(g_arr), g_arr, n)
                # a row's arrival is its file's (looked up for the few rows copied below)
                arrival = _GroupArrival(first, g_arr)
                cat = (c, size)
            else:
                base = a["ts_ms"] + cfg.pm_interval_ms
                delay, cat = _delays(n, cfg, rng)
        if source != "equip" or not n:
            arrival = base + delay
            order = stable_argsort(arrival)
            arrival_sorted = arrival[order]
        extras, ext_arr, ext_org = [], [], []
        n_dup = 0
        if source == "cdr" and n and cfg.p_duplicate > 0:
            n_dup = min(n, max(1, int(round(cfg.p_duplicate * n))))
            idx = np.sort(rng.choice(n, n_dup, replace=False))
            extras.append(a[idx])
            ext_arr.append(arrival[idx] + rng.integers(1_000, 300_000, n_dup))
            ext_org.append(np.full(n_dup, ORIGIN_DUPLICATE, np.int8))
        allowed = SOURCE_CORRUPTIONS[source]
        n_cor = 0
        if n and cfg.p_corrupt > 0:
            n_cor = max(len(allowed), int(round(cfg.p_corrupt * n)))
            kind_of = rng.permutation(np.arange(n_cor) % len(allowed))
            idx = np.empty(n_cor, dtype=np.int64)
            for j, kind in enumerate(allowed):
                sel = kind_of == j
                pool = _corrupt_pool(source, a, kind)
                idx[sel] = (
                    rng.integers(0, n, int(sel.sum()))
                    if pool is None
                    else nth_true(pool, rng.integers(0, np.count_nonzero(pool), int(sel.sum())))
                )
            o = np.argsort(idx, kind="stable")
            idx, kind_of = idx[o], kind_of[o]
            rows = a[idx].copy()
            if source == "cdr":  # fresh record ids, distinct from every clean id (mix63 is bijective)
                rows["record_id"] = mix63(np.uint64(id_salt) + np.uint64(n) + np.arange(n_cor, dtype=np.uint64))
            _corrupt(source, rows, [allowed[j] for j in kind_of], rng)
            extras.append(rows)
            ext_arr.append(arrival[idx])
            codes = np.array([CORRUPT_KINDS.index(k) for k in allowed])[kind_of]
            ext_org.append((ORIGIN_CORRUPTED + codes).astype(np.int8))
        extra = np.concatenate(extras) if extras else np.empty(0, DTYPES[source])
        e_arr = np.concatenate(ext_arr) if ext_arr else np.empty(0, np.int64)
        e_org = np.concatenate(ext_org) if ext_org else np.empty(0, np.int8)
        eo = np.argsort(e_arr, kind="stable")
        streams[source] = SourceStream(arrival_sorted, order, extra[eo], e_arr[eo], e_org[eo])
        kind_counts = np.bincount(e_org[e_org >= ORIGIN_CORRUPTED] - ORIGIN_CORRUPTED, minlength=len(CORRUPT_KINDS))
        stats["n"][source] = int(n)
        stats["n_arrived"][source] = int(n + len(extra))
        stats["n_duplicates"][source] = int(n_dup)
        stats["n_corrupted"][source] = {k: int(kind_counts[CORRUPT_KINDS.index(k)]) for k in SOURCE_CORRUPTIONS[source]}
        if isinstance(cat, tuple):  # a category per group of rows: (category, rows)
            counts = np.bincount(cat[0], weights=cat[1], minlength=4).astype(np.int64)
        else:
            counts = np.bincount(cat, minlength=4)
        stats["n_on_time"][source] = int(counts[0])
        stats["n_out_of_order"][source] = int(counts[1])
        stats["n_late"][source] = int(counts[2] + counts[3])
        stats["n_very_late"][source] = int(counts[3])
    for source in [s for s in SOURCES if s not in arrays]:  # not generated: zero counts
        for k in stats:
            stats[k][source] = {c: 0 for c in SOURCE_CORRUPTIONS[source]} if k == "n_corrupted" else 0
    return streams, stats


def iter_source(clean: np.ndarray, st: SourceStream, edges: np.ndarray, with_origin: bool = False):
    """Yield ``(k, rows[, arrival, origin])`` for every non-empty arrival window ``[edges[k], edges[k+1])``."""
    ci = np.searchsorted(st.clean_arrival_sorted, edges, side="left")
    ei = np.searchsorted(st.extra_arrival, edges, side="left")
    for k in range(len(edges) - 1):
        c0, c1, e0, e1 = int(ci[k]), int(ci[k + 1]), int(ei[k]), int(ei[k + 1])
        if c1 == c0 and e1 == e0:
            continue
        rows = _merged_rows(clean, st, c0, c1, e0, e1)
        if not with_origin:
            yield k, rows
            continue
        if e1 > e0:
            # the extra rows merged into the clean run; ties: clean first (a stable merge)
            pos = _extra_positions(st, c0, c1, e0, e1)
            is_extra = np.zeros(len(rows), bool)
            is_extra[pos] = True
            arr = np.empty(len(rows), np.int64)
            arr[pos] = st.extra_arrival[e0:e1]
            arr[~is_extra] = st.clean_arrival_sorted[c0:c1]
            org = np.zeros(len(rows), np.int8)
            org[pos] = st.extra_origin[e0:e1]
        else:
            arr = st.clean_arrival_sorted[c0:c1]
            org = np.zeros(c1 - c0, np.int8)
        yield k, rows, arr, org


def _extra_positions(st: SourceStream, c0: int, c1: int, e0: int, e1: int) -> np.ndarray:
    """Where the extra rows ``[e0, e1)`` land among the clean rows ``[c0, c1)`` merged by arrival
    (ties: clean first): clean rows arriving at or before each, plus the extras before it."""
    return np.searchsorted(st.clean_arrival_sorted[c0:c1], st.extra_arrival[e0:e1], side="right") + np.arange(e1 - e0)


def _merged_rows(clean: np.ndarray, st: SourceStream, c0: int, c1: int, e0: int, e1: int) -> np.ndarray:
    """Clean rows ``[c0, c1)`` of the arrival order with the extra rows ``[e0, e1)`` merged in (ties:
    clean first), built in one output array (what ``np.insert`` gives, without its copies)."""
    order = st.clean_order[c0:c1]
    if e1 == e0:
        return np.take(clean, order)  # (several times faster than clean[order] on structured rows)
    pos = _extra_positions(st, c0, c1, e0, e1)
    out = np.empty(len(order) + e1 - e0, dtype=clean.dtype)
    out[pos] = st.extra[e0:e1]
    # clean rows fill the runs between the extras
    starts = np.concatenate(([0], pos + 1))
    ends = np.concatenate((pos, [len(out)]))
    taken = 0
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        if b > a:
            np.take(clean, order[taken : taken + b - a], out=out[a:b])
            taken += b - a
    return out


def arrival_batches(arrays: dict, streams: dict, batch_ms: int, from_ms: int | None = None, start: int = 0):
    """Yield ``(source, rows)`` in arrival order: exactly :meth:`SynthDay.raw_batches`'s batches
    (one per non-empty source and arrival window of ``batch_ms``, windows in order, sources in
    ``SOURCES`` order within a window), without those whose first row arrives before ``from_ms``
    and without the first ``start`` of the rest; the batches left out are not built.

    ``arrays`` maps each generated source to its clean rows, ``streams`` to its
    :class:`SourceStream` (both of a :class:`~telcoanalytics.synth.network.SynthDay`).

    Raises
    ------
    ValueError
        If ``batch_ms`` is not a positive integer.
    """
    if int(batch_ms) != batch_ms or batch_ms < 1:
        raise ValueError(f"batch_ms must be a positive integer of milliseconds, got {batch_ms!r}")
    if int(start) != start or start < 0:
        raise ValueError(f"start must be a non-negative number of batches, got {start!r}")
    names = [s for s in SOURCES if s in streams]
    edges = arrival_edges(streams, int(batch_ms))
    win_parts, src_parts = [], []
    bounds = []
    for j, s in enumerate(names):
        st = streams[s]
        ci = np.searchsorted(st.clean_arrival_sorted, edges, side="left")
        ei = np.searchsorted(st.extra_arrival, edges, side="left")
        has_c, has_e = ci[1:] > ci[:-1], ei[1:] > ei[:-1]
        keep = has_c | has_e
        if from_ms is not None:
            # first arrival of each window's merged rows (ties: clean first, so the minimum)
            big = np.iinfo(np.int64).max
            fc = np.where(has_c, st.clean_arrival_sorted[np.minimum(ci[:-1], len(st.clean_arrival_sorted) - 1)], big)
            fe = np.where(has_e, st.extra_arrival[np.minimum(ei[:-1], len(st.extra_arrival) - 1)], big)
            keep &= np.minimum(fc, fe) >= from_ms
        k = np.flatnonzero(keep)
        win_parts.append(k)
        src_parts.append(np.full(len(k), j))
        bounds.append((ci, ei))
    win = np.concatenate(win_parts)
    src = np.concatenate(src_parts)
    o = np.lexsort((src, win))[int(start) :]
    for k, j in zip(win[o].tolist(), src[o].tolist(), strict=True):
        s = names[j]
        ci, ei = bounds[j]
        yield s, _merged_rows(arrays[s], streams[s], ci[k], ci[k + 1], ei[k], ei[k + 1])


def arrival_edges(streams: dict, batch_ms: int) -> np.ndarray:
    """Window edges (multiples of ``batch_ms``) covering every arrival of every source."""
    lo, hi = None, None
    for st in streams.values():
        for arr in (st.clean_arrival_sorted, st.extra_arrival):
            if len(arr):
                lo = arr[0] if lo is None else min(lo, arr[0])
                hi = arr[-1] if hi is None else max(hi, arr[-1])
    if lo is None:
        return np.zeros(1, np.int64)
    first = (int(lo) // batch_ms) * batch_ms
    return np.arange(first, int(hi) + batch_ms + 1, batch_ms, dtype=np.int64)


# ---- writing ---------------------------------------------------------------------------------
def _require_pyarrow():
    try:
        import pyarrow  # noqa: F401
        import pyarrow.csv  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:  # pragma: no cover - pyarrow is installed in the test env
        raise ImportError(
            "writing Parquet needs pyarrow; install it with `pip install telcoanalytics[io]` "
            "(or `pip install pyarrow`), or write CSV with fmt='csv'"
        ) from exc
    return pyarrow


def _table(rows: np.ndarray):
    import pyarrow as pa

    return pa.table({f: np.ascontiguousarray(rows[f]) for f in rows.dtype.names})


def _csv_text(rows: np.ndarray) -> str:
    """CSV lines (no header) for ``rows``; floats in shortest round-trip repr, nan/inf as text."""
    cols = []
    for f in rows.dtype.names:
        v = rows[f]
        if v.dtype.kind == "f":
            cols.append(
                [
                    repr(float(x)) if np.isfinite(x) else ("nan" if np.isnan(x) else ("inf" if x > 0 else "-inf"))
                    for x in v
                ]
            )
        else:
            cols.append([str(int(x)) for x in v])
    return "".join(",".join(r) + "\n" for r in zip(*cols)) if len(rows) else ""


def write_dataset(day, path, fmt: str = "parquet", raw: bool = True, chunk_ms: int = 3_600_000) -> dict:
    """Write ``day`` to ``path``: one file per source, ``topology.csv``, ``labels.json``.

    See :meth:`telcoanalytics.synth.network.SynthDay.write`.
    """
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"fmt must be 'parquet' or 'csv', got {fmt!r}")
    if fmt == "parquet":
        _require_pyarrow()
        import pyarrow.parquet as pq
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(day.config.seed + 991)
    manifest: dict = {"format": fmt, "raw": bool(raw), "files": {}}
    for source in day.sources:
        clean = getattr(day, source)
        fname = out / f"{source}.{fmt}"
        n_rows = 0
        n_bad = 0
        if raw:
            st = day._streams[source]
            chunks = (rows for _, rows in iter_source(clean, st, arrival_edges({source: st}, chunk_ms)))
        else:
            step = 1_000_000
            chunks = (clean[i : i + step] for i in range(0, max(len(clean), 1), step))
        if fmt == "parquet":
            writer = pq.ParquetWriter(str(fname), _table(clean[:0]).schema)
            try:
                for rows in chunks:
                    writer.write_table(_table(rows))
                    n_rows += len(rows)
            finally:
                writer.close()
        else:
            n_bad_target = int(day.config.csv_unparseable) if len(clean) else 0
            with open(fname, "w", newline="") as fh:
                fh.write(",".join(clean.dtype.names) + "\n")
                for rows in chunks:
                    _write_csv_rows(fh, rows)
                    n_rows += len(rows)
                    if n_bad < n_bad_target and rng.random() < 0.3:
                        fh.write(_unparseable_line(clean, rng, day._fresh_record_id(n_bad)))
                        n_bad += 1
                while n_bad < n_bad_target:
                    fh.write(_unparseable_line(clean, rng, day._fresh_record_id(n_bad)))
                    n_bad += 1
        manifest["files"][source] = {"file": fname.name, "rows": n_rows + n_bad, "unparseable": n_bad}
    topo = day.topology_table
    with open(out / "topology.csv", "w", newline="") as fh:
        fh.write(",".join(topo.dtype.names) + "\n")
        fh.write(_csv_text(topo))
    manifest["files"]["topology"] = {"file": "topology.csv", "rows": len(topo)}
    doc = day.labels_document()
    doc["manifest"] = manifest
    with open(out / "labels.json", "w") as fh:
        json.dump(doc, fh, indent=1)
    return manifest


def _write_csv_rows(fh, rows: np.ndarray) -> None:
    try:
        import pyarrow.csv as pacsv
    except ImportError:  # pragma: no cover - fallback when pyarrow is missing
        fh.write(_csv_text(rows))
        return
    import io

    buf = io.BytesIO()
    pacsv.write_csv(_table(rows), buf, write_options=pacsv.WriteOptions(include_header=False))
    fh.write(buf.getvalue().decode("ascii"))


def _unparseable_line(clean: np.ndarray, rng, record_id: int) -> str:
    """A copy of a random clean row with one cell replaced by text that is not a number.

    A CDR copy gets the fresh ``record_id`` so it never doubles as a duplicate.
    """
    row = clean[int(rng.integers(len(clean)))].copy()
    if "record_id" in clean.dtype.names:
        row["record_id"] = record_id
    cells = _csv_text(np.array([row], dtype=clean.dtype)).rstrip("\n").split(",")
    j = int(rng.integers(len(cells)))
    cells[j] = UNPARSEABLE_TOKENS[int(rng.integers(len(UNPARSEABLE_TOKENS)))]
    return ",".join(cells) + "\n"
