"""Pipeline checkpoints on disk: one crash-safe ``.npz`` file per checkpoint.

A checkpoint holds every piece of a :class:`~telcoanalytics.pipeline.Pipeline`'s state (topology,
ingestors, quarantine, routing counts, each component's class and state, the alert manager, the
tick schedule) and, optionally, a *driver* section: what the program that ran the pipeline needs
to continue exactly (the sources' read positions, the byte length of each output file, the run's
settings); see :mod:`telcoanalytics.pipeline.run`.

Writing is atomic and durable: the archive goes to a temporary file in the same folder, is
``fsync``-ed, renamed over the target and the folder is ``fsync``-ed, so after a crash (even a
power loss) the path holds either the previous checkpoint or the new one, never a mix; a failed
write removes its temporary file.

Reading refuses, with one :class:`CheckpointError` naming the file, what is wrong and what to do:
a missing file, a damaged one (truncated, bad CRC, missing entries), a foreign one (not written
by telcoanalytics, or holding pickled objects) and one written by a newer version. Older formats
still load: format 1 (before the component contract: components named, not classed, no alert
manager) and format 2 (no driver section).

Layout: an uncompressed ``.npz`` whose entries are the flattened state dicts (nesting joined by
``::``, JSON-able leaves as UTF-8 JSON bytes) plus ``__meta__`` (JSON). Large numeric entries are
stored compacted, losslessly (:func:`encode_entries`: mostly-zero arrays as their non-zero
positions and values, integers in the narrowest integer type holding them, floats as float32 when
every value is exactly a float32); ``__meta__["encoded"]`` says how, and reading restores the
original arrays bit for bit (NaN payloads aside). State whose size is fixed by design and that
fills over days (the detector's hour-of-day and hour-of-week profiles, the analysis component's
week of KPI series, the SLA store's hour ring: :data:`FIXED_SIZE_ENTRIES`) is stored at its full
size, so a checkpoint's size does not grow while that state fills (a sparse copy would grow for a
week, then jump to the dense size); only its slots that never held a value are left out, and its
integers narrowed.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from telcoanalytics.pipeline.memory import release_free_memory

CHECKPOINT_FORMAT = 4
"""Format written by this version; formats 1 to 3 still load (format 4 added the lossless compaction
of large numeric entries, :func:`encode_entries`)."""

CHECKPOINT_KIND = "telcoanalytics.pipeline"
"""``meta["kind"]`` of every checkpoint written since format 3."""

_FIX = "resume from an older checkpoint, or start the run afresh (without --resume / --restore)"


class CheckpointError(ValueError):
    """A checkpoint cannot be read: the message names the file, what is wrong, and what to do."""


# ---- writing ------------------------------------------------------------------------------------------
def write_atomic(path, write) -> Path:
    """Call ``write(fileobj)`` on a temporary file next to ``path``, then make it ``path`` durably.

    The temporary file is flushed and ``fsync``-ed, renamed over ``path`` (atomic on POSIX), and
    the folder is ``fsync``-ed so the rename itself survives a power loss. On any error the
    temporary file is removed and the error re-raised; ``path`` is untouched then.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> write_atomic(d / "x.bin", lambda f: f.write(b"abc")).read_bytes()
    b'abc'
    >>> sorted(p.name for p in d.iterdir())
    ['x.bin']
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer killed mid-write
        stale.unlink(missing_ok=True)
    return path


def fsync_dir(folder) -> None:
    """``fsync`` a folder (makes a rename or a new file in it durable); a no-op where unsupported."""
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def pipeline_meta(pipe) -> dict:
    """The scalar part of a pipeline's state (``__meta__`` without the driver section)."""
    from telcoanalytics.pipeline.contract import class_path

    return {
        "kind": CHECKPOINT_KIND,
        "format": CHECKPOINT_FORMAT,
        "route_level": pipe.route_level,
        "allowed_lateness_ms": pipe.allowed_lateness_ms,
        "components": list(pipe.components),
        "component_classes": {name: class_path(comp) for name, comp in pipe.components.items()},
        "alerts": pipe.alerts is not None,
        "last_advance_ms": pipe.last_advance_ms,
        "next_tick_ms": pipe.next_tick_ms,
        "notifications": pipe.notifications,
        "findings_count": pipe.findings_count,
        "n_batches": pipe.n_batches,
        "max_event_ms": int(pipe.max_event_ms),
    }


