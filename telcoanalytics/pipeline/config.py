"""One TOML file for the whole pipeline: input (synthetic or files), topology, sources and their
schema versions, lateness, windows, detectors, cubes, KPIs and SLA rules, alerting, output files,
checkpoints, and the real-time follower.

Every key is optional; the defaults equal ``telcoanalytics replay``'s. Errors name the file, the
key and the fix (an unknown key suggests the nearest known one). See ``examples/pipeline.toml``
for a documented file with every section.

Sections
--------
``[run]``          out, route_level, lateness_s, batch_s, components, workers
``[synthetic]``    elements, days, seed, scale, history_days, rehome_share (input when no ``[sources]``)
``[topology]``     file (.sqlite/.db/.csv/.json; default: found in ``sources.dir``)
``[sources]``      dir, chunk_rows; ``[sources.<cdr|equip|flow|qos>]`` schema_version, allow_extra_columns
``[windows]``      resolutions ([[width_s, count], ...]), half_lives_s
``[detectors]``    any field of :class:`telcoanalytics.anomaly.detector.DetectorConfig`
``[cubes.<name>]`` dimensions, measures, cuboids (replaces the default two cubes)
``[kpis]``         ``[[kpis.define]]`` user KPI definitions
``[sla]``          rules_file, reeval_minutes, ``[[sla.rules]]``, ``[[sla.slos]]``
``[alerts]``       group_by, group_wait_s, group_interval_s, repeat_interval_s, resolved_retention_s
``[outputs]``      rotate_mb, keep
``[checkpoints]``  enabled, every_min
``[follow]``       dir, poll_s, status_every_s, idle_exit_s (``telcoanalytics run``)
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from pathlib import Path

from telcoanalytics.pipeline.replay import DEFAULTS
from telcoanalytics.records import SOURCES


class ConfigError(ValueError):
    """An invalid configuration: the message names the file, the key and the fix."""


_NUM = (int, float)


def _pos(v):
    return v > 0


def _nonneg(v):
    return v >= 0


# section -> key -> (types, check or None, what it must be)
SCHEMA = {
    "run": {
        "out": (str, None, "a folder path"),
        "route_level": (str, None, "a topology level name, e.g. 'region'"),
        "lateness_s": (int, _nonneg, "an integer number of seconds >= 0"),
        "batch_s": (int, _pos, "an integer number of seconds > 0"),
        "components": (list, None, "a list of windows, alerts, sla, anomaly, cube"),
        "workers": (int, _nonneg, "an integer >= 0 (0: in this process; N: a local Dask cluster of N processes)"),
    },
    "synthetic": {
        "elements": (int, _pos, "an integer > 0"),
        "days": (_NUM, _pos, "a number of days > 0"),
        "seed": (int, None, "an integer"),
        "scale": (_NUM, _pos, "a number > 0"),
        "history_days": (_NUM, _nonneg, "a number of days >= 0"),
        "rehome_share": (_NUM, lambda v: 0 <= v <= 1, "a share between 0 and 1"),
    },
    "topology": {"file": (str, None, "a .sqlite/.db/.csv/.json file path")},
    "sources": {"dir": (str, None, "a folder path"), "chunk_rows": (int, _pos, "an integer > 0")},
    "source": {
        "schema_version": (int, _pos, "a schema version number (see telcoanalytics.ingest.schema)"),
        "allow_extra_columns": (bool, None, "true or false"),
    },
    "windows": {
        "resolutions": (list, None, "a list of [width_s, count] pairs"),
        "half_lives_s": (list, None, "a list of at least two half-lives in seconds"),
    },
    "sla": {
        "rules_file": (str, None, "a .toml or .json rules file"),
        "reeval_minutes": (int, _nonneg, "an integer >= 0"),
        "rules": (list, None, "an array of tables [[sla.rules]]"),
        "slos": (list, None, "an array of tables [[sla.slos]]"),
    },
    "kpis": {"define": (list, None, "an array of tables [[kpis.define]]")},
    "alerts": {
        "group_by": (list, None, "a list of label names"),
        "group_wait_s": (_NUM, _nonneg, "seconds >= 0"),
        "group_interval_s": (_NUM, _pos, "seconds > 0"),
        "repeat_interval_s": (_NUM, _pos, "seconds > 0"),
        "resolved_retention_s": (_NUM, _nonneg, "seconds >= 0"),
    },
    "analysis": {"retention_h": (_NUM, _pos, "hours > 0 of event time the analysis cubes and flows keep (default 48)")},
    "outputs": {"rotate_mb": (_NUM, _pos, "megabytes > 0"), "keep": (int, _pos, "an integer >= 1")},
    "checkpoints": {"enabled": (bool, None, "true or false"), "every_min": (_NUM, _pos, "event-time minutes > 0")},
    "follow": {
        "dir": (str, None, "the folder where new files arrive"),
        "poll_s": (_NUM, _pos, "seconds > 0"),
        "status_every_s": (_NUM, _pos, "seconds > 0"),
        "idle_exit_s": (_NUM, _pos, "seconds > 0 (omit to follow until SIGTERM)"),
    },
}
SECTIONS = [s for s in SCHEMA if s != "source"] + ["detectors", "cubes"]


@dataclasses.dataclass
class Config:
    """A validated configuration.

    Attributes
    ----------
    path : Path
    settings : dict
        Replay settings (:data:`telcoanalytics.pipeline.replay.DEFAULTS` keys).
    follow : dict
        The real-time follower's settings (``dir``, ``poll_s``, ``status_every_s``, ``idle_exit_s``).
    """

    path: Path
    settings: dict
    follow: dict


def _near(key, known) -> str:
    m = difflib.get_close_matches(key, list(known), n=1)
    return f"did you mean {m[0]!r}? " if m else ""


def _check_keys(where: str, table: dict, known, err):
    for k in table:
        if k not in known:
            err(f"{where}.{k}" if where else k, f"is not a known key; {_near(k, known)}known: {', '.join(known)}")


def _value(where, key, v, spec, err):
    types, check, what = spec
    ok_type = isinstance(v, types) and not (isinstance(v, bool) and types in (int, _NUM))
    if not ok_type or (check is not None and not check(v)):
        err(f"{where}.{key}", f"is {v!r}; it must be {what}")
    return v


def load_config(path) -> Config:
    """Read and validate a configuration file.

    Raises
    ------
    ConfigError
        Unreadable TOML (with the line), an unknown section or key (with the nearest known one),
        a value of the wrong type or range, an unknown component, an invalid detector field,
        cube spec, KPI or SLA rule; always naming the file and the key, and what to put there.
    """
    path = Path(path)

    def err(key, problem):
        raise ConfigError(f"config {path}: {key} {problem}")

    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"config {path} does not exist; pass the path of a TOML file (see examples/pipeline.toml)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML ({exc}); fix the syntax at that line") from None
    _check_keys("", doc, SECTIONS, lambda k, p: err(f"[{k}]", p.replace("key", "section")))
    for sec, table in doc.items():
        if not isinstance(table, dict):
            err(f"[{sec}]", f"must be a table ([{sec}] followed by key = value lines), got {type(table).__name__}")
    s = {**DEFAULTS, "component_options": {}, "ingest": {}, "outputs": dict(DEFAULTS["outputs"])}
    base = path.parent

    def rel(p):  # paths in the file are relative to the file
        return str((base / p).resolve()) if not Path(p).is_absolute() else p

    for sec in ("run", "synthetic", "topology", "sources", "outputs", "checkpoints", "follow"):
        table = doc.get(sec, {})
        _check_keys(sec, {k: v for k, v in table.items() if not (sec == "sources" and k in SOURCES)}, SCHEMA[sec], err)
        for k, v in table.items():
            if sec == "sources" and k in SOURCES:
                continue
            _value(sec, k, v, SCHEMA[sec][k], err)
    run = doc.get("run", {})
    for k in ("route_level", "lateness_s", "batch_s", "workers"):
        if k in run:
            s[k] = run[k]
    if "out" in run:  # relative to the working directory, as on the command line
        s["out"] = run["out"]
    if "components" in run:
        from telcoanalytics.pipeline.components import ALL_NAMES

        bad = [c for c in run["components"] if c not in ALL_NAMES]
        if bad:
            err("run.components", f"holds unknown {bad}; choose from {', '.join(ALL_NAMES)}")
        s["components"] = list(run["components"])
    s.update(doc.get("synthetic", {}))
    if "file" in doc.get("topology", {}):
        s["topology"] = rel(doc["topology"]["file"])
    src = doc.get("sources", {})
    if "dir" in src:
        s["input"] = rel(src["dir"])
    if "chunk_rows" in src:
        s["chunk_rows"] = src["chunk_rows"]
    for name in SOURCES:
        if name in src:
            t = src[name]
            if not isinstance(t, dict):
                err(f"sources.{name}", "must be a table [sources." + name + "]")
            _check_keys(f"sources.{name}", t, SCHEMA["source"], err)
            s["ingest"][name] = {k: _value(f"sources.{name}", k, v, SCHEMA["source"][k], err) for k, v in t.items()}
            _check_schema_version(name, t.get("schema_version"), err)
    outs = doc.get("outputs", {})
    s["outputs"].update(outs)
    ck = doc.get("checkpoints", {})
    if "enabled" in ck:
        s["checkpoints"] = ck["enabled"]
    if "every_min" in ck:
        s["checkpoint_every_min"] = ck["every_min"]
    opts = s["component_options"]
    _windows(doc.get("windows", {}), opts, err)
    _detectors(doc.get("detectors", {}), opts, err)
    _cubes(doc.get("cubes", {}), opts, err)
    _sla(doc.get("sla", {}), doc.get("kpis", {}), opts, err, rel)
    _alerts(doc.get("alerts", {}), opts, err)
    _analysis(doc.get("analysis", {}), opts, err)
    follow = {"dir": None, "poll_s": 1.0, "status_every_s": 10.0, "idle_exit_s": None}
    follow.update(doc.get("follow", {}))
    if follow["dir"] is not None:
        follow["dir"] = rel(follow["dir"])
    return Config(path, s, follow)


def _check_schema_version(source, version, err):
    if version is None:
        return
    from telcoanalytics.ingest.schema import REGISTRY

    known = sorted(REGISTRY.versions(source))
    if version not in known:
        err(f"sources.{source}.schema_version", f"is {version}; {source} has versions {known}")


def _windows(t, opts, err):
    _check_keys("windows", t, SCHEMA["windows"], err)
    out = {}
    if "resolutions" in t:
        res = _value("windows", "resolutions", t["resolutions"], SCHEMA["windows"]["resolutions"], err)
        ok = all(isinstance(r, list) and len(r) == 2 and all(isinstance(x, int) and x > 0 for x in r) for r in res)
        if not res or not ok:
            err("windows.resolutions", f"is {res!r}; it must be a list of [width_s, count] pairs of positive integers")
        if max(w * n for w, n in res) < 86_400:
            err("windows.resolutions", "must span at least 24 h at one resolution (the report's last-day table)")
        out["resolutions"] = [[w * 1000, n] for w, n in res]
    if "half_lives_s" in t:
        hl = t["half_lives_s"]
        if not isinstance(hl, list) or len(hl) < 2 or not all(isinstance(x, _NUM) and x > 0 for x in hl):
            err("windows.half_lives_s", f"is {hl!r}; it must be a list of at least two positive numbers of seconds")
        out["half_lives_s"] = [float(x) for x in hl]
    if out:
        opts["windows"] = out


def _detectors(t, opts, err):
    from telcoanalytics.anomaly.detector import DetectorConfig
    from telcoanalytics.evaluate.evaluate import synth_detector_config

    fields = {f.name for f in dataclasses.fields(DetectorConfig)}
    _check_keys("detectors", t, sorted(fields), err)
    try:
        dataclasses.replace(synth_detector_config(), **t)
    except (TypeError, ValueError) as exc:
        err("[detectors]", f"is invalid: {exc}")
    if t:
        opts["anomaly"] = {"detector": dict(t)}


_TOPOLOGY_DIMS = ("region", "site", "element", "equipment_class", "vendor", "technology")


def _cubes(t, opts, err):
    if not t:
        return
    from telcoanalytics.cube.dims import builtin_dimension
    from telcoanalytics.cube.spec import CubeSpec

    specs = {}
    for name, spec in t.items():
        if not isinstance(spec, dict):
            err(f"cubes.{name}", "must be a table [cubes." + name + "] with dimensions and measures")
        _check_keys(f"cubes.{name}", spec, ["dimensions", "measures", "cuboids", "cell_budget"], err)
        for k in ("dimensions", "measures"):
            if k not in spec:
                err(f"cubes.{name}.{k}", "is missing; list the cube's " + k)
        spec = dict(spec)
        if isinstance(spec.get("cuboids"), list):
            spec["cuboids"] = [tuple(c) for c in spec["cuboids"]]
        try:
            CubeSpec(**spec)
            for d in spec["dimensions"]:
                if d not in _TOPOLOGY_DIMS:  # those are checked against the topology when the cube is built
                    builtin_dimension(d, None)
        except (TypeError, ValueError, KeyError) as exc:
            err(f"cubes.{name}", f"is not a valid cube: {exc}")
        specs[name] = spec
    opts["cube"] = {"cubes": specs}


def _analysis(t, opts, err):
    _check_keys("analysis", t, SCHEMA["analysis"], err)
    if "retention_h" in t:
        h = _value("analysis", "retention_h", t["retention_h"], SCHEMA["analysis"]["retention_h"], err)
        if isinstance(h, _NUM) and not isinstance(h, bool) and h > 0:
            opts["analysis"] = {"retention_ms": max(300_000, int(round(h * 3_600_000)))}


def _sla(t, kpis, opts, err, rel):
    _check_keys("sla", t, SCHEMA["sla"], err)
    _check_keys("kpis", kpis, SCHEMA["kpis"], err)
    out = {}
    for k, v in t.items():
        out[k] = _value("sla", k, v, SCHEMA["sla"][k], err)
    if "rules_file" in out:
        out["rules_file"] = rel(out["rules_file"])
        if out.get("rules") or out.get("slos"):
            err("sla.rules_file", "and [[sla.rules]] / [[sla.slos]] exclude each other; keep one of them")
    if "define" in kpis:
        out["kpis"] = _value("kpis", "define", kpis["define"], SCHEMA["kpis"]["define"], err)
    if not out:
        return
    from telcoanalytics.kpi import KpiDef, kpi_registry
    from telcoanalytics.sla.sla import load_rules

    try:
        user = [KpiDef.from_dict(k) for k in out.get("kpis", [])]
    except (TypeError, ValueError, KeyError) as exc:
        err("kpis.define", f"is invalid: {exc}")
    try:
        src = out.get("rules_file") or ({"rules": out.get("rules", []), "slos": out.get("slos", [])})
        if out.get("rules_file") or out.get("rules") or out.get("slos"):
            load_rules(src, kpi_registry(user))
    except (TypeError, ValueError, KeyError) as exc:
        err("[sla]", f"rules are invalid: {exc}")
    opts["sla"] = out


def _alerts(t, opts, err):
    _check_keys("alerts", t, SCHEMA["alerts"], err)
    out = {}
    for k, v in t.items():
        _value("alerts", k, v, SCHEMA["alerts"][k], err)
        if k == "group_by":
            out[k] = list(v)
        else:
            out[k[:-2] + "_ms"] = int(round(v * 1000))
    if out:
        opts["alerts"] = out
