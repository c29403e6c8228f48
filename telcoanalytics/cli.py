"""Command line: ``telcoanalytics replay | generate | bench`` (also ``python -m telcoanalytics``).

``replay`` runs the whole pipeline over a synthetic network day (default) or over the user's
files, in arrival order, and prints what it ingested, quarantined, routed and found.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from telcoanalytics.records import SOURCES, TIME_FIELD


def _fmt_int(n) -> str:
    return f"{int(n):,}"


def _table(rows: list[list], header: list[str]) -> list[str]:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    out = []
    for k, r in enumerate(cells):
        out.append("  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if k == 0:
            out.append("  " + "  ".join("-" * w for w in widths))
    return out


# ---- data sources for replay ------------------------------------------------------------------
def _synthetic_batches(args, say):
    from telcoanalytics.synth.network import SynthConfig, generate

    cfg = SynthConfig(n_elements=args.elements, days=args.days + args.history_days, seed=args.seed, scale=args.scale)
    t0 = time.perf_counter()
    day = generate(cfg)
    replay_from = day.start_ms + int(round(args.history_days * 86_400_000))
    say(
        f"generated synthetic network: {cfg.n_elements_scaled:,} elements in "
        f"{day.topology.n_nodes('site'):,} sites and {day.topology.n_nodes('region')} regions, "
        f"{day.n_events:,} clean events over {(day.end_ms - day.start_ms) / 3_600_000:.1f} h "
        f"({args.history_days:g} day of history to learn from, then {args.days:g} day replayed), "
        f"{len(day.labels)} injected scenarios ({time.perf_counter() - t0:.1f} s)"
    )

    def gen():
        for source, rows, arrival_ms, _origin in day.raw_batches(batch_ms=args.batch_s * 1000, with_arrival=True):
            if len(arrival_ms) and arrival_ms[0] >= replay_from:
                yield source, rows

    return day.topology, gen(), day, replay_from


def rehome_plan(day, share: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Elements to move to another site mid-replay (a re-parenting after a transmission change).

    Takes ``share`` of the elements of sites untouched by any injected scenario, each to another
    untouched site of the same region (so the scorecard's ground truth keeps its meaning).
    Returns ``(element_ids, new_site_ids)``, empty when nothing qualifies.
    """
    topo = day.topology
    eid = topo.ids[topo.element_level]
    site_of = topo.element_to("site")
    region_of_site = topo.node_to("site", "region")
    touched = np.zeros(topo.n_nodes("site"), dtype=bool)
    for lab, det in zip(day.labels, day.scenarios):
        if lab["scope_level"] == "region":  # moves stay inside a region: region scopes keep their meaning
            continue
        if lab["scope_level"] == "site":
            touched[np.searchsorted(topo.ids["site"], lab["scope_id"])] = True
        ids = np.asarray(det.get("element_ids", [lab["element_id"]]), dtype=np.int64)
        ids = ids[ids >= 0]
        if len(ids):
            touched[site_of[topo.index_of(ids)]] = True
    free = np.flatnonzero(~touched[site_of] & topo.active)
    n = int(round(share * topo.n_elements))
    if n == 0 or len(free) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(free, size=min(n, len(free)), replace=False))
    new_site = np.full(len(pick), -1, dtype=np.int64)
    for k, e in enumerate(pick):
        cand = np.flatnonzero(~touched & (region_of_site == region_of_site[site_of[e]]))
        cand = cand[cand != site_of[e]]
        if len(cand):
            new_site[k] = cand[rng.integers(len(cand))]
    ok = new_site >= 0
    return eid[pick[ok]], topo.ids["site"][new_site[ok]]


def _with_topology_change(batches, at_ms: int, apply):
    """Yield ``batches``; call ``apply()`` once, before the first batch holding a row at or after
    ``at_ms`` of event time (the change is made between micro-batches, while data flows)."""
    done = False
    for source, rows in batches:
        if not done and len(rows) and int(rows[TIME_FIELD[source]].max()) >= at_ms:
            apply()
            done = True
        yield source, rows