def pipeline_entries(pipe) -> dict[str, np.ndarray]:
    """The pipeline's state as flat ``.npz`` entries (without ``__meta__``)."""
    flat: dict[str, np.ndarray] = {}
    _flatten("topology", pipe.topology.to_state(), flat)
    _flatten("quarantine", pipe.quarantine.to_state(), flat)
    _flatten("clock", pipe.clock.to_state(), flat)
    for s, ing in pipe.ingestors.items():
        _flatten(f"ingest.{s}", ing.to_state(include_quarantine=False), flat)
    flat["routed"] = pipe.routed
    flat["unrouted"] = pipe.unrouted
    for name, comp in pipe.components.items():
        _flatten(f"comp.{name}", comp.to_state(), flat)
    if pipe.alerts is not None:
        _flatten("alerts", pipe.alerts.to_state(), flat)
    return flat


def write_checkpoint(pipe, path, driver: dict | None = None) -> Path:
    """Write ``pipe``'s whole state (and the JSON-able ``driver`` section) to ``path`` atomically.

    Returns
    -------
    Path
        ``path``.
    """
    flat, encoded = encode_entries(pipeline_entries(pipe), consume=True)
    meta = pipeline_meta(pipe)
    meta["encoded"] = encoded
    if driver is not None:
        meta["driver"] = driver
    flat["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    out = write_atomic(path, lambda f: np.savez(f, **flat))
    flat.clear()  # drop the encoded copies
    release_free_memory()  # the state's copies, freed, do not stay resident
    return out


# ---- lossless compaction of large entries -------------------------------------------------------------
ENCODE_MIN_BYTES = 1 << 16
"""Entries smaller than this are stored as they are."""

_SPARSE_MAX_SHARE = 0.4  # non-zero share below which an array is stored as positions and values

FIXED_SIZE_ENTRIES = {
    "::detector::seas_d": 1,
    "::detector::seas_w": 1,
    "::series::sums_": 0,
    "::series::counts_": 0,
    "::series::complaints": 0,
    "::store.hour": 1,
}
"""Entry-name parts of state whose size is fixed by design but which fills over hours or days (the
detector's hour-of-day and hour-of-week profiles; the analysis series' week of bins; the SLA counter
store's hour ring, which fills for its SLO period, :class:`~telcoanalytics.kpi.store.CounterStore`),
each with its *slot axis* (slots, elements or regions). The detector's recurrence memory ``seas_m``
is not among them: only alarm points write it, so it stays sparse. :func:`encode_entries` stores
these at their full size along every other axis (not sparse, floats not narrowed), so the
checkpoint has about the same size on day 1 and on day 100; it leaves out the slots that have held
only zeros so far (a metric an element class never reports: its slots stay empty for good) and
stores integers (counts per bin) in the narrowest type of their range. Such an entry grows only
when a slot empty so far gets its first value, or when a count outgrows its type."""

SLOT_COMPANIONS = {"::detector::seas_w": "::detector::seas_d"}
"""Fixed-size entries that keep the slots their companion entry (same name, this part replaced)
holds too: the detector's week profile learns a slot only once its day profile has seen a full
day, so its slots get their first values during the second and third days of a run while the day
profile's are held from the first; stored with the day profile's slots, the week profile (the
largest entry) has its full size from the first checkpoint instead of growing for days."""


def _fixed_axis(name: str) -> int | None:
    """Slot axis of a fixed-size entry (:data:`FIXED_SIZE_ENTRIES`), None for other entries."""
    for part, axis in FIXED_SIZE_ENTRIES.items():
        if part in name:
            return axis
    return None


def _narrow(a: np.ndarray) -> np.ndarray:
    """``a`` in the narrowest type that holds every value exactly (integers: the smallest signed or
    unsigned type of their range; float64: float32 when the round trip is exact)."""
    if a.dtype.kind in "iu" and a.size:
        lo, hi = int(a.min()), int(a.max())
        for t in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32):
            if np.dtype(t).itemsize >= a.dtype.itemsize:
                break
            info = np.iinfo(t)
            if info.min <= lo and hi <= info.max:
                return a.astype(t)
    elif a.dtype == np.float64 and a.size:
        with np.errstate(over="ignore", invalid="ignore"):
            f = a.astype(np.float32)
            same = np.array_equal(f.astype(np.float64), a, equal_nan=True)
        if same and np.array_equal(np.signbit(f), np.signbit(a)):
            return f
    return a


