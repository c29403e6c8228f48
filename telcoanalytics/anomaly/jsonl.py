"""Anomaly rows as JSON lines in one compiled pass (the findings log of a replay or a real-time run).

:func:`json_text_of_records` writes what ``json.dumps(dict(zip(names, row)))`` writes for each row
(field order kept, NaN as ``null``), joined by newlines: integers, booleans and plain-ASCII strings
are formatted by :func:`kernels.anomaly_events.json_text`; floats are Python's own ``repr``.
"""

from __future__ import annotations

import functools
import json

import numpy as np

from kernels import anomaly_events as _ke

_KINDS = {"i": _ke.JSON_INT, "u": _ke.JSON_INT, "b": _ke.JSON_BOOL, "f": _ke.JSON_FLOAT, "U": _ke.JSON_STR}


@functools.lru_cache(maxsize=16)
def _layout(dtype: np.dtype) -> tuple | None:
    """(kind, offset, width, column, prefix bytes, prefix starts, int fields, float fields) of a
    structured dtype, or None when a field is of a type the kernel does not format."""
    if not dtype.names:
        return None  # no fields: "{}" per row, left to the general path
    kinds, offs, widths, cols, ints, floats = [], [], [], [], [], []
    for name in dtype.names:
        ft, off = dtype.fields[name][:2]
        k = _KINDS.get(ft.kind)
        if k is None or ft.shape or (ft.kind == "u" and ft.itemsize == 8) or (ft.kind == "U" and ft.byteorder == ">"):
            return None  # sub-arrays, unsigned 64-bit (beyond int64), big-endian text, other kinds
        group = floats if k == _ke.JSON_FLOAT else ints if k != _ke.JSON_STR else None
        cols.append(len(group) if group is not None else 0)
        if group is not None:
            group.append(name)
        kinds.append(k)
        offs.append(off)
        widths.append(ft.itemsize // 4 if k == _ke.JSON_STR else 0)
    texts = [("{" if i == 0 else ", ") + json.dumps(n) + ": " for i, n in enumerate(dtype.names)]
    pre = [t.encode() for t in texts]
    pstart = np.cumsum([0] + [len(p) for p in pre]).astype(np.int64)
    prefix = np.frombuffer(b"".join(pre), dtype=np.uint8).copy()
    arr = [np.array(x, dtype=np.int64) for x in (kinds, offs, widths, cols)]
    return (*arr, prefix, pstart, tuple(ints), tuple(floats))


def json_text_of_records(rows: np.ndarray) -> str | None:
    """The JSON lines of a structured array's rows, newline-separated (no newline after the last;
    ``""`` for no rows): exactly ``"\\n".join(json.dumps(dict(zip(names, r))) for r in
    rows.tolist())`` with NaN as ``null``. None when a field is of a type this path does not
    format (sub-arrays, bytes, unsigned 64-bit, objects, no fields, ...) or a string needs JSON escaping
    (control characters, quotes, backslashes, non-ASCII): format those rows another way.

    Examples
    --------
    >>> a = np.array([(1, 0.5, "x", True), (-20, np.nan, "yz", False)],
    ...              dtype=[("k", "i8"), ("v", "f8"), ("s", "U4"), ("b", "?")])
    >>> print(json_text_of_records(a))
    {"k": 1, "v": 0.5, "s": "x", "b": true}
    {"k": -20, "v": null, "s": "yz", "b": false}
    >>> json_text_of_records(np.array(["é"], dtype=[("s", "U2")])) is None
    True
    """
    if rows.dtype.names is None:
        raise ValueError(f"json_text_of_records needs a structured array, got dtype {rows.dtype}")
    n = len(rows)
    if not n:
        return ""
    lay = _layout(rows.dtype)
    if lay is None:
        return None
    kind, off, width, col, prefix, pstart, int_names, float_names = lay
    r = rows if rows.flags.c_contiguous else np.ascontiguousarray(rows)
    ints = np.empty((len(int_names), n), dtype=np.int64)
    for j, name in enumerate(int_names):
        ints[j] = r[name]
    texts = []
    for name in float_names:
        texts += map(repr, r[name].tolist())
    ftext = np.frombuffer(",".join(texts).encode(), dtype=np.uint8)
    # room: prefixes, 20 characters an integer, a string's width and quotes, a float's text (+6 for
    # "Infinity" / "null" in place of "inf" / "nan"), braces and newlines
    cap = n * (int(pstart[-1]) + 20 * len(int_names) + int(width.sum()) + 2 * len(width) + 6 * len(float_names) + 2)
    out = np.empty(cap + len(ftext), dtype=np.uint8)
    raw = r.view(np.uint8).reshape(n, r.dtype.itemsize)
    m = _ke.json_text(raw, kind, off, width, col, ints, ftext, len(float_names), prefix, pstart, out)
    if m < 0:
        return None
    return out[:m].tobytes().decode("ascii")
