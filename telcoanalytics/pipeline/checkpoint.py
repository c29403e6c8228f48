"""Pipeline checkpoints on disk: one crash-safe ``.npz`` file per checkpoint.

A checkpoint holds every piece of a :class:`~telcoanalytics.pipeline.Pipeline`'s state (topology,
ingestors, quarantine, routing counts, each component's class and state, the alert manager, the
tick schedule) and, optionally, a *driver* section: what the program that ran the pipeline needs
to continue exactly (the sources' read positions, the byte length of each output file, the run's
settings); see :mod:`telcoanalytics.pipeline.run`.

Writing is atomic and durable: the archive goes to a temporary file in the same folder, is
``fsync``-ed, renamed over the target and the folder is ``fsync``-ed, so after a crash (even a
power loss) the path holds either the previous checkpoint or the new one, never a mix; a failed
write removes its temporary file. Entries are encoded and streamed into the archive one at a time
(:func:`write_checkpoint`), so the encoded copies of the whole state never exist at once.
:func:`start_checkpoint` writes one from a snapshot (:func:`snapshot_entries`: the state's own
copies, plus copies of what the live state still holds) in a background thread while the pipeline
goes on (``Runner(background=True)``); the snapshot's memory, about the state's size, is held
until it is written. :func:`fork_checkpoint` has a forked process write it instead
(``Runner(background="fork")``, the replay's writer): the child sees the state as it was at the
fork, copy-on-write, so the run neither waits nor copies; the kernel copies the pages the run
changes while the child lives. The child dies with the run (Linux ``PR_SET_PDEATHSIG``), so a
killed run never leaves a writer behind to rename a checkpoint under a resumed run; its error or
death reaches the run when it is collected (:class:`ForkedCheckpoint`).

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

import io
import json
import os
import signal
import sys
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

    Each entry is encoded (:func:`encode_entries`) and streamed into its archive member in turn,
    then freed, so the encoded copies of the whole state never exist at once.

    Returns
    -------
    Path
        ``path``.
    """
    flat = pipeline_entries(pipe)
    _write_entries(path, flat, _meta_json(pipe, driver))
    return Path(path)


def _meta_json(pipe, driver) -> str:
    """``__meta__`` without ``encoded``, as JSON text (made at the moment of the snapshot: the
    driver dict may change afterwards)."""
    meta = pipeline_meta(pipe)
    if driver is not None:
        meta["driver"] = driver
    return json.dumps(meta)


def _write_entries(path, flat: dict, meta_json: str) -> Path:
    """Encode and stream every entry of ``flat`` (consumed) into a new ``.npz`` at ``path``
    (:func:`write_atomic`), ``__meta__`` last, then hand the freed memory back."""
    encoded: dict = {}

    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, entry in _encode_iter(flat, encoded, consume=True, lazy=True):
                _write_member(zf, name, entry)
                del entry
            meta = json.loads(meta_json)
            meta["encoded"] = encoded
            _write_member(zf, "__meta__", np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))

    try:
        return write_atomic(path, write)
    finally:
        flat.clear()  # on failure too: the state's copies go
        release_free_memory()  # the state's copies, freed, do not stay resident


def _write_member(zf: zipfile.ZipFile, name: str, entry) -> None:
    """One ``name.npy`` member, as ``np.savez`` writes it; a :class:`_Compacted` entry is written
    block by block (never materialised whole)."""
    with zf.open(name + ".npy", "w", force_zip64=True) as m:
        if isinstance(entry, _Compacted):
            entry.write_npy(m)
        elif not _write_plain_npy(m, np.asanyarray(entry)):
            np.lib.format.write_array(m, np.asanyarray(entry), allow_pickle=False)


_WRITE_BLOCK_BYTES = 1 << 24


def _write_plain_npy(m, a: np.ndarray) -> bool:
    """Write a C-contiguous array of a plain type (no fields, no objects) as ``np.save`` does, its
    data straight from its memory in blocks (``write_array`` copies each block to ``bytes`` first,
    holding the GIL); False, nothing written, for other arrays."""
    plain = a.dtype.names is None and not a.dtype.hasobject and a.dtype.itemsize > 0
    if not (plain and a.flags.c_contiguous and type(a) is np.ndarray):
        return False
    head = io.BytesIO()
    try:  # the header np.save writes: format 1.0 when it fits
        np.lib.format.write_array_header_1_0(head, np.lib.format.header_data_from_array_1_0(a))
    except ValueError:  # pragma: no cover - a header over 64 KiB: left to write_array
        return False
    m.write(head.getvalue())
    raw = a.reshape(-1).view(np.uint8)
    for i in range(0, raw.size, _WRITE_BLOCK_BYTES):
        m.write(raw[i : i + _WRITE_BLOCK_BYTES])
    return True