def encode_entries(flat: dict, consume: bool = False) -> tuple[dict, dict]:
    """Compact large numeric entries losslessly for storage.

    Parameters
    ----------
    flat : dict name -> ndarray
    consume : bool
        Remove each entry from ``flat`` once encoded, so a copy made for the checkpoint is freed
        before the next one is encoded (lower peak memory while writing).

    Returns
    -------
    entries : dict name -> ndarray
        A mostly-zero entry (non-zero share below 40 %) becomes its values at the non-zero
        positions (``name``) and the positions (``name@nz``); every stored array is narrowed
        (:func:`_narrow`). An entry named in :data:`FIXED_SIZE_ENTRIES` keeps its full size but
        for the slots that hold only zeros (``name`` and the slots kept, ``name@slots``, bits),
        its integers narrowed. Other entries are unchanged.
    encoded : dict name -> {"dtype", "shape", "sparse"[, "slot_axis"]}
        How to rebuild each changed entry (:func:`decode_entries`).

    Examples
    --------
    >>> a = np.zeros((300, 100)); a[5, 7] = 2.5
    >>> e, how = encode_entries({"x": a})
    >>> sorted(e), e["x"].dtype.name, how["x"]["sparse"]
    (['x', 'x@nz'], 'float32', True)
    >>> np.array_equal(decode_entries(e, how)["x"], a)
    True
    """
    out: dict = {}
    encoded: dict = {}
    also: dict = {}  # name -> slots a companion entry holds (SLOT_COMPANIONS), found before it is consumed
    for k in flat:
        for part, companion in SLOT_COMPANIONS.items():
            c = flat.get(k.replace(part, companion)) if part in k else None
            if isinstance(c, np.ndarray) and c.dtype.kind in "iuf" and c.ndim > _fixed_axis(k):
                also[k] = _held_slots(c, _fixed_axis(k))
    for k in list(flat):
        a = flat.pop(k) if consume else flat[k]
        if (
            not isinstance(a, np.ndarray)
            or a.dtype.names is not None
            or a.dtype.kind not in "iuf"
            or a.nbytes < ENCODE_MIN_BYTES
        ):
            out[k] = a
            continue
        axis = _fixed_axis(k)
        if axis is not None:
            _encode_fixed(k, a, axis, out, encoded, also.get(k))
            continue
        v = a.reshape(-1)
        nz = np.flatnonzero((v != 0) | np.signbit(v)) if v.dtype.kind == "f" else np.flatnonzero(v)  # -0.0 kept
        sparse = len(nz) < _SPARSE_MAX_SHARE * v.size
        vals = _narrow(v[nz] if sparse else a)
        if not sparse and vals.dtype == a.dtype:
            out[k] = a
            continue
        out[k] = vals
        if sparse:
            out[k + "@nz"] = _narrow(nz.astype(np.int64))
        encoded[k] = {"dtype": a.dtype.str, "shape": list(a.shape), "sparse": bool(sparse)}
    return out, encoded


