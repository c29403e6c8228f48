"""Real time: follow a folder where files arrive, process them as they come, report the lag, keep
checkpoints, stop cleanly on SIGTERM (``telcoanalytics run --config FILE``).

Files are named ``<source>*.csv`` / ``<source>*.parquet`` (``cdr_20260301T1200.csv``, ...); within a
source they are taken in name order (put a timestamp in the name), each once a poll has seen its
size unchanged (or, better, written under a hidden or ``.tmp`` / ``.part`` name and renamed when
complete: those names are ignored). The position kept in checkpoints is, per source, the last
file finished and the rows consumed of the file in progress, so it stays small for months and a
restart continues exactly where the checkpoint was (the service simply runs the same command
again: an existing ``OUT/checkpoint.npz`` is resumed).

From Python, :func:`run_stream` does the same over any iterator of ``(source, data)`` batches.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from telcoanalytics.pipeline.run import IteratorSource, Progress, Runner, stop_on_signals
from telcoanalytics.records import SOURCES

_IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload")


def _source_of(name: str) -> str | None:
    low = name.lower()
    if low.startswith(".") or low.endswith(_IGNORED_SUFFIXES):
        return None
    if not low.endswith((".csv", ".csv.gz", ".tsv", ".parquet", ".pq")):
        return None
    for s in SOURCES:
        if low.startswith(s):
            return s
    return None


class DirectorySource:
    """Batches from files arriving in ``directory`` (see the module docstring).

    Parameters
    ----------
    directory : path
    chunk_rows : int
        Rows per chunk read.
    start : dict, optional
        A checkpoint's position: ``{source: {"done": last finished name, "file": in progress,
        "rows": rows consumed of it}}``.
    poll_s : float
        Seconds between listings of the folder.
    idle_exit_s : float, optional
        Stop after this long without a new file (None: follow until stopped).
    should_stop : callable, optional
        Polled between files and while waiting; True ends the iteration.
    clock, sleep : callables
        Wall clock and sleep (tests pass fakes).
    """

    def __init__(
        self,
        directory,
        chunk_rows: int = 1_000_000,
        start: dict | None = None,
        poll_s: float = 1.0,
        idle_exit_s: float | None = None,
        should_stop=None,
        clock=time.monotonic,
        sleep=time.sleep,
    ):
        self.dir = Path(directory)
        if not self.dir.is_dir():
            raise SystemExit(
                f"follow.dir {self.dir} is not a folder; create it or point [follow] dir at the drop folder"
            )
        self.chunk_rows = int(chunk_rows)
        self.pos = {s: dict(v) for s, v in (start or {}).items()}
        self.poll_s = float(poll_s)
        self.idle_exit_s = idle_exit_s
        self.should_stop = should_stop or (lambda: False)
        self.clock = clock
        self.sleep = sleep
        self._sizes: dict[str, int] = {}
        self.n_files = 0

    def _ready(self) -> list[tuple[str, Path]]:
        """Files not yet finished whose size did not change since the previous listing, in name order."""
        out = []
        sizes = {}
        for p in sorted(self.dir.iterdir()):
            s = _source_of(p.name)
            if s is None or not p.is_file():
                continue
            done = self.pos.get(s, {}).get("done")
            if done is not None and p.name <= done:
                continue
            size = p.stat().st_size
            sizes[p.name] = size
            if self._sizes.get(p.name) == size:
                out.append((s, p))
        self._sizes = sizes
        return out

    def _file_batches(self, source: str, path: Path):
        from telcoanalytics.ingest.readers import iter_chunks

        st = self.pos.setdefault(source, {"done": None, "file": None, "rows": 0})
        skip = st["rows"] if st.get("file") == path.name else 0
        st["file"], st["rows"] = path.name, skip
        seen = 0
        for chunk in iter_chunks(path, self.chunk_rows):
            seen += chunk.n
            if seen <= skip:
                continue
            st["rows"] = seen
            yield source, chunk
        st["done"], st["file"], st["rows"] = path.name, None, 0
        self.n_files += 1

    def __iter__(self):
        last_new = self.clock()
        while not self.should_stop():
            ready = self._ready()
            for source, path in ready:
                yield from self._file_batches(source, path)
                if self.should_stop():
                    return
            if ready:
                last_new = self.clock()
                continue
            if self.idle_exit_s is not None and self.clock() - last_new >= self.idle_exit_s:
                return
            t_end = self.clock() + self.poll_s
            while self.clock() < t_end and not self.should_stop():
                self.sleep(min(0.1, self.poll_s))

    def position(self) -> dict:
        return {s: dict(v) for s, v in self.pos.items()}


def run_stream(pipe, batches, checkpoint_path=None, checkpoint_every_min=None, outputs=None, progress=None):
    """Process any iterator of ``(source, data)`` batches as they come, with periodic checkpoints
    and lag reports; stops cleanly (final checkpoint) on SIGTERM / SIGINT. Returns the :class:`Runner`.

    Examples
    --------
    >>> from telcoanalytics.synth.network import generate
    >>> from telcoanalytics.pipeline.pipeline import Pipeline
    >>> day = generate(n_elements=60, days=0.05, seed=1)
    >>> r = run_stream(Pipeline(day.topology), day.raw_batches(), progress=Progress(mode="off"))
    >>> r.driver["n_in"] > 0
    True
    """
    from telcoanalytics.pipeline import run as run_module
    from telcoanalytics.pipeline.run import DEFAULT_CHECKPOINT_EVERY_MIN, restore_signals

    src = batches if hasattr(batches, "position") else IteratorSource(batches)
    runner = Runner(
        pipe,
        checkpoint_path=checkpoint_path,
        checkpoint_every_min=checkpoint_every_min or DEFAULT_CHECKPOINT_EVERY_MIN,
        outputs=outputs,
        driver=pipe.checkpoint_driver,
        progress=progress or Progress(mode="lines", every_s=10.0, show_lag=True),
        background=run_module.CHECKPOINT_WRITER,
    )
    if hasattr(src, "should_stop"):
        src.should_stop = lambda: runner.stop_requested
    previous = stop_on_signals(runner)
    try:
        runner.run(src)
    finally:
        restore_signals(previous)
    if checkpoint_path is not None:
        runner.checkpoint(src.position())
    return runner


def run_follow(config, out=None, say=print) -> int:
    """``telcoanalytics run``: follow ``[follow].dir`` with the configuration's pipeline; resumes
    ``OUT/checkpoint.npz`` when present. Returns the exit code."""
    from telcoanalytics.pipeline.checkpoint import CheckpointError
    from telcoanalytics.pipeline.pipeline import Pipeline
    from telcoanalytics.pipeline.replay import (
        CHECKPOINT_NAME,
        _LateSink,
        _outputs,
        attach_finding_logs,
        build_pipeline,
        load_topology_file,
    )
    from telcoanalytics.pipeline.run import JsonlAlertSink, streaming_quarantine, use_quarantine

    s = config.settings
    f = config.follow
    if f["dir"] is None:
        raise SystemExit(
            f"config {config.path}: follow.dir is missing; set [follow] dir = the folder where files arrive"
        )
    if s["topology"] is None:
        raise SystemExit(
            f"config {config.path}: topology.file is missing; set [topology] file = the network's topology"
        )
    out = Path(out or s["out"])
    out.mkdir(parents=True, exist_ok=True)
    ck = out / CHECKPOINT_NAME
    driver = None
    if ck.exists():
        holder = [None]
        try:
            pipe = Pipeline.restore(ck, alert_sinks=[_LateSink(holder)])
        except CheckpointError as exc:
            raise SystemExit(str(exc)) from None
        driver = pipe.checkpoint_driver or {}
        logs = _outputs(out, s, driver.get("outputs"))
        holder[0] = JsonlAlertSink(logs["alerts"])
        say(f"resuming from {ck}: {driver.get('n_in', 0):,} rows processed before")
    else:
        topo = load_topology_file(s["topology"])
        logs = _outputs(out, s, None)
        pipe = build_pipeline(s, topo, logs["alerts"])
        pipe.checkpoint_driver = {"settings": s, "head": []}
    use_quarantine(pipe, streaming_quarantine(logs["quarantine"], restored=pipe.quarantine))
    attach_finding_logs(pipe, out, s, (driver or {}).get("outputs"), logs)
    src = DirectorySource(
        f["dir"],
        s["chunk_rows"],
        start=(driver or {}).get("position"),
        poll_s=f["poll_s"],
        idle_exit_s=f["idle_exit_s"],
    )
    say(f"following {f['dir']} (poll {f['poll_s']:g} s); outputs and checkpoints in {out}/; stop with SIGTERM")
    runner = run_stream(
        pipe,
        src,
        checkpoint_path=ck if s["checkpoints"] else None,
        checkpoint_every_min=s["checkpoint_every_min"],
        outputs=logs,
        progress=Progress(stream=sys.stdout, mode="lines", every_s=f["status_every_s"], show_lag=True),
    )
    for log in logs.values():
        log.close()
    why = "stopped on request" if runner.stop_requested else "no new file for follow.idle_exit_s"
    say(
        f"{why}: {runner.driver['n_in']:,} rows from {src.n_files} files this run; final checkpoint "
        f"{'written to ' + str(ck) if s['checkpoints'] else 'disabled'}"
    )
    return 0 if pipe.conserved() else 1