class PendingCheckpoint:
    """A checkpoint being written by a background thread (:func:`start_checkpoint`).

    :meth:`wait` blocks until the file is durable and re-raises the writer's error, if any.
    """

    def __init__(self, path, flat: dict, meta_json: str):
        import threading

        self.path = Path(path)
        self.error: BaseException | None = None
        self.seconds = 0.0  # wall seconds the writer took
        self._thread = threading.Thread(
            target=self._run, args=(flat, meta_json), name=f"checkpoint {self.path.name}", daemon=False
        )
        self._thread.start()

    def _run(self, flat, meta_json):
        import time

        t0 = time.perf_counter()
        try:
            _write_entries(self.path, flat, meta_json)
        except BaseException as exc:  # handed to the caller by wait()
            self.error = exc
        finally:
            self.seconds = time.perf_counter() - t0

    def done(self) -> bool:
        """Has the writer finished (written the file, or failed)?"""
        return not self._thread.is_alive()

    def wait(self) -> Path:
        """Block until the checkpoint is written; returns its path, or raises the writer's error."""
        self._thread.join()
        if self.error is not None:
            err, self.error = self.error, None
            raise err
        return self.path


def snapshot_entries(pipe) -> dict[str, np.ndarray]:
    """:func:`pipeline_entries` made independent of the live state: an entry that another object
    still holds (an array a ``to_state`` returned without copying, or a view of one) is copied;
    the copies ``to_state`` made already are not copied again. The pipeline may go on processing
    while the snapshot is written."""
    flat = pipeline_entries(pipe)
    private = _private_refcount()
    for k in flat:
        a = flat[k]
        if not (a.base is None and private is not None and sys.getrefcount(flat[k]) <= private + 1):
            flat[k] = np.array(a, copy=True, order="K")  # +1: the local name ``a``
        del a
    return flat


def _private_refcount() -> int | None:
    """``sys.getrefcount(flat[k])`` of an array held by the dict ``flat`` alone (measured, not
    assumed: it differs between Python versions); None without ``sys.getrefcount``."""
    if not hasattr(sys, "getrefcount"):  # pragma: no cover - not CPython
        return None
    probe = {"x": np.empty(1)}
    return sys.getrefcount(probe["x"])


def start_checkpoint(pipe, path, driver: dict | None = None) -> PendingCheckpoint:
    """Take a consistent snapshot of ``pipe``'s state (:func:`snapshot_entries`) and write it to
    ``path`` in a background thread, as :func:`write_checkpoint` does (atomically and durably):
    the caller may feed the pipeline on meanwhile. Only one write to a path at a time: wait for the
    previous :class:`PendingCheckpoint` first.

    The snapshot (the state's arrays, about the checkpoint's size) is held until it is written.
    """
    meta_json = _meta_json(pipe, driver)
    return PendingCheckpoint(path, snapshot_entries(pipe), meta_json)


# ---- a forked writer (copy-on-write snapshot) ------------------------------------------------------
_PR_SET_PDEATHSIG = 1