def _file_batches(args, say):
    from telcoanalytics.ingest.merge import merged_batches
    from telcoanalytics.topology.store import load_sqlite, read_csv, read_json

    d = Path(args.input)
    if not d.is_dir():
        raise SystemExit(f"--input {d} is not a directory; it must hold <source>.parquet/.csv files and a topology")
    topo_path = args.topology or next(
        (d / n for n in ("topology.sqlite", "topology.db", "topology.csv", "topology.json") if (d / n).exists()), None
    )
    if topo_path is None:
        raise SystemExit(f"no topology found in {d} (topology.sqlite/.db/.csv/.json); pass --topology")
    topo_path = Path(topo_path)
    loader = {".sqlite": load_sqlite, ".db": load_sqlite, ".csv": read_csv, ".json": read_json}.get(topo_path.suffix)
    if loader is None:
        raise SystemExit(f"--topology {topo_path}: unknown topology file type (use .sqlite, .db, .csv or .json)")
    topo = loader(topo_path)
    files = {}
    for s in SOURCES:
        for ext in ("parquet", "csv"):
            if (d / f"{s}.{ext}").exists():
                files[s] = d / f"{s}.{ext}"
                break
    if not files:
        raise SystemExit(
            f"no source files in {d}: expected any of " + ", ".join(f"{s}.parquet/{s}.csv" for s in SOURCES)
        )
    say(
        f"replaying files from {d}: "
        + ", ".join(f"{s}={p.name}" for s, p in files.items())
        + f"; topology {topo_path.name}: {topo.n_elements:,} elements"
    )

    batches = merged_batches(
        files,
        chunk_rows=args.chunk_rows,
        max_disorder_ms=args.max_disorder_s * 1000,
        batch_ms=args.batch_s * 1000,
        allow_extra_columns=args.allow_extra_columns,
    )
    return topo, batches, None, None


# ---- commands -----------------------------------------------------------------------------------
def cmd_replay(args) -> int:
    from telcoanalytics.pipeline.pipeline import Pipeline
    from telcoanalytics.pipeline.replay import build_components

    lines: list[str] = []

    def say(msg=""):
        print(msg, flush=True)
        lines.append(msg)

    t_start = time.perf_counter()
    if args.input:
        topology, batches, day, replay_from = _file_batches(args, say)
    else:
        topology, batches, day, replay_from = _synthetic_batches(args, say)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    components = build_components(topology, day, out, enabled=args.components)
    if args.restore:
        pipe = Pipeline.restore(args.restore, components)
        say(f"restored state from {args.restore} ({pipe.n_batches:,} batches already processed)")
    else:
        pipe = Pipeline(
            topology, route_level=args.route_level, allowed_lateness_ms=args.lateness_s * 1000, components=components
        )
    if getattr(args, "allow_extra_columns", False):
        for ing in pipe.ingestors.values():
            ing.allow_extra_columns = True
    if day is not None and replay_from > day.start_ms and not args.restore:
        t0 = time.perf_counter()
        for name, comp in pipe.components.items():
            learn = getattr(comp, "learn", None)
            if learn is not None:
                learn(day, replay_from)
                say(f"{name}: learned baselines from the history before the replay ({time.perf_counter() - t0:.1f} s)")
    change_note = []
    if day is not None and args.rehome_share > 0 and not args.restore:
        at_ms = replay_from + int(round(args.days * 86_400_000 / 2))
        moved, new_site = rehome_plan(day, args.rehome_share, seed=args.seed)

        def apply():
            v0 = pipe.topology.version
            target, change = pipe.topology.rehome_elements(moved, new_site)
            tc = time.perf_counter()
            try:
                pipe.change_topology(target, [change])
            except ValueError as exc:  # a component cannot follow: nothing changed, say so
                change_note.append(f"== topology change at {_hhmm(at_ms)} not applied: {exc}")
                return
            change_note.append(
                f"== topology change while data flowed: at {_hhmm(at_ms)} {len(moved):,} elements were "
                f"re-homed to other sites of their region (version {v0} -> {pipe.topology.version}, "
                f"{(time.perf_counter() - tc) * 1e3:.0f} ms); components followed: "
                f"{', '.join(pipe.components) or 'none'}; later rows route and roll up by the new sites"
            )

        if len(moved):
            batches = _with_topology_change(batches, at_ms, apply)
    t0 = time.perf_counter()
    n_in = pipe.feed(batches)
    pipe.advance(pipe.max_event_ms + 1)  # end of input: everything is final
    pipe.finish()
    t_proc = time.perf_counter() - t0

    say()
    say(
        f"== ingested {n_in:,} rows in {pipe.n_batches:,} batches in {t_proc:.1f} s "
        f"({n_in / max(t_proc, 1e-9) / 1e6:.2f} M rows/s end to end, all components included)"
    )
    rows = []
    for s, c in pipe.counts().items():
        rows.append([s, _fmt_int(c["read"]), _fmt_int(c["accepted"]), _fmt_int(c["quarantined"])])
    for line in _table(rows, ["source", "read", "accepted", "quarantined"]):
        say(line)
    say(
        f"   conservation (read == accepted + quarantined, accepted == routed): {'ok' if pipe.conserved() else 'VIOLATED'}"
    )
    say(f"   {pipe.clock.summary()}")
    say()
    say("== quarantine by reason (rows kept with their original values in quarantine.jsonl)")
    q = pipe.quarantine.counts_by_source()
    rows = [[s, r, _fmt_int(n)] for s in SOURCES for r, n in q.get(s, {}).items()]
    for line in _table(rows or [["-", "none", "0"]], ["source", "reason", "rows"]):
        say(line)
    pipe.quarantine.write_jsonl(out / "quarantine.jsonl")
    say()
    say(f"== routed by {pipe.route_level} (accepted rows per source)")
    rt = pipe.region_table()
    key = pipe.route_level + "_id"
    rows = [[r[key]] + [_fmt_int(r[s]) for s in SOURCES] + [_fmt_int(r["total"])] for r in rt]
    for line in _table(rows, [pipe.route_level] + list(SOURCES) + ["total"]):
        say(line)
    if pipe.unrouted.any():
        say(f"   rows of retired elements (kept, not routed): {_fmt_int(pipe.unrouted.sum())}")
    for line in change_note:
        say()
        say(line)
    for comp in pipe.components.values():
        say()
        for line in comp.report_lines():
            say(line)
    if day is not None and ("anomaly" in pipe.components or "sla" in pipe.components):
        from telcoanalytics.pipeline.replay import scenario_scorecard

        say()
        for line in scenario_scorecard(day, replay_from, pipe.components):
            say(line)
    say()
    secs = ", ".join(f"{k} {v:.1f} s" for k, v in pipe.seconds.items())
    say(f"== time: {secs}; total {time.perf_counter() - t_start:.1f} s")
    if args.checkpoint:
        pipe.checkpoint(args.checkpoint)
        say(f"checkpoint written to {args.checkpoint} (resume with --restore)")
    (out / "report.txt").write_text("\n".join(lines) + "\n")
    say(f"outputs in {out}/ (report.txt, quarantine.jsonl{', alerts.jsonl' if 'alerts' in pipe.components else ''})")
    if not args.input and args.elements * args.scale <= 20_000 and args.days <= 1:
        say(
            "bigger: telcoanalytics replay --scale 2   (20,000 elements; --days 3 for three days; ~90 bytes/event in memory); "
            "your data: telcoanalytics replay --input DIR"
        )
    return 0 if pipe.conserved() else 1