def _held_slots(a: np.ndarray, axis: int) -> np.ndarray:
    """Bool per slot (index along ``axis``) of ``a``: does it hold anything but zeros?"""
    bits = np.ascontiguousarray(a).view(f"u{a.dtype.itemsize}")  # on the bits, -0.0 and NaN are values
    held = np.moveaxis(bits, axis, -1) != 0
    return np.logical_or.reduce(held.reshape(-1, a.shape[axis]), axis=0)  # over whole rows of slots


def _encode_fixed(k: str, a: np.ndarray, axis: int, out: dict, encoded: dict, also=None) -> None:
    """A fixed-size entry without the slots (indices along ``axis``) that hold only zeros (and are not
    in ``also``, the slots a companion entry holds), its integers narrowed
    (:data:`FIXED_SIZE_ENTRIES`); unchanged when neither applies."""
    if a.ndim <= axis or a.size == 0:
        out[k] = a
        return
    keep = _held_slots(a, axis)
    if also is not None and len(also) == len(keep):
        keep |= also
    vals = a if keep.all() else np.compress(keep, a, axis=axis)
    if a.dtype.kind in "iu":
        vals = _narrow(vals)
    if vals is a:
        out[k] = a
        return
    out[k] = vals
    out[k + "@slots"] = np.packbits(keep)
    encoded[k] = {"dtype": a.dtype.str, "shape": list(a.shape), "sparse": False, "slot_axis": axis}


def _decode_fixed(flat: dict, k: str, dtype, shape: tuple, axis: int) -> np.ndarray:
    keep = np.unpackbits(flat.pop(k + "@slots"), count=shape[axis]).astype(bool)
    vals = flat[k]
    if keep.all():
        return vals.astype(dtype).reshape(shape)
    kept = list(shape)
    kept[axis] = int(keep.sum())
    full = np.zeros(shape, dtype=dtype)
    idx = [slice(None)] * len(shape)
    idx[axis] = np.flatnonzero(keep)
    full[tuple(idx)] = vals.reshape(kept)
    return full


def decode_entries(flat: dict, encoded: dict) -> dict:
    """The original entries of :func:`encode_entries` (``flat`` is changed in place and returned).

    Raises
    ------
    KeyError, ValueError
        Entries missing or inconsistent with ``encoded`` (a damaged checkpoint).
    """
    for k, info in encoded.items():
        dtype, shape = np.dtype(info["dtype"]), tuple(int(x) for x in info["shape"])
        vals = flat[k]
        if "slot_axis" in info:
            flat[k] = _decode_fixed(flat, k, dtype, shape, int(info["slot_axis"]))
        elif info["sparse"]:
            full = np.zeros(int(np.prod(shape, dtype=np.int64)), dtype=dtype)
            full[flat.pop(k + "@nz")] = vals
            flat[k] = full.reshape(shape)
        else:
            flat[k] = vals.astype(dtype).reshape(shape)
    return flat


