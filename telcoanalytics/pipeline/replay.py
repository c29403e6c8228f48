"""The replay: a synthetic network day (or the user's files) through the whole pipeline, in
arrival order, with periodic checkpoints and exact resume (``telcoanalytics replay``).

A replay is described by one *settings* dict (JSON-able: what ``telcoanalytics replay`` parses
from its options, or :func:`telcoanalytics.pipeline.config.load_config` from a TOML file; the
defaults are :data:`DEFAULTS`). The settings travel in every checkpoint, so
``telcoanalytics replay --resume OUT`` needs nothing else: it regenerates (or reopens) the same
input, skips to the checkpointed position, truncates ``alerts.jsonl`` and ``quarantine.jsonl``
back to the checkpointed lengths and continues. The final report and both files then equal an
uninterrupted run's (the timings aside).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from telcoanalytics.pipeline.run import (
    DEFAULT_CHECKPOINT_EVERY_MIN,
    IteratorSource,
    JsonlAlertSink,
    OutputLog,
    Progress,
    Runner,
    streaming_quarantine,
    use_quarantine,
)
from telcoanalytics.records import SOURCES, TIME_FIELD

CHECKPOINT_NAME = "checkpoint.npz"
"""The periodic checkpoint inside the output folder."""

DEFAULTS = {
    "elements": 10_000,
    "days": 1.0,
    "seed": 7,
    "scale": 1.0,
    "history_days": 1.0,
    "input": None,
    "topology": None,
    "out": "replay_out",
    "batch_s": 60,
    "chunk_rows": 1_000_000,
    "max_disorder_s": 60,
    "allow_extra_columns": False,
    "lateness_s": 900,
    "route_level": "region",
    "components": None,
    "rehome_share": 0.01,
    "complaints": 1.0,  # synthetic customer complaints following degradations (analysis section)
    "n_changes": 1,  # a synthetic software upgrade of known effect (before/after in the analysis section)
    "checkpoint_every_min": DEFAULT_CHECKPOINT_EVERY_MIN,
    "checkpoints": True,
    "ingest": {},
    "component_options": {},
    "outputs": {"rotate_mb": None, "keep": None},
    "workers": 0,  # > 0: the components run partitioned by route_level on a local Dask cluster of this many processes
}
"""Settings of a replay; equal to ``telcoanalytics replay``'s defaults."""


# ---- sources -----------------------------------------------------------------------------------------
class SyntheticSource(IteratorSource):
    """The synthetic day's deterministic arrival-order stream from the replay start on; the
    position is the index of the next batch."""

    def __init__(self, settings: dict, start: int = 0, say=print):
        from telcoanalytics.synth.network import SynthConfig, generate

        s = settings
        cfg = SynthConfig(
            n_elements=s["elements"],
            days=s["days"] + s["history_days"],
            seed=s["seed"],
            scale=s["scale"],
            complaints=s["complaints"],
            n_changes=s["n_changes"],
        )
        t0 = time.perf_counter()
        day = generate(cfg)
        self.day = day
        from telcoanalytics.analysis.routing import with_capacities

        self.topology = with_capacities(day.topology, day.capacity_mbps)  # for the routing analysis
        self.replay_from = day.start_ms + int(round(s["history_days"] * 86_400_000))
        self.head = (
            f"generated synthetic network: {cfg.n_elements_scaled:,} elements in "
            f"{day.topology.n_nodes('site'):,} sites and {day.topology.n_nodes('region')} regions, "
            f"{day.n_events:,} clean events over {(day.end_ms - day.start_ms) / 3_600_000:.1f} h "
            f"({s['history_days']:g} day of history to learn from, then {s['days']:g} day replayed), "
            f"{len(day.labels)} injected scenarios"
        )
        say(f"{self.head} ({time.perf_counter() - t0:.1f} s)")
        from telcoanalytics.synth.stream import arrival_batches

        # the day's raw batches whose first row arrives at or after replay_from (the history before
        # it and the batches before `start` are skipped without being built). The rows are gathered
        # as opaque records (a structured gather copies field by field, about twice the time) and
        # handed on with their dtype again: the same bytes.
        super().__init__(None, start)
        arrays, streams, self._dtypes = _opaque_sources(day)
        self.batches = arrival_batches(
            arrays,
            streams,
            s["batch_s"] * 1000,
            from_ms=self.replay_from,
            start=self.start,
        )

    def __iter__(self):
        dtypes = self._dtypes
        for k, (source, rows) in enumerate(self.batches, start=self.start):
            self.n = k + 1
            yield source, rows if source not in dtypes else rows.view(dtypes[source])