def _hhmm(t_ms) -> str:
    import datetime as _dt

    return _dt.datetime.fromtimestamp(int(t_ms) / 1000, tz=_dt.UTC).strftime("%d %H:%M UTC")


def cmd_generate(args) -> int:
    from telcoanalytics.synth.network import SynthConfig, generate

    cfg = SynthConfig(n_elements=args.elements, days=args.days, seed=args.seed, scale=args.scale)
    day = generate(cfg)
    manifest = day.write(args.out, fmt=args.format)
    print(f"wrote {args.format} dataset of {day.n_events:,} clean events to {args.out}")
    for k, v in manifest.items():
        print(f"  {k}: {v}")
    return 0


def cmd_bench(args) -> int:
    bench_dir = Path(__file__).resolve().parents[1] / "benchmarks"
    if not bench_dir.is_dir():
        raise SystemExit(f"benchmarks/ not found next to the package ({bench_dir}); run from a source checkout")
    targets = [str(bench_dir / f"bench_{a}.py") for a in args.areas] if args.areas else [str(bench_dir)]
    env = dict(os.environ)
    if args.n:
        env["BENCH_N"] = str(args.n)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        *targets,
        "--benchmark-only",
        "-q",
        "-p",
        "no:cacheprovider",
        "--benchmark-columns=min,median,max,rounds",
        *args.pytest_args,
    ]
    print("running:", " ".join(cmd), flush=True)
    return subprocess.call(cmd, env=env)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="telcoanalytics", description=__doc__.splitlines()[0])
    ap.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    sub = ap.add_subparsers(dest="command", required=True)

    def synth_args(p):
        p.add_argument("--elements", type=int, default=10_000, help="elements before --scale (default 10,000)")
        p.add_argument("--days", type=float, default=1.0, help="span in days (default 1)")
        p.add_argument("--seed", type=int, default=7)
        p.add_argument("--scale", type=float, default=1.0, help="multiply the network size (and volume)")

    p = sub.add_parser("replay", help="replay a synthetic day (default) or --input DIR through the pipeline")
    synth_args(p)
    p.add_argument(
        "--history-days",
        type=float,
        default=1.0,
        help="synthetic only: days of history generated before the replayed span, from which the "
        "anomaly baselines are learned (default 1; 0 to start cold)",
    )
    p.add_argument("--input", help="directory with <source>.parquet|csv files and a topology file")
    p.add_argument("--topology", help="topology file (.sqlite/.db/.csv/.json); default: found in --input")
    p.add_argument("--out", default="replay_out", help="output directory (default replay_out/)")
    p.add_argument(
        "--batch-s",
        type=int,
        default=60,
        help="micro-batch width in seconds (of arrival time; of event time for --input files)",
    )
    p.add_argument("--chunk-rows", type=int, default=1_000_000, help="rows per chunk when reading files")
    p.add_argument(
        "--max-disorder-s",
        type=int,
        default=60,
        help="files: rows up to this many seconds out of event-time order are put back in order (default 60)",
    )
    p.add_argument(
        "--allow-extra-columns",
        action="store_true",
        help="files: ignore columns that no schema version maps (default: such columns are an error)",
    )
    p.add_argument("--lateness-s", type=int, default=900, help="allowed lateness in seconds (default 900)")
    p.add_argument("--route-level", default="region", help="topology level that partitions batches")
    p.add_argument("--components", nargs="*", default=None, help="analysis components to run (default all available)")
    p.add_argument(
        "--rehome-share",
        type=float,
        default=0.01,
        help="synthetic only: share of elements re-homed to another site halfway through the replay, "
        "a topology change while data flows (default 0.01; 0 for none)",
    )
    p.add_argument("--checkpoint", help="write the final state to this .npz file")
    p.add_argument("--restore", help="start from a checkpoint written by --checkpoint")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("generate", help="write a synthetic dataset (Parquet or CSV) for replay --input")
    synth_args(p)
    p.add_argument("--out", required=True)
    p.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("bench", help="run the benchmark suite (needs the [bench] extra and a source checkout)")
    p.add_argument("areas", nargs="*", help="benchmark areas, e.g. windows cube (default all)")
    p.add_argument("--n", type=int, help="events per benchmark (BENCH_N), to run smaller")
    p.set_defaults(func=cmd_bench, pytest_args=[])
    p.epilog = "arguments after -- go to pytest, e.g. telcoanalytics bench cube -- --benchmark-min-rounds=3"
    return ap