# ---- reading ------------------------------------------------------------------------------------------
def read_checkpoint(path) -> tuple[dict, dict]:
    """Load a checkpoint's entries and its (upgraded) meta, checking it thoroughly.

    Returns
    -------
    flat : dict name -> ndarray
    meta : dict
        Upgraded to the current format's keys (``driver`` is None when absent).

    Raises
    ------
    CheckpointError
        Missing, damaged, foreign or newer-format checkpoint (one line: file, problem, fix).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (or is not a file); check the path, or {_FIX}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"checkpoint {path} is damaged or not a checkpoint (not a complete .npz archive: truncated, "
            f"overwritten or another kind of file); {_FIX}"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            flat = {k: z[k] for k in z.files}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise CheckpointError(
                f"checkpoint {path} is not a telcoanalytics checkpoint (it holds pickled Python objects, which "
                f"are never loaded); {_FIX}"
            ) from None
        raise CheckpointError(f"checkpoint {path} is damaged ({_short(exc)}); {_FIX}") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, zipfile.LargeZipFile) as exc:
        raise CheckpointError(f"checkpoint {path} is damaged or not a checkpoint ({_short(exc)}); {_FIX}") from None
    if not isinstance(flat, dict) or "__meta__" not in flat:
        raise CheckpointError(
            f"checkpoint {path} is not a telcoanalytics checkpoint (an .npz archive without the __meta__ entry); "
            f"pass a file written by telcoanalytics (--checkpoint / Pipeline.checkpoint), or {_FIX}"
        )
    try:
        meta = json.loads(bytes(flat.pop("__meta__")).decode())
        if not isinstance(meta, dict):
            raise ValueError("meta is not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path} is damaged (unreadable __meta__: {_short(exc)}); {_FIX}") from None
    kind = meta.get("kind", CHECKPOINT_KIND)
    fmt = meta.get("format")
    if kind != CHECKPOINT_KIND or not isinstance(fmt, int) or isinstance(fmt, bool):
        raise CheckpointError(
            f"checkpoint {path} is not a telcoanalytics pipeline checkpoint (kind {kind!r}, format {fmt!r}); {_FIX}"
        )
    if fmt > CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {path} has format {fmt}, written by a newer telcoanalytics (this version reads formats "
            f"1 to {CHECKPOINT_FORMAT}); upgrade telcoanalytics to resume it, or start afresh"
        )
    if fmt < 1:
        raise CheckpointError(f"checkpoint {path} has format {fmt}, which never existed; {_FIX}")
    meta = _upgrade(meta, path)
    try:
        decode_entries(flat, meta.pop("encoded", None) or {})
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is damaged (a compacted entry cannot be rebuilt: {_short(exc)}); {_FIX}"
        ) from None
    return flat, meta


def _upgrade(meta: dict, path) -> dict:
    """Bring an older meta to the current keys."""
    fmt = meta["format"]
    out = dict(meta)
    if fmt == 1:  # before the component contract: components by registry name, no alert manager, no ticks
        from telcoanalytics.pipeline.components import COMPONENTS

        names = list(out.get("components", []))
        unknown = [n for n in names if n not in COMPONENTS]
        if unknown:
            raise CheckpointError(
                f"checkpoint {path} (format 1) holds components {unknown} that this version does not know; {_FIX}"
            )
        out["component_classes"] = {n: _registry_class_path(n) for n in names}
        out.setdefault("alerts", False)
        for k in ("last_advance_ms", "next_tick_ms"):
            out.setdefault(k, None)
        for k in ("notifications", "findings_count"):
            out.setdefault(k, 0)
    out.setdefault("components", [])
    out.setdefault("component_classes", {})
    out.setdefault("driver", None)
    required = ("route_level", "allowed_lateness_ms", "n_batches", "max_event_ms")
    missing = [k for k in required if k not in out]
    if missing:
        raise CheckpointError(f"checkpoint {path} is damaged (__meta__ lacks {', '.join(missing)}); {_FIX}")
    out["format"] = CHECKPOINT_FORMAT
    return out


def _registry_class_path(name: str) -> str:
    from telcoanalytics.pipeline.components import COMPONENTS
    from telcoanalytics.pipeline.contract import class_path
    from telcoanalytics.topology.model import Topology

    topo = Topology.from_columns(np.array([1]), {"site": np.array([1]), "region": np.array([1])})
    return class_path(COMPONENTS[name](topo, {"allowed_lateness_ms": 0}))


def restore_pipeline(cls, path, alert_sinks=()):
    """Rebuild a pipeline of class ``cls`` from :func:`write_checkpoint`'s file (see
    :meth:`Pipeline.restore`); the driver section is left on ``pipe.checkpoint_driver``."""
    from telcoanalytics.ingest.ingestor import Ingestor
    from telcoanalytics.ingest.quarantine import Quarantine
    from telcoanalytics.pipeline.contract import load_class
    from telcoanalytics.records import SOURCES
    from telcoanalytics.topology.model import Topology

    flat, meta = read_checkpoint(path)
    try:
        topo = Topology.from_state(_unflatten("topology", flat))
        components = {}
        for name in meta["components"]:
            klass = load_class(meta["component_classes"][name])
            components[name] = klass.from_state(_unflatten(f"comp.{name}", flat), topo)
        alerts = None
        if meta["alerts"]:
            from telcoanalytics.alerts.manager import AlertManager

            alerts = AlertManager.from_state(_unflatten("alerts", flat), topo, sinks=list(alert_sinks))
        p = cls(topo, meta["route_level"], meta["allowed_lateness_ms"], components, alerts=alerts)
        p.quarantine = Quarantine.from_state(_unflatten("quarantine", flat))
        for s in SOURCES:
            st = _unflatten(f"ingest.{s}", flat)
            if st:  # a source added after the checkpoint was written starts fresh
                p.ingestors[s] = Ingestor.from_state(st, topology=topo)
            p.ingestors[s].quarantine = p.quarantine
        routed, unrouted = flat["routed"], flat["unrouted"]
        p.routed[: routed.shape[0]] = routed  # rows of sources the checkpoint knew (same order)
        p.unrouted[: unrouted.shape[0]] = unrouted
    except CheckpointError:
        raise
    except ValueError as exc:
        if "component class" in str(exc) or "is not a component class" in str(exc):
            raise
        raise CheckpointError(f"checkpoint {path} is damaged ({_short(exc)}); {_FIX}") from None
    except (KeyError, IndexError, TypeError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is damaged (missing or malformed entry {_short(exc)}); {_FIX}"
        ) from None
    p.n_batches = meta["n_batches"]
    p.max_event_ms = meta["max_event_ms"]
    if any(k.startswith("clock" + _SEP) for k in flat):  # format 2 from the robust clock on
        from telcoanalytics.ingest.clock import EventClock

        p.clock = EventClock.from_state(_unflatten("clock", flat))
    p.last_advance_ms = meta["last_advance_ms"]
    p.next_tick_ms = meta["next_tick_ms"]
    p.notifications = meta["notifications"]
    p.findings_count = meta["findings_count"]
    p.checkpoint_driver = meta["driver"]
    return p


def _short(exc) -> str:
    msg = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {msg}"[:200]


# ---- state (de)flattening: nested dicts of arrays/scalars/strings <-> flat npz entries ----------
_SEP = "::"  # nesting separator in npz entry names (component state keys may contain "." and "/")


def _flatten(prefix: str, d: dict, out: dict) -> None:
    for k, v in d.items():
        key = f"{prefix}{_SEP}{k}"
        if isinstance(v, dict):
            _flatten(key, v, out)
            out[key + _SEP + "__dict__"] = np.zeros(0, dtype=np.uint8)
        elif isinstance(v, np.ndarray) and v.dtype != object:
            out[key] = v
        elif isinstance(v, (str, bytes, int, float, bool, type(None), list, tuple)) or np.isscalar(v):
            out[key + _SEP + "__json__"] = np.frombuffer(json.dumps(_jsonable(v)).encode(), dtype=np.uint8)
        else:
            raise TypeError(f"state entry {key} has unsupported type {type(v).__name__}")


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, bytes):
        return v.decode("latin-1")
    return v


def _unflatten(prefix: str, flat: dict) -> dict:
    out: dict = {}
    pre = prefix + _SEP

    def node_at(parts):
        node = out
        for p in parts:
            node = node.setdefault(p, {})
        return node

    for key, v in flat.items():
        if not key.startswith(pre):
            continue
        parts = key[len(pre) :].split(_SEP)
        if parts[-1] == "__dict__":
            node_at(parts[:-1])
        elif parts[-1] == "__json__":
            node_at(parts[:-2])[parts[-2]] = json.loads(bytes(v).decode())
        else:
            node_at(parts[:-1])[parts[-1]] = v
    return out