def _opaque_sources(day) -> tuple[dict, dict, dict]:
    """The day's clean rows and its streams' extra rows viewed as opaque records of the same size
    (``np.void``), for :func:`~telcoanalytics.synth.stream.arrival_batches`; returns ``(arrays,
    streams, dtypes)``, ``dtypes`` giving the structured dtype of each source viewed so (a source
    whose arrays cannot be viewed, not contiguous, stays as it is)."""
    from dataclasses import replace

    arrays, streams, dtypes = {}, {}, {}
    for name in day.sources:
        a, st = getattr(day, name), day._streams[name]
        if a.dtype.names and a.dtype == st.extra.dtype and a.flags.c_contiguous and st.extra.flags.c_contiguous:
            void = np.dtype((np.void, a.dtype.itemsize))
            dtypes[name] = a.dtype
            a, st = a.view(void), replace(st, extra=st.extra.view(void))
        arrays[name], streams[name] = a, st
    return arrays, streams, dtypes


def find_input_files(directory) -> dict:
    """``{source: path}`` of ``<source>.parquet`` / ``<source>.csv`` in ``directory``."""
    d = Path(directory)
    files = {}
    for s in SOURCES:
        for ext in ("parquet", "csv"):
            if (d / f"{s}.{ext}").exists():
                files[s] = d / f"{s}.{ext}"
                break
    return files


def load_topology_file(path):
    from telcoanalytics.topology import load_sqlite, read_csv, read_json

    path = Path(path)
    loader = {".sqlite": load_sqlite, ".db": load_sqlite, ".csv": read_csv, ".json": read_json}.get(path.suffix)
    if loader is None:
        raise SystemExit(f"topology {path}: unknown topology file type (use .sqlite, .db, .csv or .json)")
    if not path.is_file():
        raise SystemExit(f"topology {path} does not exist; pass an existing .sqlite/.db/.csv/.json file")
    return loader(path)


class FileSource:
    """The sources' files merged by event time (:func:`telcoanalytics.ingest.merge.merged_batches`);
    the position is the merge's ``position()`` (rows consumed per file), and ``start`` continues
    right after it."""

    def __init__(self, settings: dict, start: dict | None = None, say=print):
        from telcoanalytics.ingest.merge import merged_batches

        d = Path(settings["input"])
        if not d.is_dir():
            raise SystemExit(f"--input {d} is not a directory; it must hold <source>.parquet/.csv files and a topology")
        topo_path = settings["topology"] or next(
            (d / n for n in ("topology.sqlite", "topology.db", "topology.csv", "topology.json") if (d / n).exists()),
            None,
        )
        if topo_path is None:
            raise SystemExit(f"no topology found in {d} (topology.sqlite/.db/.csv/.json); pass --topology")
        self.topology = load_topology_file(topo_path)
        self.files = find_input_files(d)
        if not self.files:
            raise SystemExit(
                f"no source files in {d}: expected any of " + ", ".join(f"{s}.parquet/{s}.csv" for s in SOURCES)
            )
        self.day = None
        self.replay_from = None
        self.head = (
            f"replaying files from {d}: "
            + ", ".join(f"{s}={p.name}" for s, p in self.files.items())
            + f"; topology {Path(topo_path).name}: {self.topology.n_elements:,} elements"
        )
        say(self.head)
        self._batches = merged_batches(
            self.files,
            chunk_rows=int(settings["chunk_rows"]),
            max_disorder_ms=int(settings["max_disorder_s"]) * 1000,
            batch_ms=int(settings["batch_s"]) * 1000,
            start=start or None,
            allow_extra_columns=bool(settings["allow_extra_columns"]),
        )

    def __iter__(self):
        return iter(self._batches)

    def position(self) -> dict:
        return self._batches.position()


# ---- building the pipeline --------------------------------------------------------------------------------
def _outputs(out: Path, settings: dict, state: dict | None, names=("alerts", "quarantine", "incidents")) -> dict:
    o = settings.get("outputs") or {}
    rot = o.get("rotate_mb")
    rot_bytes = None if rot is None else int(rot * 2**20)
    state = state or {}
    return {name: OutputLog(out / f"{name}.jsonl", rot_bytes, o.get("keep"), state=state.get(name)) for name in names}