class CliError(SystemExit):
    """A clear command-line error: one line on stderr, exit status 2 (``str()`` is the message)."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _error_types() -> tuple:
    types: list = [ValueError, OSError, ImportError, UnicodeError, KeyError, TypeError]
    try:
        import pyarrow as pa

        types.append(pa.ArrowException)
    except ImportError:  # pragma: no cover - pyarrow is installed in the test env
        pass
    return tuple(types)


def _fail(message: str) -> CliError:
    line = " ".join(str(message).split())  # one line, whatever the exception text held
    print(f"telcoanalytics: error: {line}", file=sys.stderr, flush=True)
    return CliError(line)


def main(argv=None) -> int:
    """Run the command line; clear errors print one line and exit with status 2 (``--debug``
    shows the traceback instead)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:  # everything after -- is for pytest (bench); options may come in any order before it
        k = argv.index("--")
        argv, extra = argv[:k], argv[k + 1 :]
    args = build_parser().parse_args(argv)
    if extra:
        if args.command != "bench":
            raise _fail(f"arguments after -- are only for 'bench' (pytest arguments), got {extra}")
        args.pytest_args = extra
    try:
        return args.func(args)
    except CliError:
        raise
    except SystemExit as e:  # the commands' own clear messages
        if args.debug or not isinstance(e.code, str):
            raise
        raise _fail(e.code) from None
    except _error_types() as e:
        if args.debug:
            raise
        raise _fail(f"{type(e).__name__}: {e} (run with --debug for the traceback)") from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
