"""Command line: ``telcoanalytics replay | run | generate | bench`` (also ``python -m telcoanalytics``).

``replay`` runs the whole pipeline over a synthetic network day (default) or over the user's
files, in arrival order, and prints what it ingested, quarantined, routed and found.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path


# ---- commands -----------------------------------------------------------------------------------
def replay_settings(args) -> dict:
    """The replay settings (:data:`telcoanalytics.pipeline.replay.DEFAULTS` keys) of parsed options,
    on top of a ``--config`` file's when given: an option typed on the command line wins over the
    file, even at its default value (``args.explicit``, set by :func:`main`, names the options typed;
    without it, an option differing from the parser's default counts as typed)."""
    from telcoanalytics.pipeline.replay import DEFAULTS

    settings = dict(DEFAULTS)
    config = getattr(args, "config", None)
    if config:
        from telcoanalytics.pipeline.config import ConfigError, load_config

        try:
            settings = load_config(config).settings
        except ConfigError as exc:
            raise SystemExit(str(exc)) from None
    explicit = getattr(args, "explicit", None)
    for k in DEFAULTS:
        v = getattr(args, k, None)
        if v is None:
            continue
        typed = k in explicit if explicit is not None else v != _PARSER_DEFAULTS.get(k)
        if not config or typed:
            settings[k] = v
    return settings


_PARSER_DEFAULTS: dict = {}


def explicit_options(argv) -> set[str]:
    """The destinations of the options typed in ``argv`` (whatever their value): ``argv`` parsed
    again with every default replaced by ``argparse.SUPPRESS``, so only typed options appear."""
    parser = build_parser()
    for sub in parser._subparsers._group_actions[0].choices.values():
        for action in sub._actions:
            action.default = argparse.SUPPRESS
    ns, _ = parser.parse_known_args(argv)
    return set(vars(ns))


def cmd_replay(args) -> int:
    from telcoanalytics.pipeline.replay import run_replay

    if args.resume:
        given = [f"--{k}" for k in ("input", "config", "restore", "checkpoint") if getattr(args, k, None)]
        if given:
            raise SystemExit(f"--resume takes the run's settings from its checkpoint; drop {', '.join(given)}")
        return run_replay(resume=args.resume)
    settings = replay_settings(args)
    if args.checkpoint_every_min is not None:
        settings["checkpoint_every_min"] = args.checkpoint_every_min
    if args.no_checkpoints:
        settings["checkpoints"] = False
    return run_replay(settings, checkpoint=args.checkpoint, restore=args.restore)


def cmd_run(args) -> int:
    from telcoanalytics.pipeline.config import ConfigError, load_config
    from telcoanalytics.pipeline.follow import run_follow

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None
    return run_follow(config, out=args.out)


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
    from telcoanalytics.pipeline.components import ALL_NAMES  # here, not at import: main() tunes malloc first

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
    p.add_argument(
        "--max-disorder-s",
        type=int,
        default=60,
        help="files: rows up to this many seconds out of event-time order are put back in order (default 60)",
    )
    p.add_argument(
        "--allow-extra-columns",
        action="store_true",
        default=None,
        help="files: ignore columns that no schema version maps (default: such columns are an error)",
    )
    p.add_argument("--chunk-rows", type=int, default=1_000_000, help="rows per chunk when reading files")
    p.add_argument("--lateness-s", type=int, default=900, help="allowed lateness in seconds (default 900)")
    p.add_argument("--route-level", default="region", help="topology level that partitions batches")
    p.add_argument(
        "--components",
        nargs="*",
        default=None,
        choices=ALL_NAMES,
        help="analysis components to run, and alerts for the alert manager (default all)",
    )
    p.add_argument(
        "--rehome-share",
        type=float,
        default=0.01,
        help="synthetic only: share of elements re-homed to another site halfway through the replay, "
        "a topology change while data flows (default 0.01; 0 for none)",
    )
    p.add_argument("--checkpoint", help="also write the final state to this .npz file")
    p.add_argument(
        "--restore",
        help="start from a checkpoint's state (the input continues at its position when it has one); "
        "new output files in --out",
    )
    p.add_argument(
        "--resume",
        metavar="OUT",
        help="continue the interrupted replay whose output folder is OUT from its last checkpoint "
        "(settings from the checkpoint; alerts.jsonl and quarantine.jsonl continue where it left them)",
    )
    p.add_argument(
        "--checkpoint-every-min",
        type=float,
        default=None,
        help="minutes of event time between the periodic checkpoints in OUT/checkpoint.npz (default 60)",
    )
    p.add_argument("--no-checkpoints", action="store_true", help="no periodic checkpoints (no --resume then)")
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="run the components partitioned by --route-level on a local Dask cluster of this many worker "
        "processes (default 0: in this process; needs the [distributed] extra)",
    )
    p.add_argument("--config", help="TOML configuration file of the whole pipeline (options given here win)")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser(
        "run", help="real time: follow the folder of [follow] dir in a configuration file, with checkpoints"
    )
    p.add_argument("--config", required=True, help="TOML configuration (see examples/pipeline.toml)")
    p.add_argument("--out", help="output folder (default: [run] out of the configuration)")
    p.set_defaults(func=cmd_run)

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
    from telcoanalytics._malloc import tune_malloc

    tune_malloc()  # first, before the pipeline's imports: freed arrays stay in the heap for the next batch
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:  # everything after -- is for pytest (bench); options may come in any order before it
        k = argv.index("--")
        argv, extra = argv[:k], argv[k + 1 :]
    parser = build_parser()
    _PARSER_DEFAULTS.update(vars(parser._subparsers._group_actions[0].choices["replay"].parse_args([])))
    args = parser.parse_args(argv)
    args.explicit = explicit_options(argv)
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