def attach_finding_logs(pipe, out: Path, settings: dict, state: dict | None, logs: dict) -> None:
    """Components that can stream their findings (``attach_log``) write them to ``OUT/<LOG_NAME>.jsonl``
    instead of keeping them in memory and checkpoints; the logs join ``logs``."""
    for comp in pipe.components.values():
        if hasattr(comp, "attach_logs"):  # the partitions of a --workers run: their logs, merged here
            names = comp.log_names()
            logs.update(_outputs(out, settings, state, names))
            comp.attach_logs({n: logs[n] for n in names})
            continue
        name = getattr(comp, "LOG_NAME", None)
        if name is not None and hasattr(comp, "attach_log"):
            logs.update(_outputs(out, settings, state, (name,)))
            comp.attach_log(logs[name])


def _ingest_options(settings: dict) -> dict:
    """Per-source ingest options; ``allow_extra_columns`` applies to every source."""
    opts = {k: dict(v) for k, v in (settings.get("ingest") or {}).items()}
    if settings.get("allow_extra_columns"):
        for s in SOURCES:
            opts[s] = {**opts.get(s, {}), "allow_extra_columns": True}
    return opts


def build_pipeline(settings: dict, topology, alert_log, incident_log=None, client=None):
    """A fresh pipeline from the settings (components with their options, alert manager, ingest options).

    With ``client`` (a ``dask.distributed.Client``; ``settings["workers"] > 0`` in a replay) the
    components run partitioned by the route level on the cluster
    (:class:`~telcoanalytics.pipeline.distributed.PartitionedComponents`, one partition per node):
    ingest, routing, the tick schedule and the alert manager stay in this process.
    """
    from telcoanalytics.alerts.manager import AlertManager
    from telcoanalytics.pipeline.components import build_components
    from telcoanalytics.pipeline.pipeline import Pipeline

    lateness_ms = int(settings["lateness_s"]) * 1000
    enabled = settings["components"]
    options = settings.get("component_options") or {}
    cls = Pipeline
    if client is not None:
        from telcoanalytics.pipeline.distributed import PartitionedComponents, PartitionedPipeline

        part = PartitionedComponents(
            topology, settings["route_level"], None, enabled, lateness_ms, options, client=client
        )
        components = {"partitions": part}
        cls = PartitionedPipeline
    else:
        components = build_components(topology, enabled, allowed_lateness_ms=lateness_ms, options=options)
    with_alerts = enabled is None or "alerts" in enabled
    alert_opts = (settings.get("component_options") or {}).get("alerts", {})
    alerts = None
    if with_alerts:
        from telcoanalytics.alerts.incidents import IncidentBook

        book = IncidentBook(topology.levels, log=incident_log)
        alerts = AlertManager(topology, sinks=[JsonlAlertSink(alert_log)], incidents=book, **alert_opts)
    return cls(
        topology,
        route_level=settings["route_level"],
        allowed_lateness_ms=lateness_ms,
        components=components,
        alerts=alerts,
        ingest_options=_ingest_options(settings),
    )


def topology_change_hook(at_ms: int, apply, state: dict, key: str = "rehome_done"):
    """A :class:`Runner` hook calling ``apply()`` once, before the first batch holding a row at or
    after ``at_ms`` of event time (between micro-batches, while data flows); ``state[key]``
    records that it happened (it is checkpointed with the driver section, so a resumed run does
    not apply it twice)."""

    def hook(source, rows):
        if state.get(key) or not len(rows) or int(rows[TIME_FIELD[source]].max()) < at_ms:
            return
        state[key] = True
        apply()

    return hook


def _rehome_hook(pipe, src, settings, driver):
    from telcoanalytics.pipeline.replay_report import hhmm, rehome_plan

    day = src.day
    if day is None or settings["rehome_share"] <= 0:
        return None
    at_ms = src.replay_from + int(round(settings["days"] * 86_400_000 / 2))
    moved, new_site = rehome_plan(day, settings["rehome_share"], seed=settings["seed"])
    if not len(moved):
        return None

    def apply():
        v0 = pipe.topology.version
        target, change = pipe.topology.rehome_elements(moved, new_site)
        tc = time.perf_counter()
        try:
            pipe.change_topology(target, [change])
        except ValueError as exc:  # a component cannot follow: nothing changed, say so
            driver["notes"].append(f"== topology change at {hhmm(at_ms)} not applied: {exc}")
            return
        followed = [
            *getattr(pipe, "component_names", pipe.components),
            *(["alerts"] if pipe.alerts is not None else []),
        ]
        driver["notes"].append(
            f"== topology change while data flowed: at {hhmm(at_ms)} {len(moved):,} elements were "
            f"re-homed to other sites of their region (version {v0} -> {pipe.topology.version}, "
            f"{(time.perf_counter() - tc) * 1e3:.0f} ms); components followed: "
            f"{', '.join(followed) or 'none'}; later rows route and roll up by the new sites"
        )

    return topology_change_hook(at_ms, apply, driver)


