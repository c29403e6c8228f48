"""Versioned input schemas per source, and their mapping to the canonical record dtypes.

Every source (``cdr``, ``equip``, ``flow``, ``qos``) has had several export formats over the
years. A :class:`SchemaVersion` says, for each canonical field of ``records.DTYPES[source]``,
where its value comes from in that format: a column (maybe renamed), a column in another unit
(``scale``), a duration added to another canonical field (``plus``), an ISO time text, a code
name looked up in a table, or a constant default (a field added after that version). Columns
that a version carries but the canonical record no longer has are listed in ``dropped``.

The version of an input is detected from its column names (the unique best match) or declared.
An unknown version, an ambiguous match, or columns that no version can map raise
:class:`SchemaError`, naming the columns and the known versions.

Built-in versions
-----------------
=======  =====  ================================================================================
source   ver    format
=======  =====  ================================================================================
cdr      1      legacy switch export: ``start_s``/``answer_s`` float seconds, ``duration_s``,
                ``cell_id``, service as a name, ids as digit strings, a ``switch_id`` since
                removed, no IMSI (``imsi_hash`` = 0)
cdr      2      milliseconds and ``end_ms``; ``cell_id`` renamed ``element_id``; ``imsi`` as a
                digit string; ``service_id`` code; ``release_cause``
cdr      3      canonical (``CDR_DTYPE`` names); ``answer_ms`` optional (default -1)
equip    1      ``timestamp`` ISO-8601 text, ``ne_id`` digit string, ``counter`` metric name
equip    2      ``ts_s`` float seconds, ``element_id``, ``metric_id``; a ``unit`` column since removed
equip    3      canonical (``EQUIP_DTYPE`` names)
flow     1      ``ts_s`` seconds, ``src``/``dst``, ``octets``, ``pkts``; no flow count (default 1)
flow     2      ``ts_ms``, element ids, ``kbytes`` (x1000 -> bytes), ``packets``, ``flows``
flow     3      canonical (``FLOW_DTYPE`` names)
qos      1      ``ts_s`` seconds, ``delay_ms``, ``jitter_ms``, ``loss_ratio`` 0..1 (x100 -> pct),
                no MOS (NaN)
qos      2      ``ts_ms``, ``latency_us``/``jitter_us`` microseconds (x0.001), ``loss_pct``,
                optional ``mos``
qos      3      canonical (``QOS_DTYPE`` names); ``mos`` optional (default NaN)
=======  =====  ================================================================================
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

# status of a parsed value (0 = ok); the same numbers as quarantine.REASON_CODE
from telcoanalytics.ingest.quarantine import REASON_CODE
from telcoanalytics.records import COMPLAINT_CATEGORIES, DTYPES, METRICS, NO_TIME_MS, SERVICES

_OK = 0
_UNPARSEABLE = REASON_CODE["unparseable"]
_MISSING = REASON_CODE["missing_value"]
_NON_FINITE = REASON_CODE["non_finite"]
_I8_LIMIT = 9.2e18  # floats beyond this do not fit int64

PARSE_KINDS = ("number", "iso", "code")


class SchemaError(ValueError):
    """The input's columns or the declared version cannot be mapped to a canonical schema."""


