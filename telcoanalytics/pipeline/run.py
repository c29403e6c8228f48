"""Driving a pipeline for hours or months: periodic checkpoints with source positions, output
files that resume exactly, progress and lag, a clean stop on SIGTERM.

:class:`Runner` feeds a :class:`~telcoanalytics.pipeline.Pipeline` from any *positioned source*:
an iterable of ``(source, data)`` batches with a ``position()`` method returning a JSON-able
value that, given back to the source's constructor, makes it continue with the next batch (the
synthetic replay's position is the index of the next batch of its deterministic arrival-order
stream; a file source's is the rows consumed per file). A plain iterator of batches works too
(:class:`IteratorSource` counts batches).

Every ``checkpoint_every_min`` minutes of **event time** (default :data:`DEFAULT_CHECKPOINT_EVERY_MIN`)
the runner writes one checkpoint (atomically, see :mod:`telcoanalytics.pipeline.checkpoint`)
holding the pipeline's whole state and a *driver* section: the source position, the byte length
of every output file (:class:`OutputLog`), the run's settings and counters. Output files are
``fsync``-ed before the checkpoint that records their lengths, so a resumed run truncates each
file back to exactly what the checkpoint saw and appends from there: nothing is lost or
written twice, and the files end equal to an uninterrupted run's. With ``background="fork"``
(the replay's and the real-time runner's writer, :data:`CHECKPOINT_WRITER`) the runner forks and
goes on at once: the child writes the state as it was at the fork, copy-on-write, without
copying it in the run (see :func:`~telcoanalytics.pipeline.checkpoint.fork_checkpoint`). With
``background=True`` the runner takes a snapshot of the state and a background thread writes it
while the next batches are processed. Either way one write at a time; a crash during the write
leaves the previous checkpoint, whose lengths the files are cut back to. The thread is off by
default: on a machine without a spare core it slows the processing by more than the wait it saves.

Output files are append-only JSON lines with optional size rotation (``name.1``, ``name.2``, ...
oldest first) and retention (the newest ``keep`` rotated files are kept), so findings stream to
disk instead of growing in memory and in checkpoints.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_CHECKPOINT_EVERY_MIN = 360
"""Event-time minutes between periodic checkpoints (a replayed day writes 4). A checkpoint holds
all state (about 65 KiB per element with every component), so its cost grows with the network:
a shorter interval loses less work to a crash and costs more while running."""

CHECKPOINT_WRITER = "fork"
"""How ``telcoanalytics replay`` and ``telcoanalytics run`` write their periodic checkpoints
(:class:`Runner`'s ``background``): "fork", a forked process writes the state as it was at the
checkpoint while the run goes on (where :func:`~telcoanalytics.pipeline.checkpoint.fork_unavailable`
says it cannot, in the foreground); False, in the foreground; "thread", a background thread from
a snapshot."""

_NO_DATA = np.iinfo(np.int64).min


# ---- output files ------------------------------------------------------------------------------------
class OutputLog:
    """An append-only text file with rotation, retention and exact resume.

    Parameters
    ----------
    path : path
        The active file (created with its folder).
    rotate_bytes : int, optional
        When the active file reaches this size after a write, it is renamed ``path.N`` (N counting
        up from 1, so a larger N is newer) and a new active file starts. None: never rotate.
    keep : int, optional
        Rotated files to keep (the oldest beyond this are deleted); None keeps all. At least 1.
    state : dict, optional
        ``state()`` of a checkpoint to resume from: files written after it are removed and the
        active file is truncated to the checkpointed length.

    Raises
    ------
    ValueError
        Bad rotation settings, or (on resume) an output file shorter than the checkpoint says
        (something else truncated it: the run cannot continue exactly).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> log = OutputLog(d / "x.jsonl")
    >>> log.write_lines(['{"a": 1}'])
    >>> st = log.state(); log.write_lines(['{"a": 2}']); log.close()
    >>> OutputLog(d / "x.jsonl", state=st).path.read_text()
    '{"a": 1}\\n'
    """

    def __init__(self, path, rotate_bytes: int | None = None, keep: int | None = None, state: dict | None = None):
        if rotate_bytes is not None and (int(rotate_bytes) != rotate_bytes or rotate_bytes < 1):
            raise ValueError(f"rotate_bytes must be a positive integer or None, got {rotate_bytes!r}")
        if keep is not None and (int(keep) != keep or keep < 1):
            raise ValueError(f"keep (rotated files retained) must be an integer >= 1 or None, got {keep!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rotate_bytes = rotate_bytes
        self.keep = keep
        self.seq = 0  # rotations so far
        self.counters: dict = dict((state or {}).get("counters", {}))  # writers' tallies, checkpointed with the length
        if state is None:
            for old in self._rotated():
                old.unlink()
            self.path.unlink(missing_ok=True)
        else:
            self._resume(int(state["seq"]), int(state["bytes"]))
        self._fh = open(self.path, "ab")

    def _rotated(self) -> list[Path]:
        out = []
        for p in self.path.parent.glob(self.path.name + ".*"):
            suffix = p.name[len(self.path.name) + 1 :]
            if suffix.isdigit():
                out.append((int(suffix), p))
        return [p for _, p in sorted(out)]

    def _resume(self, seq: int, n_bytes: int) -> None:
        self.seq = seq
        newer = [p for p in self._rotated() if int(p.name.rsplit(".", 1)[1]) > seq]
        if newer:  # rotated after the checkpoint: the first of them holds the checkpoint's active file
            self.path.unlink(missing_ok=True)
            newer[0].replace(self.path)
            for p in newer[1:]:
                p.unlink()
        size = self.path.stat().st_size if self.path.exists() else 0
        if size < n_bytes:
            raise ValueError(
                f"output {self.path} has {size} bytes, the checkpoint recorded {n_bytes}: it was truncated or "
                "replaced since; restore the file or start the run afresh"
            )
        with open(self.path, "ab") as f:
            f.truncate(n_bytes)

    def write_lines(self, lines) -> None:
        """Append lines (without their newline; an item may hold several newline-joined lines)."""
        if not lines:
            return
        self._fh.write(("\n".join(lines) + "\n").encode())
        self._fh.flush()
        if self.rotate_bytes is not None and self._fh.tell() >= self.rotate_bytes:
            self.rotate()

    def rotate(self) -> None:
        """Close the active file as ``path.N`` (N = rotations so far + 1), start a new one, apply retention."""
        self._fh.close()
        self.seq += 1
        self.path.replace(self.path.with_name(f"{self.path.name}.{self.seq}"))
        self._fh = open(self.path, "ab")
        if self.keep is not None:
            for old in self._rotated()[: -self.keep]:
                old.unlink()

    def sync(self) -> None:
        """Make what was written durable (before a checkpoint records its length)."""
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def state(self) -> dict:
        """``{"seq": rotations, "bytes": length of the active file, "counters": ...}``, for a checkpoint."""
        self._fh.flush()
        return {"seq": self.seq, "bytes": self._fh.tell(), "counters": dict(self.counters)}

    def files(self) -> list[Path]:
        """Rotated files (oldest first) then the active file: everything written and retained."""
        return self._rotated() + [self.path]

    def read_lines(self) -> list[str]:
        """Every retained line, oldest first."""
        self._fh.flush()
        out = []
        for p in self.files():
            out += p.read_text().splitlines()
        return out

    def close(self) -> None:
        self._fh.close()


class JsonlAlertSink:
    """An alert-manager sink writing one JSON line per alert to an :class:`OutputLog` (the
    line format of :class:`telcoanalytics.alerts.sinks.JsonlSink`), so the alert file rotates and
    resumes exactly."""

    name = "jsonl"

    def __init__(self, log: OutputLog):
        self.log = log
        self.path = log.path

    @property
    def stats(self):
        """Notifications and lines written (over the whole run: kept in the log's checkpointed counters)."""
        from collections import Counter

        return Counter(self.log.counters)

    def submit(self, notifications) -> None:
        from telcoanalytics.alerts.manager import Notification
        from telcoanalytics.alerts.sinks import jsonl_lines

        if isinstance(notifications, Notification):
            notifications = [notifications]
        lines = jsonl_lines(notifications)
        if not lines:
            return
        self.log.write_lines(lines)
        c = self.log.counters
        c["notifications"] = c.get("notifications", 0) + len(notifications)
        c["lines"] = c.get("lines", 0) + len(lines)

    def flush(self, timeout_s: float | None = None) -> bool:
        return True

    def close(self) -> None:
        """The log belongs to the driver (it outlives the alert manager's close)."""
        self.log.sync()


def streaming_quarantine(log: OutputLog, restored=None):
    """A quarantine that writes each rejected row to ``log`` (the line format of
    ``Quarantine.write_jsonl``) as it is added and keeps only the counts in memory (and in
    checkpoints); ``restored`` (a checkpoint's quarantine) contributes its counts."""
    from telcoanalytics.ingest.quarantine import Quarantine

    class StreamingQuarantine(Quarantine):
        def add(self, source, rows, reasons, fields, columns, batch=0):
            # one add (validated, counted, the rows' block built), its records written, the block
            # dropped: the counts of a store that keeps nothing (max_kept=0)
            held, n_held = self._blocks, self._n_kept
            self._blocks, self.max_kept = [], None
            try:
                super().add(source, rows, reasons, fields, columns, batch)
                lines = [json.dumps(r) for r in self.records()]
            finally:
                self._blocks, self.max_kept = held, 0
            self.n_not_kept += self._n_kept - n_held
            self._n_kept = n_held
            self.log.write_lines(lines)

    q = StreamingQuarantine(max_kept=0)
    q.log = log
    if restored is not None:
        q.merge(restored)
    return q


def use_quarantine(pipe, q) -> None:
    """Make ``q`` the pipeline's (and every ingestor's) quarantine."""
    pipe.quarantine = q
    for ing in pipe.ingestors.values():
        ing.quarantine = q


# ---- progress ----------------------------------------------------------------------------------------------
def fmt_time(t_ms) -> str:
    if t_ms is None or t_ms == _NO_DATA:
        return "-"
    return _dt.datetime.fromtimestamp(int(t_ms) / 1000, tz=_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class Progress:
    """Progress of a run: rows, event time reached, rows/s (and lag when asked).

    ``mode="bar"``: one self-overwriting line on ``stream`` when it is a terminal, nothing
    otherwise (the replay's default); ``mode="lines"``: one log line every ``every_s`` (the
    real-time runner's status). ``clock`` returns wall time in seconds (tests pass a fake).
    """

    def __init__(self, stream=None, mode: str = "bar", every_s: float = 0.5, show_lag: bool = False, clock=time.time):
        if mode not in ("bar", "lines", "off"):
            raise ValueError(f"progress mode {mode!r} is unknown; use 'bar', 'lines' or 'off'")
        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = mode == "lines" or (mode == "bar" and bool(isatty and isatty()))
        self.mode = mode
        self.every_s = every_s
        self.show_lag = show_lag
        self.clock = clock
        self._t0 = time.perf_counter()
        self._last = -np.inf
        self._drawn = False

    def line(self, rows: int, event_ms: int, extra: str = "") -> str:
        dt = max(time.perf_counter() - self._t0, 1e-9)
        rate = rows / dt
        rate_s = f"{rate / 1e6:.2f} M rows/s" if rate >= 1e5 else f"{rate:,.0f} rows/s"
        s = f"{rows:,} rows | event time {fmt_time(event_ms)} | {rate_s}"
        if self.show_lag and event_ms != _NO_DATA:
            s += f" | lag {self.clock() - event_ms / 1000:.0f} s"
        return s + (f" | {extra}" if extra else "")

    def update(self, rows: int, event_ms: int, extra: str = "", force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        text = self.line(rows, event_ms, extra)
        if self.mode == "bar":
            self.stream.write("\r" + text + "\x1b[K")
            self._drawn = True
        else:
            self.stream.write(f"[{fmt_time(self.clock() * 1000)}] {text}\n")
        self.stream.flush()

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


# ---- sources -------------------------------------------------------------------------------------------------
class IteratorSource:
    """Any iterable of ``(source, data)`` batches as a positioned source: the position is the
    number of batches consumed; ``start`` skips that many (the iterable must replay the same
    batches in the same order for an exact resume)."""

    def __init__(self, batches, start: int = 0):
        self.batches = batches
        self.start = int(start or 0)
        self.n = 0

    def __iter__(self):
        for k, b in enumerate(self.batches):
            if k < self.start:
                continue
            self.n = k + 1
            yield b

    def position(self) -> int:
        return max(self.n, self.start)


# ---- the runner ------------------------------------------------------------------------------------------------
class Runner:
    """Feeds a pipeline from a positioned source with periodic checkpoints, progress and a clean stop.

    Parameters
    ----------
    pipe : Pipeline
    checkpoint_path : path, optional
        Where the periodic checkpoints go (one file, replaced atomically each time); None: none.
    checkpoint_every_min : float
        Event-time minutes between checkpoints (default :data:`DEFAULT_CHECKPOINT_EVERY_MIN`).
    outputs : dict name -> OutputLog
        Files whose lengths each checkpoint records (and syncs first).
    driver : dict, optional
        The driver section restored from a checkpoint (counters, next checkpoint time) or the
        run's settings to store; the runner keeps ``n_in``, ``position``, ``next_checkpoint_ms``,
        ``seconds`` and ``outputs`` in it.
    progress : Progress, optional
    hooks : list of callables ``(source, data) -> None``
        Called before each batch (e.g. a topology change at a given event time).
    background : False, True / "thread", or "fork"
        How periodic checkpoints are written. False (default): before processing goes on.
        True or "thread": from a snapshot in a background thread, overlapped with the processing
        of the next batches; the snapshot holds about the state's size in memory until written.
        "fork": by a forked process from the state as it was at the fork, overlapped too; the
        pages the run changes meanwhile are copied by the kernel (at most the state's size) and
        the writer dies with the run; where a fork is not safe
        (:func:`~telcoanalytics.pipeline.checkpoint.fork_unavailable`: another Python thread
        running, no Linux ``prctl``, no ``os.fork``) the checkpoint is written in the foreground
        and ``fork_fallback`` says why.

    Examples
    --------
    >>> from telcoanalytics.synth.network import generate
    >>> from telcoanalytics.pipeline.pipeline import Pipeline
    >>> day = generate(n_elements=60, days=0.05, seed=1)
    >>> r = Runner(Pipeline(day.topology))
    >>> r.run(IteratorSource(day.raw_batches()))
    True
    >>> r.driver["n_in"] == sum(c["read"] for c in r.pipe.counts().values())
    True
    """

    def __init__(
        self,
        pipe,
        checkpoint_path=None,
        checkpoint_every_min: float = DEFAULT_CHECKPOINT_EVERY_MIN,
        outputs: dict | None = None,
        driver: dict | None = None,
        progress: Progress | None = None,
        hooks=(),
        background: bool = False,
    ):
        if not checkpoint_every_min > 0:
            raise ValueError(f"checkpoint_every_min must be > 0 (event-time minutes), got {checkpoint_every_min!r}")
        self.pipe = pipe
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        self.every_ms = int(round(checkpoint_every_min * 60_000))
        self.outputs = dict(outputs or {})
        self.driver = {} if driver is None else driver  # shared: hooks record their state in it
        self.driver.setdefault("n_in", 0)
        self.driver.setdefault("position", None)
        self.driver.setdefault("next_checkpoint_ms", None)
        self.driver.setdefault("n_checkpoints", 0)
        self.driver.setdefault("proc_s", 0.0)
        for k, v in (self.driver.get("seconds") or {}).items():
            pipe.seconds[k] = v
        self.progress = progress or Progress(mode="off")
        self.hooks = list(hooks)
        self.stop_requested = False
        self.checkpoint_s = 0.0  # seconds the run waited for checkpoints (snapshots, writes in the foreground)
        self.checkpoint_write_s = 0.0  # seconds the background writers took (overlapped with processing)
        self.checkpoint_writer_mib = 0.0  # largest private memory a forked writer reported (MiB)
        self._pending = None  # the checkpoint being written in the background (Pending/ForkedCheckpoint)
        if background not in (False, True, "thread", "fork"):
            raise ValueError(f"background must be False, True / 'thread' or 'fork', got {background!r}")
        self.background = background
        self.fork_fallback: str | None = None  # why the last "fork" checkpoint was written in the foreground

    def request_stop(self, *_args) -> None:
        """Stop after the current batch (a signal handler: ``signal.signal(SIGTERM, r.request_stop)``)."""
        self.stop_requested = True

    def run(self, source, wait: bool = True) -> bool:
        """Feed every batch of ``source``; returns True when it was exhausted, False when stopped.

        With ``background``, periodic checkpoints are written by a forked process or a background
        thread (:func:`~telcoanalytics.pipeline.checkpoint.fork_checkpoint`,
        :func:`~telcoanalytics.pipeline.checkpoint.start_checkpoint`) while the batches after them
        are processed, one at a time. With ``wait`` (default) every one is
        durable when ``run`` returns; without, the last may still be being written (the next
        :meth:`checkpoint`, or :meth:`wait_checkpoint`, waits for it).
        """
        pipe = self.pipe
        t0 = time.perf_counter()
        exhausted = False
        try:
            for name, data in source:
                for h in self.hooks:
                    h(name, data)
                self.driver["n_in"] += pipe.feed([(name, data)])
                wm = pipe.watermark_ms
                if wm != _NO_DATA and self.checkpoint_path is not None:
                    nxt = self.driver["next_checkpoint_ms"]
                    if nxt is None:
                        self.driver["next_checkpoint_ms"] = wm - wm % self.every_ms + self.every_ms
                    elif wm >= nxt:
                        self.driver["proc_s"] += time.perf_counter() - t0
                        self.checkpoint(source.position(), background=self.background)
                        t0 = time.perf_counter()
                        self.driver["next_checkpoint_ms"] = wm - wm % self.every_ms + self.every_ms
                self.progress.update(self.driver["n_in"], pipe.max_event_ms)
                if self.stop_requested:
                    break
            else:
                exhausted = True
        except BaseException as exc:
            err = self._wait_pending(raise_error=False)
            if err is not None:  # both failed: the run's error goes on, naming the checkpoint's
                exc.add_note(f"a background checkpoint write failed too: {type(err).__name__}: {err}")
            raise
        finally:
            self.driver["proc_s"] += time.perf_counter() - t0
            self.driver["position"] = source.position()
            self.progress.update(self.driver["n_in"], pipe.max_event_ms, force=True)
            self.progress.close()
        if wait:
            self.wait_checkpoint()
        return exhausted

    def checkpoint(self, position, path=None, background: bool = False, **extra) -> Path:
        """Sync the outputs, then write the pipeline and the driver section (position, output lengths).

        With ``background`` (a :class:`~telcoanalytics.pipeline.Pipeline`; "fork" or True / "thread",
        as the constructor's), the state is written by a forked process or from a snapshot by a
        background thread (:meth:`wait_checkpoint` waits for it); otherwise the file is written
        before this returns. A write still running is waited for first.
        """
        tc = time.perf_counter()
        self._wait_pending()
        if hasattr(self.pipe, "drain"):  # deferred findings delivered before the outputs' lengths are taken
            self.pipe.drain()
        for log in self.outputs.values():
            log.sync()
        self.driver["position"] = position
        self.driver["outputs"] = {name: log.state() for name, log in self.outputs.items()}
        self.driver["seconds"] = dict(self.pipe.seconds)
        self.driver["n_checkpoints"] += 1
        self.driver.update(extra)
        target = Path(path or self.checkpoint_path)
        mode = self._mode(background)
        if mode == "fork":
            from telcoanalytics.pipeline import checkpoint as ck

            try:
                self._pending = ck.fork_checkpoint(self.pipe, target, driver=self.driver)
                out = target
            except OSError as exc:  # no process to spare (EAGAIN, ENOMEM): today's foreground write
                self.fork_fallback = f"the fork failed ({exc})"
                out = self.pipe.checkpoint(target, driver=self.driver)
        elif mode == "thread":
            from telcoanalytics.pipeline.checkpoint import start_checkpoint

            self._pending = start_checkpoint(self.pipe, target, driver=self.driver)
            out = target
        else:
            out = self.pipe.checkpoint(target, driver=self.driver)
        self.checkpoint_s += time.perf_counter() - tc
        return out

    def _mode(self, background) -> str:
        """How this checkpoint is written: "fork", "thread" or "foreground" (a fork where it is
        unavailable, or a pipeline that writes its own checkpoint, falls back to the foreground;
        the reason is kept in ``fork_fallback``)."""
        if not background or not _writes_in_background(self.pipe):
            return "foreground"
        if background == "fork":
            from telcoanalytics.pipeline.checkpoint import fork_unavailable

            self.fork_fallback = fork_unavailable()
            return "foreground" if self.fork_fallback else "fork"
        return "thread"

    def wait_checkpoint(self) -> Path | None:
        """Wait for the checkpoint a forked process or a background thread is writing (if any);
        returns its path, or raises its error (a full disk ...)."""
        tw = time.perf_counter()
        try:
            return self._wait_pending()
        finally:
            self.checkpoint_s += time.perf_counter() - tw

    def _wait_pending(self, raise_error: bool = True):
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        try:
            out = pending.wait()
        except BaseException as exc:
            if raise_error:
                raise
            return exc
        finally:
            self.checkpoint_write_s += pending.seconds
            mib = getattr(pending, "report", {}).get("private_mib")
            if mib is not None and not mib <= self.checkpoint_writer_mib:  # NaN: unknown
                self.checkpoint_writer_mib = mib
        return out if raise_error else None


def _writes_in_background(pipe) -> bool:
    """Can ``pipe``'s checkpoint be written from a snapshot by a background thread? (A plain
    :class:`~telcoanalytics.pipeline.Pipeline`; others, a Dask-partitioned one, write their own.)"""
    from telcoanalytics.pipeline.pipeline import Pipeline

    return isinstance(pipe, Pipeline) and type(pipe).checkpoint is Pipeline.checkpoint


def stop_on_signals(runner: Runner, signals=(signal.SIGTERM, signal.SIGINT)) -> dict:
    """Install handlers asking ``runner`` to stop after its current batch; returns the previous
    handlers (give them to :func:`restore_signals`)."""
    return {s: signal.signal(s, runner.request_stop) for s in signals}


def restore_signals(previous: dict) -> None:
    for s, h in previous.items():
        signal.signal(s, h)