# ---- the replay -----------------------------------------------------------------------------------------------
def run_replay(settings: dict | None = None, resume=None, checkpoint=None, restore=None, say=None, progress=None):
    """Run (or resume) a replay; returns the process exit code (0: conserved).

    With ``settings["workers"] > 0`` a fresh run starts a local Dask cluster of that many worker
    processes and runs the components partitioned by the route level on it (see
    :func:`build_pipeline`); the findings and outputs equal the in-process run's. A resumed
    partitioned run continues on a cluster of as many workers (a restored one too, given
    ``workers``).

    Parameters
    ----------
    settings : dict
        Replay settings (missing keys take :data:`DEFAULTS`); ignored with ``resume``.
    resume : path, optional
        Output folder of an interrupted replay: continue from its last checkpoint.
    checkpoint : path, optional
        Also write the final state here (``--checkpoint``).
    restore : path, optional
        Start from this checkpoint's state (``--restore``; the input is read from its position
        when the checkpoint has one, from the start otherwise).
    say : callable, optional
        Prints a report line (default ``print``).
    progress : Progress, optional
        Default: a progress bar on standard error when it is a terminal.
    """
    workers = int((settings or {}).get("workers") or 0)
    if resume is not None or restore is not None:  # on workers when the checkpoint's run was partitioned
        ck = Path(resume) / CHECKPOINT_NAME if resume is not None else Path(restore)
        was = int((checkpoint_settings(ck) or {}).get("workers") or 0)
        workers = was if resume is not None else (workers if was > 0 else 0)
    if workers <= 0:
        return _run_replay(settings, resume, checkpoint, restore, say, progress)
    try:
        from telcoanalytics.pipeline.distributed import local_client

        cluster = local_client(workers)
    except ImportError as exc:  # pragma: no cover - dask is installed in the test environment
        raise ImportError(
            f"--workers {workers} needs Dask: pip install 'telcoanalytics[distributed]' (or run without --workers)"
        ) from exc

    with cluster as client:
        return _run_replay(settings, resume, checkpoint, restore, say, progress, client=client)


def checkpoint_settings(path) -> dict | None:
    """The replay settings stored in a checkpoint's driver section (read without loading its state);
    None when there are none or the file cannot be read (restoring it then says what is wrong)."""
    import json

    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["__meta__"]).decode())
        return dict(meta["driver"]["settings"])
    except Exception:  # any unreadable file: the restore that follows reports it
        return None