@dataclass(frozen=True)
class Rule:
    """Where one canonical field comes from in one schema version.

    Parameters
    ----------
    column : str or None
        Input column; None means the field did not exist in this version and is filled with
        ``default``.
    scale : float
        Unit change: canonical value = parsed value * ``scale`` (e.g. 1000 for seconds -> ms,
        100 for a 0..1 ratio -> percent). Numeric values become int64 by rounding to nearest
        when ``scale != 1``; with ``scale == 1`` a non-integral value for an integer field is
        ``unparseable``. datetime64 input is converted to ms and ignores ``scale``.
    plus : str or None
        Canonical field added after scaling, e.g. ``end_ms = start_ms + 1000 * duration_s`` is
        ``Rule("duration_s", scale=1000, plus="start_ms")``. A negative value of such a column
        is reported as ``negative_duration``.
    default : scalar or None
        Value when the column is absent, or a value in it is missing (empty, None, null, NaN).
        None makes the column required.
    parse : {"number", "iso", "code"}
        ``number`` accepts numeric arrays and text; ``iso`` ISO-8601 text or datetime64 (to ms
        UTC; naive times are UTC); ``code`` names from ``codes`` (or integer codes).
    codes : tuple of str
        Code table for ``parse="code"`` (the name's index is its code).
    """

    column: str | None = None
    scale: float = 1.0
    plus: str | None = None
    default: object = None
    parse: str = "number"
    codes: tuple[str, ...] = ()

    def __post_init__(self):
        if self.parse not in PARSE_KINDS:
            raise ValueError(f"Rule.parse must be one of {PARSE_KINDS}, got {self.parse!r}")
        if self.column is None and self.default is None:
            raise ValueError("a Rule without a column needs a default (the value of a field added later)")
        if self.parse == "code" and not self.codes:
            raise ValueError(f"Rule({self.column!r}, parse='code') needs a codes table")
        if not (isinstance(self.scale, (int, float)) and math.isfinite(self.scale) and self.scale != 0):
            raise ValueError(f"Rule({self.column!r}).scale must be a finite non-zero number, got {self.scale!r}")