def _prctl():
    """libc's ``prctl`` (Linux), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        f = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - a Linux without a C library prctl
        return None
    return f


def fork_unavailable() -> str | None:
    """Why a checkpoint cannot be written by a forked process here, or None when it can.

    A fork needs ``os.fork``, Linux's ``prctl(PR_SET_PDEATHSIG)`` (so the writer dies with the run:
    an orphan must never finish a checkpoint under a resumed run) and a process running no other
    Python thread (a thread holding a lock at the fork, or a thread the writer needs, would not
    exist in the child: a background writer thread, Dask's event loop, ...).
    """
    import threading

    if not hasattr(os, "fork"):
        return "this platform has no os.fork"
    if _prctl() is None:
        return "the writer cannot be tied to the run's life here (no Linux prctl)"
    if threading.current_thread() is not threading.main_thread():
        return "the checkpoint is not taken from the main thread"
    others = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
    if others:
        return f"other threads run in this process ({', '.join(sorted(others)[:3])})"
    return None


class CheckpointWriterError(OSError):
    """A forked checkpoint writer died before it reported (killed by a signal: the out-of-memory
    killer, an operator): the previous checkpoint is intact."""


def _private_mib() -> float:
    """Private (unshared) resident memory of this process in MiB (Linux ``smaps_rollup``): in a
    forked writer, the pages the run changed since the fork plus what the writer allocated."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            kib = sum(int(line.split()[1]) for line in f if line.startswith(("Private_Clean:", "Private_Dirty:")))
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        return float("nan")
    return kib / 1024


def _forked_write(pipe, path, meta_json: str) -> dict:
    """The forked writer's work (also callable in-process): the pipeline's state as it was at the
    fork, written as :func:`write_checkpoint` does; returns the figures it reports."""
    import time

    t0, c0 = time.perf_counter(), time.process_time()
    flat = pipeline_entries(pipe)
    copies = _private_mib()  # the state's copies made by to_state all exist now: about the writer's peak
    _write_entries(path, flat, meta_json)
    return {
        "seconds": time.perf_counter() - t0,
        "cpu_s": time.process_time() - c0,
        "private_mib": max(copies, _private_mib()),
    }


def _child_setup(parent_pid: int) -> None:  # pragma: no cover - runs in the forked writer (tests check its effects)
    """In the forked writer: die with the run (SIGKILL when the parent dies; it may have died
    before the request took effect), leave the run's signals to the run, collect no garbage (a
    collected file object would flush the run's buffered bytes a second time)."""
    import gc

    gc.disable()
    if _prctl()(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        raise OSError("prctl(PR_SET_PDEATHSIG) failed: the writer could outlive the run")
    if os.getppid() != parent_pid:  # the run died between the fork and the prctl
        os._exit(3)
    for s in _STOP_SIGNALS:  # the run decides when to stop; the writer finishes or dies with it
        signal.signal(s, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # blocked over the fork; ignored from here


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ForkedCheckpoint:
    """A checkpoint written by a forked process from the state as it was at the fork
    (:func:`fork_checkpoint`); the interface of :class:`PendingCheckpoint`.

    :meth:`wait` collects the writer (its report comes through a pipe, its exit status from
    ``waitpid``) and raises its error: the writer's own exception when it could be sent (a full
    disk: the ``OSError`` a foreground write raises), else :class:`CheckpointWriterError`.
    """

    def __init__(self, pipe, path, meta_json: str):
        import pickle

        self.path = Path(path)
        self.error: BaseException | None = None
        self.seconds = 0.0  # wall seconds the writer took (from its report)
        self.report: dict = {}
        for stream in (sys.stdout, sys.stderr):  # the child must not write the run's buffered output again
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):  # pragma: no cover - closed or odd streams
                pass
        parent = os.getpid()
        r, w = os.pipe()
        # a stop signal arriving over the fork waits: the run handles it after, the writer ignores it
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            pid = _fork()
        except BaseException:
            os.close(r)
            os.close(w)
            raise
        finally:
            if os.getpid() == parent:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if pid == 0:  # pragma: no cover - the forked writer (its lines run in the child; tests call _forked_write)
            code = 1
            try:
                os.close(r)
                try:
                    _child_setup(parent)
                    msg = pickle.dumps(("ok", _forked_write(pipe, self.path, meta_json)))
                    code = 0
                except BaseException as exc:
                    msg = pickle.dumps(("error", _pickled_error(exc), f"{type(exc).__name__}: {exc}"))
                view = memoryview(msg)
                while view:
                    view = view[os.write(w, view) :]
            finally:
                os._exit(code)
        os.close(w)
        self.pid = pid
        self._r = r
        self._status: int | None = None

    def done(self) -> bool:
        """Has the writer finished (written the file, or failed)?"""
        if self._status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == 0:
                return False
            self._status = status
        return True

    def wait(self) -> Path:
        """Block until the writer has ended; returns the path, or raises the writer's error (once)."""
        import pickle

        if self._r is not None:
            chunks = []
            while chunk := os.read(self._r, 1 << 16):  # until the writer's end closes the pipe
                chunks.append(chunk)
            os.close(self._r)
            self._r = None
            if self._status is None:
                self._status = os.waitpid(self.pid, 0)[1]
            self._collect(b"".join(chunks), pickle)
        if self.error is not None:
            err, self.error = self.error, None
            raise err
        return self.path

    def _collect(self, msg: bytes, pickle) -> None:
        kind, body, *text = pickle.loads(msg) if msg else (None, None)
        if kind == "ok":
            self.report = body
            self.seconds = body["seconds"]
            return
        if kind == "error":
            try:
                self.error = pickle.loads(body)
            except Exception:  # the writer's exception cannot be rebuilt here: its text, then
                self.error = CheckpointWriterError(f"the checkpoint writer failed writing {self.path}: {text[0]}")
        else:
            self.error = CheckpointWriterError(
                f"the checkpoint writer (forked process {self.pid}) ended without a report "
                f"({_exit_description(self._status)}) before finishing {self.path}; the previous checkpoint "
                "there is intact; check the memory (out-of-memory killer) and the disk, then resume or retry"
            )
        self.path.with_name(f".{self.path.name}.{self.pid}.tmp").unlink(missing_ok=True)


def _pickled_error(exc: BaseException) -> bytes:
    """``exc`` pickled (sent by a forked writer to the run), or b"" when it cannot be."""
    import pickle

    try:
        return pickle.dumps(exc)
    except Exception:
        return b""


def _exit_description(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:  # pragma: no cover - a signal without a name
            name = str(sig)
        return f"killed by signal {name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _fork() -> int:
    """``os.fork()`` without Python 3.12's warning about native threads (OpenBLAS's pool: fork-safe;
    Python threads are ruled out by :func:`fork_unavailable`)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def fork_checkpoint(pipe, path, driver: dict | None = None) -> ForkedCheckpoint:
    """Write ``pipe``'s checkpoint (as :func:`write_checkpoint` does: atomically and durably) from
    a forked process that sees the state, copy-on-write, as it was at this moment; the caller goes
    on at once (no copy of the state is made in this process) and collects the writer with
    ``wait()`` before the next checkpoint. Check :func:`fork_unavailable` first.

    The writer dies with the calling process (``PR_SET_PDEATHSIG``), never runs ``atexit``
    handlers or flushes the caller's files, and ignores SIGINT / SIGTERM (the caller decides when
    to stop). Pages the caller writes while the writer lives are copied by the kernel: up to the
    state's size in memory, and page faults, until ``wait()``.
    """
    return ForkedCheckpoint(pipe, path, _meta_json(pipe, driver))


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
    t = _narrow_int_type(a)
    if t is not None:
        return a.astype(t)
    if a.dtype == np.float64 and a.size:
        step = max(1, a.size // 4096)
        if not _f32_exact(a.reshape(-1)[::step]):  # a quick no on a sample spares the full check
            return a
        if _f32_exact(a):
            return a.astype(np.float32)
    return a


def _narrow_int_type(a: np.ndarray, lo=None, hi=None):
    """The narrowest integer type holding ``a``'s range ([lo, hi] when given); None when ``a`` is
    not an integer array, is empty, or no narrower type holds it."""
    if a.dtype.kind not in "iu" or not a.size:
        return None
    lo, hi = (int(a.min()), int(a.max())) if lo is None else (lo, hi)
    for t in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32):
        if np.dtype(t).itemsize >= a.dtype.itemsize:
            break
        info = np.iinfo(t)
        if info.min <= lo and hi <= info.max:
            return np.dtype(t)
    return None


def _f32_exact(a: np.ndarray) -> bool:
    """Does every float64 of ``a`` survive a round trip through float32 (NaN as NaN, sign of zero kept)?"""
    with np.errstate(over="ignore", invalid="ignore"):
        f = a.astype(np.float32)
        same = np.array_equal(f.astype(np.float64), a, equal_nan=True)
    return bool(same and np.array_equal(np.signbit(f), np.signbit(a)))


def _bits(a: np.ndarray) -> np.ndarray:
    """``a`` with a non-zero element exactly where it holds a value: floats as their bits (so -0.0
    and NaN count as values, +0.0 does not), other types as they are."""
    if a.dtype.kind == "f":
        if a.dtype.itemsize in (2, 4, 8):
            return a.view(f"u{a.dtype.itemsize}")
        return (a != 0) | np.signbit(a)  # pragma: no cover - long double
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
    encoded: dict = {}
    out = dict(_encode_iter(flat, encoded, consume=consume, lazy=False))
    return out, encoded


def _encode_iter(flat: dict, encoded: dict, consume: bool, lazy: bool):
    """Yield ``(name, stored array)`` for each entry of ``flat`` in turn (see :func:`encode_entries`),
    filling ``encoded``; with ``lazy``, a fixed-size entry without some slots is yielded as a
    :class:`_Compacted` (written block by block, never materialised)."""
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
            yield k, a
            continue
        axis = _fixed_axis(k)
        if axis is not None:
            yield from _encode_fixed(k, a, axis, encoded, also.get(k), lazy)
            continue
        bits = _bits(a.reshape(-1))
        sparse = np.count_nonzero(bits) < _SPARSE_MAX_SHARE * a.size  # counted first: no index array when dense
        if sparse:
            nz = np.flatnonzero(bits)
            vals = _narrow(a.reshape(-1)[nz])
        else:
            vals = _narrow(a)
            if vals.dtype == a.dtype:
                yield k, a
                continue
        del bits
        encoded[k] = {"dtype": a.dtype.str, "shape": list(a.shape), "sparse": bool(sparse)}
        yield k, vals
        if sparse:
            yield k + "@nz", _narrow(nz.astype(np.int64))


_BLOCK_ELEMENTS = 1 << 22  # elements per block when scanning or writing a large entry piecewise


def _blocks(n: int, row_elements: int):
    """Slices of ``n`` rows, each of about :data:`_BLOCK_ELEMENTS` elements."""
    step = max(1, _BLOCK_ELEMENTS // max(1, row_elements))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


def _held_slots(a: np.ndarray, axis: int) -> np.ndarray:
    """Bool per slot (index along ``axis``) of ``a``: does it hold anything but zeros? The bits are
    OR-ed over the axes before the slot axis first (whole rows together: one pass at memory speed,
    no full-size temporary), then over the axes after it."""
    n = a.shape[axis]
    if a.size == 0:
        return np.zeros(n, dtype=bool)
    r = _bits(a)  # on the bits, -0.0 and NaN are values
    if axis > 0:
        r = np.bitwise_or.reduce(r.reshape((-1,) + a.shape[axis:]), axis=0)
    return np.bitwise_or.reduce(r.reshape(n, -1), axis=1) != 0


class _Compacted:
    """A fixed-size entry without its empty slots, in type ``dtype``: the array
    ``np.compress(keep, a, axis).astype(dtype)``, produced block by block along axis 0."""

    def __init__(self, a: np.ndarray, keep: np.ndarray, axis: int, dtype):
        self.a, self.keep, self.axis, self.dtype = a, keep, axis, np.dtype(dtype)
        self.kept = np.flatnonzero(keep)
        shape = list(a.shape)
        shape[axis] = int(keep.sum())
        self.shape = tuple(shape)

    def pieces(self):
        a, keep, axis = self.a, self.keep, self.axis
        every = bool(keep.all())
        for blk in _blocks(a.shape[0], a.size // max(1, a.shape[0])):
            part = a[blk]
            if not every:
                part = part[keep[blk]] if axis == 0 else np.take(part, self.kept, axis=axis)
            yield np.ascontiguousarray(part, dtype=self.dtype)

    def materialize(self) -> np.ndarray:
        out = np.empty(self.shape, dtype=self.dtype)
        i = 0
        for p in self.pieces():
            out[i : i + p.shape[0]] = p
            i += p.shape[0]
        return out

    def write_npy(self, m) -> None:
        """The ``.npy`` bytes of :meth:`materialize` (the same header ``np.save`` writes)."""
        fmt = np.lib.format
        fmt.write_array_header_1_0(
            m, {"descr": fmt.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        )
        for p in self.pieces():
            m.write(p.reshape(-1).view(np.uint8))


def _encode_fixed(k: str, a: np.ndarray, axis: int, encoded: dict, also=None, lazy: bool = False):
    """A fixed-size entry without the slots (indices along ``axis``) that hold only zeros (and are not
    in ``also``, the slots a companion entry holds), its integers narrowed
    (:data:`FIXED_SIZE_ENTRIES`); unchanged when neither applies. Yields ``(name, array)``."""
    if a.ndim <= axis or a.size == 0:
        yield k, a
        return
    keep = _held_slots(a, axis)
    if also is not None and len(also) == len(keep):
        keep |= also
    dtype = a.dtype
    if a.dtype.kind in "iu" and keep.any():
        # the kept values' range with 0 added (the left-out slots' value) picks the same type as the kept
        # values' range alone: every candidate type holds 0
        dtype = _narrow_int_type(a) or a.dtype
    if keep.all() and dtype == a.dtype:
        yield k, a
        return
    vals = _Compacted(a, keep, axis, dtype)
    encoded[k] = {"dtype": a.dtype.str, "shape": list(a.shape), "sparse": False, "slot_axis": axis}
    yield k, (vals if lazy else vals.materialize())
    yield k + "@slots", np.packbits(keep)


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