def _run_replay(settings, resume, checkpoint, restore, say, progress, client=None):
    """The replay itself (``client``: run the components partitioned on that Dask cluster)."""
    from telcoanalytics.pipeline import run as run_module
    from telcoanalytics.pipeline.checkpoint import CheckpointError
    from telcoanalytics.pipeline.pipeline import Pipeline
    from telcoanalytics.pipeline.replay_report import replay_report

    lines: list[str] = []

    def _say(msg=""):
        (say or (lambda m: print(m, flush=True)))(msg)
        lines.append(msg)

    t_start = time.perf_counter()
    driver = None
    pipe = None
    if resume is not None or restore is not None:
        ck_path = Path(resume) / CHECKPOINT_NAME if resume is not None else Path(restore)
        if resume is not None and not ck_path.is_file():
            raise SystemExit(
                f"--resume {resume}: no checkpoint there ({ck_path} is missing); the run wrote none yet "
                "(checkpoints come every checkpoint_every_min minutes of event time): start it afresh"
            )
        try:
            holder = [None]
            cls = Pipeline
            if client is not None:  # a partitioned run: its partitions restored on the cluster's workers
                from telcoanalytics.pipeline.distributed import PartitionedPipeline as cls
            pipe = cls.restore(ck_path, alert_sinks=[_LateSink(holder)])
        except CheckpointError as exc:
            raise SystemExit(str(exc)) from None
        driver = pipe.checkpoint_driver
        if resume is not None:
            if not driver or "settings" not in driver:
                raise SystemExit(
                    f"--resume {resume}: {ck_path} was not written by a replay (no run settings in it); "
                    "use --restore FILE with the replay's options instead"
                )
            if driver.get("finished"):
                raise SystemExit(f"--resume {resume}: that replay finished already (see {resume}/report.txt)")
            settings = dict(driver["settings"], out=str(resume))
    settings = {**DEFAULTS, **(settings or {})}
    out = Path(settings["out"])
    out.mkdir(parents=True, exist_ok=True)
    resuming = resume is not None
    if resuming:
        lines += driver.get("head", [])
        print(
            f"resuming {out} from its checkpoint: {driver['n_in']:,} rows already processed "
            f"({pipe.n_batches:,} batches, checkpoint {driver['n_checkpoints']})",
            flush=True,
        )
    start = driver.get("position") if (driver and (resuming or driver.get("position") is not None)) else None
    quiet = (lambda m: None) if resuming else _say
    src = (FileSource if settings["input"] else SyntheticSource)(settings, start=start or None, say=quiet)
    logs = _outputs(out, settings, driver.get("outputs") if resuming else None)
    if pipe is None:
        pipe = build_pipeline(settings, src.topology, logs["alerts"], logs["incidents"], client=client)
    else:
        holder[0] = JsonlAlertSink(logs["alerts"])
        if pipe.alerts is not None and pipe.alerts.incidents is not None:
            pipe.alerts.incidents.log = logs["incidents"]
        if not resuming and restore is not None:
            _say(f"restored state from {restore} ({pipe.n_batches:,} batches already processed)")
    use_quarantine(pipe, streaming_quarantine(logs["quarantine"], restored=pipe.quarantine))
    for comp in pipe.components.values():  # the synthetic day's ground truth, for the analysis report
        if hasattr(comp, "context_day"):
            comp.context_day = src.day
    attach_finding_logs(pipe, out, settings, driver.get("outputs") if resuming else None, logs)
    if src.day is not None and src.replay_from > src.day.start_ms and driver is None:
        t0 = time.perf_counter()
        for name, comp in pipe.components.items():
            learn = getattr(comp, "learn", None)
            if learn is not None:
                done = learn(src.day, src.replay_from)  # the partitions of a --workers run: the names that learned
                for n in done if isinstance(done, list) else [name]:
                    _say(
                        f"{n}: learned baselines from the history before the replay ({time.perf_counter() - t0:.1f} s)"
                    )
    run_driver = dict(driver or {}) if resuming else {}
    if not resuming and start is not None:  # --restore of a replay's checkpoint: the input continues
        run_driver["n_in"] = driver.get("n_in", 0)
    run_driver.setdefault("settings", settings)
    run_driver.setdefault("notes", [])
    if not resuming:
        run_driver["head"] = list(lines)
    hooks = []
    if not (restore is not None and not resuming):
        hook = _rehome_hook(pipe, src, settings, run_driver)
        if hook is not None:
            hooks.append(hook)
    runner = Runner(
        pipe,
        checkpoint_path=out / CHECKPOINT_NAME if settings["checkpoints"] else None,
        checkpoint_every_min=settings["checkpoint_every_min"],
        outputs=logs,
        driver=run_driver,
        progress=progress if progress is not None else Progress(mode="bar"),
        hooks=hooks,
        background=run_module.CHECKPOINT_WRITER,
    )
    runner.run(src)
    t0 = time.perf_counter()
    pipe.advance(pipe.max_event_ms + 1)  # end of input: everything is final
    pipe.finish()
    runner.driver["proc_s"] += time.perf_counter() - t0
    view = pipe.report_view(src.day) if hasattr(pipe, "report_view") else pipe  # --workers: components merged
    rc = replay_report(view, src, runner, _say, out, t_start)
    from telcoanalytics.pipeline.checkpoint import write_atomic

    write_atomic(out / "report.txt", lambda f: f.write(("\n".join(lines) + "\n").encode()))
    if settings["checkpoints"]:
        runner.checkpoint(src.position(), finished=True)
    if checkpoint:
        runner.checkpoint(src.position(), path=checkpoint, finished=True)
        _say(f"checkpoint written to {checkpoint} (resume with --restore)")
    for log in logs.values():
        log.close()
    files = ", ".join(f"{n}.jsonl" for n in logs if n != "alerts" or pipe.alerts is not None)
    _say(f"outputs in {out}/ (report.txt, {files})")
    if not settings["input"] and settings["elements"] * settings["scale"] <= 20_000 and settings["days"] <= 1:
        _say(
            "bigger: telcoanalytics replay --scale 2   (20,000 elements; --days 3 for three days; ~90 bytes/event in "
            "memory); your data: telcoanalytics replay --input DIR"
        )
    return rc


class _LateSink:
    """Stands in for the alert sink while a pipeline is restored (the output files are opened
    after the checkpoint was read, to truncate them to its lengths)."""

    name = "jsonl"

    def __init__(self, holder):
        self.holder = holder

    @property
    def path(self):
        return self.holder[0].path

    def submit(self, notifications):
        self.holder[0].submit(notifications)

    def flush(self, timeout_s=None):
        return True

    def close(self):
        pass

    @property
    def stats(self):
        return self.holder[0].stats