@dataclass(frozen=True)
class SchemaVersion:
    """One historical input format of a source.

    Parameters
    ----------
    source : str
        One of ``records.SOURCES``.
    version : int
        Version number, unique per source (higher is newer).
    fields : dict canonical field -> Rule
        A rule for every field of ``records.DTYPES[source]``.
    dropped : tuple of str
        Columns of this version that the canonical record does not keep (removed fields);
        they are accepted and ignored.
    note : str
        One line describing the format.

    Raises
    ------
    SchemaError
        If a canonical field has no rule, a rule names an unknown field, or ``plus`` refers to
        a field that is itself derived with ``plus``.
    """

    source: str
    version: int
    fields: dict
    dropped: tuple[str, ...] = ()
    note: str = ""
    _identity: bool = field(init=False, repr=False, compare=False, default=False)

    def __post_init__(self):
        if self.source not in DTYPES:
            raise SchemaError(f"unknown source {self.source!r}; known sources: {', '.join(DTYPES)}")
        names = DTYPES[self.source].names
        missing = [f for f in names if f not in self.fields]
        extra = [f for f in self.fields if f not in names]
        if missing or extra:
            raise SchemaError(
                f"{self.source} v{self.version}: rules must cover exactly the canonical fields "
                f"{names}; missing {missing}, unknown {extra}"
            )
        for f, r in self.fields.items():
            if not isinstance(r, Rule):
                raise SchemaError(f"{self.source} v{self.version}: fields[{f!r}] must be a Rule, got {r!r}")
            if r.plus is not None and (r.plus not in names or self.fields[r.plus].plus is not None):
                raise SchemaError(
                    f"{self.source} v{self.version}: fields[{f!r}].plus={r.plus!r} must name a "
                    "canonical field that is not itself derived with plus"
                )
        cols = [r.column for r in self.fields.values() if r.column is not None]
        if len(set(cols)) != len(cols):
            raise SchemaError(f"{self.source} v{self.version}: a column feeds two fields: {cols}")
        ident = all(
            r.column == f and r.scale == 1 and r.plus is None and r.parse == "number" for f, r in self.fields.items()
        )
        object.__setattr__(self, "_identity", ident)

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Columns that must be present."""
        return tuple(r.column for r in self.fields.values() if r.column is not None and r.default is None)

    @property
    def optional_columns(self) -> tuple[str, ...]:
        """Columns that may be present: defaulted ones and ``dropped``."""
        return tuple(r.column for r in self.fields.values() if r.column is not None and r.default is not None) + tuple(
            self.dropped
        )

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required_columns + self.optional_columns

    def describe(self) -> str:
        opt = [c for c in self.optional_columns]
        return (
            f"v{self.version} ({', '.join(self.required_columns)}"
            + (f"; optional {', '.join(opt)}" if opt else "")
            + ")"
        )

    def derived_from_duration(self, fieldname: str) -> bool:
        """True when ``fieldname`` is computed as another field plus a duration column."""
        return self.fields[fieldname].plus is not None

    # ---- mapping ----------------------------------------------------------------------------
    def to_canonical(self, columns: dict, n: int, missing: dict | None = None):
        """Map raw input columns to a canonical array.

        Parameters
        ----------
        columns : dict str -> array (n,)
            Raw input columns (numeric, text or datetime64). Extra columns are ignored.
        n : int
            Number of rows.
        missing : dict str -> bool array (n,), optional
            Values known to be absent (e.g. Arrow nulls).

        Returns
        -------
        data : ndarray (n,) of ``records.DTYPES[source]``
        status : int8 array (n,) or None
            0 where the row parsed, else the lowest reason code found in the row (unparseable
            before missing_value before non_finite; on a tie the earlier column in canonical
            field order, fields derived with ``plus`` last); None when every row parsed.
        bad_col : int16 array (n,) or None
            Index into ``colnames`` of the input column that failed first in each row (-1 for
            rows that parsed); None when every row parsed.
        colnames : list of str
            Names for ``bad_col``.
        """
        dt = DTYPES[self.source]
        missing = missing or {}
        if self._identity and isinstance(columns, np.ndarray) and columns.dtype == dt and not missing:
            return columns, None, None, []
        out = np.empty(n, dtype=dt)
        status = None
        fcol = None  # int16 index into colnames of the first failing column
        colnames: list[str] = []
        order = [f for f in dt.names if self.fields[f].plus is None] + [
            f for f in dt.names if self.fields[f].plus is not None
        ]
        for f in order:
            r = self.fields[f]
            kind = "i" if dt[f].kind in "iu" else "f"
            present = r.column is not None and r.column in _names(columns)
            if not present:
                if r.default is None:  # required and absent: resolve() prevents this
                    raise SchemaError(f"{self.source} v{self.version}: required column {r.column!r} is missing")
                out[f] = r.default
                continue
            vals, st = parse_column(columns[r.column], kind, r, missing.get(r.column))
            if r.plus is not None:
                vals = vals + out[r.plus]
            out[f] = vals
            if st is not None:
                if status is None:
                    status = np.zeros(n, dtype=np.int8)
                    fcol = np.full(n, -1, dtype=np.int16)
                # the lowest reason code wins (check order); on a tie the earlier column
                new = (st != 0) & ((status == 0) | (st < status))
                if new.any():
                    colnames.append(r.column)
                    status[new] = st[new]
                    fcol[new] = len(colnames) - 1
        if status is None:
            return out, None, None, []
        return out, status, fcol, colnames


def _names(columns) -> tuple[str, ...]:
    if isinstance(columns, np.ndarray):
        return columns.dtype.names or ()
    return tuple(columns)


# ---- parsing ----------------------------------------------------------------------------------
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def _iso_ms(s: str) -> int:
    t = datetime.fromisoformat(s.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return (t - _EPOCH) // _MS


def _parse_one(v, kind: str, r: Rule):
    """Parse one value; returns (value, status). Used only on the slow path for bad chunks."""
    if v is None or (isinstance(v, (str, bytes)) and v.strip() == ""):
        return 0, _MISSING
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if r.parse == "iso":
        if isinstance(v, (datetime, np.datetime64)):
            v = str(np.datetime64(v, "ms"))
        if not isinstance(v, str):
            return 0, _UNPARSEABLE
        try:
            return _iso_ms(v), _OK
        except (ValueError, OverflowError):
            return 0, _UNPARSEABLE
    if r.parse == "code" and isinstance(v, str) and v.strip() in r.codes:
        return r.codes.index(v.strip()), _OK
    if isinstance(v, str):
        s = v.strip()
        if kind == "i" and r.scale == 1:
            try:
                x = int(s)
                return (x, _OK) if -(2**63) <= x < 2**63 else (0, _UNPARSEABLE)
            except ValueError:
                pass
        try:
            v = float(s)
        except ValueError:
            return 0, _UNPARSEABLE
    if isinstance(v, (bool, np.bool_)):
        v = int(v)
    if not isinstance(v, (int, float, np.integer, np.floating)):
        return 0, _UNPARSEABLE
    if kind == "f":
        return float(v) * r.scale, _OK
    if isinstance(v, (int, np.integer)) and r.scale == 1:
        return (int(v), _OK) if -(2**63) <= int(v) < 2**63 else (0, _UNPARSEABLE)
    f = float(v)
    if math.isnan(f):
        return 0, (_MISSING if r.default is not None else _NON_FINITE)
    if math.isinf(f):
        return 0, _NON_FINITE
    f *= r.scale
    if r.scale == 1 and not f.is_integer():
        return 0, _UNPARSEABLE
    if abs(f) > _I8_LIMIT:
        return 0, _UNPARSEABLE
    return int(round(f)), _OK


def _float_to_int(x: np.ndarray, r: Rule):
    """float64 -> int64 with statuses for NaN, inf, non-integral and overflow."""
    scaled = x * r.scale if r.scale != 1 else x
    fin = np.isfinite(scaled)
    if r.scale == 1:
        ok = fin & (np.abs(scaled) <= _I8_LIMIT) & (scaled == np.floor(np.where(fin, scaled, 0)))
    else:
        ok = fin & (np.abs(scaled) <= _I8_LIMIT)
    if ok.all():
        return np.rint(scaled).astype(np.int64), None
    st = np.zeros(len(x), dtype=np.int8)
    st[~ok] = _UNPARSEABLE
    nan = np.isnan(x)
    st[np.isinf(x)] = _NON_FINITE
    st[nan] = _MISSING if r.default is not None else _NON_FINITE
    vals = np.rint(np.where(ok, scaled, 0.0)).astype(np.int64)
    return vals, st


def parse_column(a, kind: str, r: Rule, missing=None):
    """Parse one raw column to int64 (``kind='i'``) or float64 (``kind='f'``) canonical values.

    Vectorised for numeric, datetime64 and clean text columns; text with a bad value falls back
    to a per-value loop over that column only.

    Returns
    -------
    values : int64 or float64 array
        Parsed values with ``Rule.scale`` applied; ``Rule.default`` where the value is missing
        and the rule has a default; 0 where the status is not ok.
    status : int8 array or None
        Per-row status (0 ok, or the reason code of unparseable / missing_value / non_finite);
        None when all rows are ok.
    """
    vals = None
    if _is_arrow_text(a):
        vals, st = _parse_arrow_text(a, kind, r)
        a = a.to_numpy(zero_copy_only=False) if vals is None else vals
    a = np.asarray(a)
    out_dtype = np.int64 if kind == "i" else np.float64
    if vals is None:
        vals, st = _parse_vector(a, kind, r)
    if vals is None:  # slow path: value by value
        vals = np.zeros(len(a), dtype=out_dtype)
        st = np.zeros(len(a), dtype=np.int8)
        for i, v in enumerate(a.tolist()):
            x, s = _parse_one(v, kind, r)
            vals[i] = x
            st[i] = s
        if not st.any():
            st = None
    if st is not None or (missing is not None and np.any(missing)):
        if np.may_share_memory(vals, a):  # never write into the caller's array
            vals = vals.copy()
    if missing is not None and np.any(missing):
        if st is None:
            st = np.zeros(len(a), dtype=np.int8)
        st[np.asarray(missing, dtype=bool)] = _MISSING
    if st is not None and r.default is not None:
        dflt = st == _MISSING
        if dflt.any():
            vals[dflt] = r.default
            st[dflt] = _OK
        if not st.any():
            st = None
    if kind == "i" and st is not None:
        vals[st != 0] = 0
    return vals, st


def _is_arrow_text(a) -> bool:
    t = getattr(a, "type", None)
    return t is not None and not isinstance(a, np.ndarray) and str(t) in ("string", "large_string")


def _parse_arrow_text(a, kind: str, r: Rule):
    """Fast parse of an Arrow string array with Arrow's own casts; (None, None) if any value
    does not convert (then the NumPy and per-value paths decide row by row)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if r.parse != "number" or a.null_count:
        return None, None
    if pc.any(pc.match_substring(a, "x", ignore_case=True)).as_py():
        return _parse_arrow_text_mixed(a, kind, r)  # Arrow reads "0x10" as hex; as text it is no number
    try:
        if kind == "i" and r.scale == 1:
            return pc.cast(a, pa.int64()).to_numpy(zero_copy_only=False), None
        x = pc.cast(a, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _parse_arrow_text_mixed(a, kind, r)
    if kind == "f":
        return (x * r.scale if r.scale != 1 else x), None
    return _float_to_int(x, r)


_INT_TEXT = r"^-?[0-9]{1,18}$"
_FLOAT_TEXT = r"^-?[0-9]{1,300}(\.[0-9]{0,300})?([eE][-+]?[0-9]{1,3})?$"


def _parse_arrow_text_mixed(a, kind: str, r: Rule):
    """A text column with some values Arrow cannot cast: the plain numbers by Arrow, the few
    others value by value (``_parse_one``, the same result as the per-value path); (None, None)
    when most values are not plain numbers."""
    import pyarrow as pa
    import pyarrow.compute as pc

    int_exact = kind == "i" and r.scale == 1
    ok = pc.match_substring_regex(a, _INT_TEXT if int_exact else _FLOAT_TEXT).to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(~ok)
    if len(bad) > max(16, len(a) // 20):
        return None, None
    clean = pc.if_else(pa.array(ok), a, pa.scalar("0"))
    if int_exact:
        vals = pc.cast(clean, pa.int64()).to_numpy(zero_copy_only=False).copy()
        st = np.zeros(len(a), dtype=np.int8)
    else:
        x = pc.cast(clean, pa.float64()).to_numpy(zero_copy_only=False)
        if kind == "f":
            vals, st = (x * r.scale if r.scale != 1 else x.copy()), np.zeros(len(a), dtype=np.int8)
        else:
            vals, st = _float_to_int(x, r)
            vals = vals.copy()
            st = np.zeros(len(a), dtype=np.int8) if st is None else st
    for i, v in zip(bad.tolist(), a.take(pa.array(bad, pa.int64())).to_pylist()):
        vals[i], st[i] = _parse_one(v, kind, r)
    return vals, (st if st.any() else None)


def _parse_vector(a: np.ndarray, kind: str, r: Rule):
    """Vectorised parse; returns (None, None) when the slow path is needed."""
    k = a.dtype.kind
    if k == "M":
        ms = a.astype("datetime64[ms]")
        nat = np.isnat(ms)
        vals = ms.astype(np.int64)
        if kind == "f":
            vals = vals.astype(np.float64)
        if nat.any():
            st = np.zeros(len(a), dtype=np.int8)
            st[nat] = _MISSING
            vals[nat] = 0
            return vals, st
        return vals, None
    if r.parse == "iso":
        if k == "O":
            try:
                b = np.array(a.tolist())
            except (ValueError, TypeError):
                return None, None
            return _parse_vector(b, kind, r) if b.dtype.kind in "UM" and b.ndim == 1 else (None, None)
        if k != "U":
            return (
                (None, None)
                if k == "S"
                else (
                    np.zeros(len(a), dtype=np.int64 if kind == "i" else np.float64),
                    np.full(len(a), _UNPARSEABLE, dtype=np.int8),
                )
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                ms = np.asarray(a, dtype="datetime64[ms]")
        except (ValueError, TypeError, Warning):
            return None, None
        if np.isnat(ms).any():  # empty text parses as NaT: let the slow path tell empty from bad
            return None, None
        vals = ms.astype(np.int64)
        return (vals if kind == "i" else vals.astype(np.float64)), None
    if r.parse == "code" and k in "UOS":
        return _parse_codes(a, kind, r)
    if k == "b":
        raise SchemaError(
            f"column {r.column!r} holds true/false values where a number is expected; convert it to "
            "numbers (e.g. 0/1) or map it with a registered SchemaVersion"
        )
    if k in "iu":
        if kind == "f":
            return a.astype(np.float64) * r.scale if r.scale != 1 else a.astype(np.float64), None
        if r.scale == 1:
            if k == "u" and a.dtype.itemsize == 8 and len(a) and a.max() > np.iinfo(np.int64).max:
                return None, None
            return a.astype(np.int64, copy=False), None  # may be the input itself: no copy
        return _float_to_int(a.astype(np.float64), r)
    if k == "f":
        if kind == "f":
            return (a * r.scale if r.scale != 1 else a).astype(np.float64, copy=False), None
        return _float_to_int(a.astype(np.float64), r)
    if k == "O":
        try:
            b = np.array(a.tolist())
        except (ValueError, TypeError):
            return None, None
        if b.dtype.kind in "iufbU" and b.ndim == 1:
            return _parse_vector(b, kind, r)
        return None, None
    if k in "US":
        try:
            if kind == "i" and r.scale == 1:
                return a.astype(np.int64), None
            x = a.astype(np.float64)
        except (ValueError, TypeError, OverflowError):
            return None, None
        if kind == "f":
            return (x * r.scale if r.scale != 1 else x), None
        return _float_to_int(x, r)
    return None, None


def _parse_codes(a: np.ndarray, kind: str, r: Rule):
    try:
        uniq, inv = np.unique(a, return_inverse=True)
    except TypeError:  # mixed objects: slow path
        return None, None
    table = {name: i for i, name in enumerate(r.codes)}
    codes = np.zeros(len(uniq), dtype=np.int64)
    for j, u in enumerate(uniq.tolist()):
        s = u.decode() if isinstance(u, bytes) else u
        if isinstance(s, str) and s.strip() in table:
            codes[j] = table[s.strip()]
        else:
            x, stj = _parse_one(s, "i", Rule(r.column, default=r.default))
            codes[j] = x
            if stj != _OK:
                return None, None
    vals = codes[inv.ravel()]
    return (vals if kind == "i" else vals.astype(np.float64)), None


# ---- registry ---------------------------------------------------------------------------------
class SchemaRegistry:
    """Known schema versions per source; detects or checks the version of an input.

    Examples
    --------
    >>> reg = default_registry()
    >>> reg.detect("qos", ["ts_s", "element_id", "delay_ms", "jitter_ms", "loss_ratio"]).version
    1
    >>> reg.versions("cdr")
    [1, 2, 3]
    """

    def __init__(self):
        self._versions: dict[str, dict[int, SchemaVersion]] = {s: {} for s in DTYPES}

    def register(self, schema: SchemaVersion, replace: bool = False) -> SchemaVersion:
        """Add a version (e.g. a site-specific export format).

        Raises
        ------
        SchemaError
            If ``(source, version)`` exists and ``replace`` is False, or the column set equals
            an existing version's (it could never be detected).
        """
        if not isinstance(schema, SchemaVersion):
            raise TypeError(f"register() takes a SchemaVersion, got {type(schema).__name__}")
        known = self._versions[schema.source]
        if schema.version in known and not replace:
            raise SchemaError(
                f"{schema.source} v{schema.version} is already registered; pass replace=True "
                "or choose a new version number"
            )
        for v, s in known.items():
            if (
                v != schema.version
                and set(s.columns) == set(schema.columns)
                and set(s.required_columns) == set(schema.required_columns)
            ):
                raise SchemaError(
                    f"{schema.source} v{schema.version} has the same columns as v{v}; it could "
                    "not be told apart by detection"
                )
        known[schema.version] = schema
        return schema

    def versions(self, source: str) -> list[int]:
        return sorted(self._sources(source))

    def latest(self, source: str) -> SchemaVersion:
        vs = self._sources(source)
        return vs[max(vs)]

    def _sources(self, source: str) -> dict[int, SchemaVersion]:
        if source not in self._versions:
            raise SchemaError(f"unknown source {source!r}; known sources: {', '.join(self._versions)}")
        return self._versions[source]

    def known(self, source: str) -> str:
        """Human-readable list of the known versions of ``source`` and their columns."""
        return "; ".join(s.describe() for _, s in sorted(self._sources(source).items()))

    def get(self, source: str, version: int) -> SchemaVersion:
        """The declared version. Raises SchemaError naming the known versions if unknown."""
        vs = self._sources(source)
        try:
            return vs[int(version)]
        except (KeyError, ValueError, TypeError):
            raise SchemaError(
                f"unknown {source} schema version {version!r}; known versions: {self.known(source)}"
            ) from None

    def detect(self, source: str, columns, allow_extra: bool = False) -> SchemaVersion:
        """The version whose columns best explain ``columns``.

        A version is a candidate when all its required columns are present; among candidates
        the one leaving the fewest input columns unexplained wins, then the one using the most
        columns. A tie is ambiguous.

        Raises
        ------
        SchemaError
            No candidate (names the closest version's missing and unmappable columns), an
            ambiguous tie, or unexplained columns when ``allow_extra`` is False.
        """
        cols = list(dict.fromkeys(str(c) for c in columns))
        colset = set(cols)
        vs = self._sources(source)
        scored = []
        for v, s in vs.items():
            if set(s.required_columns) <= colset:
                extra = [c for c in cols if c not in set(s.columns)]
                used = len(colset & set(s.columns))
                scored.append(((len(extra), -used), v, s, extra))
        if not scored:

            def gap(s):
                return len(set(s.required_columns) - colset) + len(colset - set(s.columns))

            best = min(vs.values(), key=lambda s: (gap(s), -s.version))
            lacks = [c for c in best.required_columns if c not in colset]
            cannot = [c for c in cols if c not in set(best.columns)]
            raise SchemaError(
                f"the {source} input columns {cols} match no known schema version; the closest, "
                f"v{best.version}, lacks {lacks}"
                + (f" and cannot map {cannot}" if cannot else "")
                + f". Known versions: {self.known(source)}. Rename the columns, declare "
                "schema_version=..., or register a SchemaVersion for this format"
            )
        scored.sort(key=lambda t: (t[0], -t[1]))
        if len(scored) > 1 and scored[0][0] == scored[1][0]:
            raise SchemaError(
                f"the {source} input columns {cols} match versions v{scored[0][1]} and "
                f"v{scored[1][1]} equally well; declare schema_version=..."
            )
        _, v, s, extra = scored[0]
        if extra and not allow_extra:
            raise SchemaError(
                f"{source} columns {extra} cannot be mapped by any known schema version (best "
                f"match v{v}). Known versions: {self.known(source)}. Drop or rename them, "
                "pass allow_extra_columns=True to ignore them, or register a SchemaVersion"
            )
        return s

    def resolve(self, source: str, columns, version: int | None = None, allow_extra: bool = False) -> SchemaVersion:
        """Declared ``version`` (checked against the columns) or the detected one."""
        if version is None:
            return self.detect(source, columns, allow_extra)
        s = self.get(source, version)
        colset = set(str(c) for c in columns)
        lacks = [c for c in s.required_columns if c not in colset]
        if lacks:
            raise SchemaError(
                f"the input lacks column(s) {lacks} required by {source} schema "
                f"v{s.version}; known versions: {self.known(source)}"
            )
        extra = [c for c in columns if str(c) not in set(s.columns)]
        if extra and not allow_extra:
            raise SchemaError(
                f"{source} columns {extra} cannot be mapped by schema v{s.version}; known "
                f"versions: {self.known(source)}. Drop them or pass allow_extra_columns=True"
            )
        return s


def _canonical(source: str, optional: dict | None = None) -> SchemaVersion:
    optional = optional or {}
    return SchemaVersion(
        source, 3, {f: Rule(f, default=optional.get(f)) for f in DTYPES[source].names}, note="canonical"
    )


def default_registry() -> SchemaRegistry:
    """A registry holding the built-in versions (see the module docstring)."""
    reg = SchemaRegistry()
    R = Rule
    # ---- cdr
    reg.register(
        SchemaVersion(
            "cdr",
            1,
            {
                "record_id": R("record_id"),
                "start_ms": R("start_s", scale=1000.0),
                "answer_ms": R("answer_s", scale=1000.0, default=NO_TIME_MS),
                "end_ms": R("duration_s", scale=1000.0, plus="start_ms"),
                "calling_id": R("calling_id"),
                "called_id": R("called_id"),
                "imsi_hash": R(None, default=0),
                "element_id": R("cell_id"),
                "service": R("service", parse="code", codes=SERVICES),
                "cause": R("cause"),
                "bytes_up": R("bytes_up"),
                "bytes_down": R("bytes_down"),
            },
            dropped=("switch_id",),
            note="legacy switch export, seconds and durations",
        )
    )
    reg.register(
        SchemaVersion(
            "cdr",
            2,
            {
                "record_id": R("record_id"),
                "start_ms": R("start_ms"),
                "answer_ms": R("answer_ms", default=NO_TIME_MS),
                "end_ms": R("end_ms"),
                "calling_id": R("calling_id"),
                "called_id": R("called_id"),
                "imsi_hash": R("imsi"),
                "element_id": R("element_id"),
                "service": R("service_id", parse="code", codes=SERVICES),
                "cause": R("release_cause"),
                "bytes_up": R("bytes_up"),
                "bytes_down": R("bytes_down"),
            },
            note="milliseconds, element_id, imsi",
        )
    )
    reg.register(_canonical("cdr", {"answer_ms": NO_TIME_MS}))
    # ---- equip
    reg.register(
        SchemaVersion(
            "equip",
            1,
            {
                "ts_ms": R("timestamp", parse="iso"),
                "element_id": R("ne_id"),
                "metric_id": R("counter", parse="code", codes=METRICS),
                "value": R("value"),
            },
            note="ISO timestamps, counter names",
        )
    )
    reg.register(
        SchemaVersion(
            "equip",
            2,
            {
                "ts_ms": R("ts_s", scale=1000.0),
                "element_id": R("element_id"),
                "metric_id": R("metric_id", parse="code", codes=METRICS),
                "value": R("value"),
            },
            dropped=("unit",),
            note="float seconds, metric ids",
        )
    )
    reg.register(_canonical("equip"))
    # ---- flow
    reg.register(
        SchemaVersion(
            "flow",
            1,
            {
                "ts_ms": R("ts_s", scale=1000.0),
                "src_element_id": R("src"),
                "dst_element_id": R("dst"),
                "bytes": R("octets"),
                "packets": R("pkts"),
                "flows": R(None, default=1),
            },
            note="seconds, octets, one flow per row",
        )
    )
    reg.register(
        SchemaVersion(
            "flow",
            2,
            {
                "ts_ms": R("ts_ms"),
                "src_element_id": R("src_element_id"),
                "dst_element_id": R("dst_element_id"),
                "bytes": R("kbytes", scale=1000.0),
                "packets": R("packets"),
                "flows": R("flows"),
            },
            note="kilobytes",
        )
    )
    reg.register(_canonical("flow"))
    # ---- qos
    reg.register(
        SchemaVersion(
            "qos",
            1,
            {
                "ts_ms": R("ts_s", scale=1000.0),
                "element_id": R("element_id"),
                "latency_ms": R("delay_ms"),
                "jitter_ms": R("jitter_ms"),
                "loss_pct": R("loss_ratio", scale=100.0),
                "mos": R(None, default=math.nan),
            },
            note="seconds, loss ratio 0..1, no MOS",
        )
    )
    reg.register(
        SchemaVersion(
            "qos",
            2,
            {
                "ts_ms": R("ts_ms"),
                "element_id": R("element_id"),
                "latency_ms": R("latency_us", scale=0.001),
                "jitter_ms": R("jitter_us", scale=0.001),
                "loss_pct": R("loss_pct"),
                "mos": R("mos", default=math.nan),
            },
            note="microseconds",
        )
    )
    reg.register(_canonical("qos", {"mos": math.nan}))
    # ---- complaint
    reg.register(
        SchemaVersion(
            "complaint",
            1,
            {
                "complaint_id": R("ticket_id"),
                "ts_ms": R("created_at", parse="iso"),
                "element_id": R("cell_id", default=-1),
                "lat": R("latitude", default=math.nan),
                "lon": R("longitude", default=math.nan),
                "category": R("category", parse="code", codes=COMPLAINT_CATEGORIES),
                "imsi_hash": R(None, default=0),
            },
            note="CRM ticket export: ISO times, category names, cell or location",
        )
    )
    reg.register(_canonical("complaint", {"lat": math.nan, "lon": math.nan, "imsi_hash": 0}))
    return reg


REGISTRY = default_registry()
"""The process-wide registry used by ``Ingestor`` unless another is passed."""


def register(schema: SchemaVersion, replace: bool = False) -> SchemaVersion:
    """Register a user version in the process-wide ``REGISTRY``."""
    return REGISTRY.register(schema, replace=replace)
