"""The TOML configuration: the documented example equals today's replay defaults, settings reach
the components, every mistake is refused naming the file, the key and the fix."""

import json
import re
from pathlib import Path

import pytest

from telcoanalytics import cli
from telcoanalytics.pipeline.config import ConfigError, load_config
from telcoanalytics.pipeline.replay import DEFAULTS, build_pipeline
from telcoanalytics.pipeline.run import OutputLog
from telcoanalytics.synth.network import generate

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pipeline.toml"
SMALL = ["--elements", "100", "--days", "0.03", "--history-days", "0.01", "--no-checkpoints"]


def _cfg(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return load_config(p)


def test_example_settings_are_the_defaults():
    c = load_config(EXAMPLE)
    s = c.settings
    for k, v in DEFAULTS.items():
        if k not in ("component_options", "outputs"):
            assert s[k] == v or (
                k == "components" and s[k] == ["windows", "alerts", "sla", "anomaly", "cube", "analysis"]
            ), k
    assert s["outputs"] == {"rotate_mb": None, "keep": None}
    assert c.follow == {"dir": None, "poll_s": 1.0, "status_every_s": 10.0, "idle_exit_s": None}


def _masked(out):
    text = (out / "report.txt").read_text()
    return re.sub(r"\d+(\.\d+)? (s|ms|M rows/s|MiB)\b", "X", text)


@pytest.mark.slow  # full components: minutes as plain Python; the compiled pass runs it
def test_replay_with_the_example_equals_the_replay_without(tmp_path, capsys):
    assert cli.main(["replay", *SMALL, "--out", str(tmp_path / "a")]) == 0
    assert cli.main(["replay", "--config", str(EXAMPLE), *SMALL, "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    for name in ("alerts.jsonl", "quarantine.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert _masked(tmp_path / "a") == _masked(tmp_path / "b")


def test_settings_reach_the_components(tmp_path):
    c = _cfg(
        tmp_path,
        """
[run]
components = ["windows", "cube", "sla", "anomaly", "alerts"]
lateness_s = 120
[windows]
resolutions = [[60, 30], [3600, 30]]
half_lives_s = [30.0, 600.0]
[detectors]
threshold = 5.5
[cubes.by_service]
dimensions = ["service", "hour_of_day"]
measures = ["count", "sum:dropped"]
[sla]
reeval_minutes = 5
[[sla.rules]]
name = "blk"
kpi = "blocking_pct"
comparator = ">"
threshold = 5.0
window = "15m"
[alerts]
group_wait_s = 10
[sources.qos]
schema_version = 1
""",
    )
    topo = generate(n_elements=30, n_regions=1, days=0.01, seed=1).topology
    p = build_pipeline(c.settings, topo, OutputLog(tmp_path / "a.jsonl"))
    assert list(p.components) == ["windows", "sla", "anomaly", "cube"] and p.allowed_lateness_ms == 120_000
    w = p.components["windows"].win
    assert w.resolutions[0] == (60_000, 30) and tuple(w.half_lives_s) == (30.0, 600.0)
    assert p.components["anomaly"].net.detector.config.threshold == 5.5
    assert list(p.components["cube"].cubes) == ["by_service"]
    mon = p.components["sla"].mon
    assert [r.name for r in mon.rules] == ["blk"] and mon.reeval_minutes == 5
    assert p.alerts.group_wait_ms == 10_000
    assert p.ingestors["qos"].schema_version == 1
    json.dumps(c.settings)  # travels in checkpoints


def test_analysis_retention_reaches_the_component(tmp_path):
    c = _cfg(tmp_path, "[run]\ncomponents = ['analysis']\n[analysis]\nretention_h = 24")
    topo = generate(n_elements=30, n_regions=1, days=0.01, seed=1).topology
    p = build_pipeline(c.settings, topo, OutputLog(tmp_path / "a.jsonl"))
    assert p.components["analysis"].retention_ms == 86_400_000
    assert p.components["analysis"].cubes["localize"].spec.retention_ms == 86_400_000
    assert load_config(EXAMPLE).settings["component_options"]["analysis"] == {"retention_ms": 2 * 86_400_000}


@pytest.mark.parametrize(
    "text, match",
    [
        ("[rn]\nout = 'x'", r"\[rn\] is not a known section; did you mean 'run'\?"),
        ("[run]\nlatenes_s = 3", r"run.latenes_s is not a known key; did you mean 'lateness_s'\?"),
        ("[run]\nlateness_s = -1", r"run.lateness_s is -1; it must be an integer number of seconds >= 0"),
        ("[run]\nlateness_s = true", r"run.lateness_s is True"),
        ("[run]\ncomponents = ['windows', 'sla2']", r"run.components holds unknown \['sla2'\]; choose from"),
        ("[synthetic]\nrehome_share = 2", r"synthetic.rehome_share is 2; it must be a share between 0 and 1"),
        ("[detectors]\nthreshhold = 3", r"detectors.threshhold is not a known key; did you mean 'threshold'\?"),
        ("[cubes.x]\ndimensions = ['region']", r"cubes.x.measures is missing"),
        ("[cubes.x]\ndimensions = ['regio']\nmeasures = ['count']", r"cubes.x is not a valid cube: .*regio"),
        (
            "[[sla.rules]]\nname = 'a'\nkpi = 'nope'\ncomparator = '>'\nthreshold = 1.0\nwindow = '5m'",
            r"\[sla\] rules are invalid: .*nope",
        ),
        ("[sources.qos]\nschema_version = 99", r"sources.qos.schema_version is 99; qos has versions \[1"),
        ("[sources.qos]\nshema_version = 1", r"sources.qos.shema_version is not a known key; did you mean"),
        ("[windows]\nresolutions = [[60, 60]]", r"windows.resolutions must span at least 24 h"),
        ("[windows]\nhalf_lives_s = [60.0]", r"windows.half_lives_s is \[60.0\]; it must be a list of at least two"),
        ("[outputs]\nkeep = 0", r"outputs.keep is 0; it must be an integer >= 1"),
        ("[analysis]\nretention_h = 0", r"analysis.retention_h is 0; it must be hours > 0"),
        ("[analysis]\nretention = 3", r"analysis.retention is not a known key; did you mean 'retention_h'\?"),
        ("[checkpoints]\nevery_min = 0", r"checkpoints.every_min is 0; it must be event-time minutes > 0"),
        ("[run]\nout = \n[x]", r"is not valid TOML \(.*line 2.*fix the syntax"),
        ("run = 3", r"\[run\] must be a table"),
    ],
)
def test_errors_name_the_key_and_the_fix(tmp_path, text, match):
    with pytest.raises(ConfigError, match=r"config .*c.toml.*" + match if "TOML" not in match else match):
        _cfg(tmp_path, text)


def test_missing_file_and_cli_errors(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"nope.toml does not exist; .*examples/pipeline.toml"):
        load_config(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("[run]\nroute_levl = 'x'\n")
    with pytest.raises(SystemExit, match="run.route_levl is not a known key; did you mean 'route_level'"):
        cli.main(["replay", "--config", str(tmp_path / "bad.toml")])
    with pytest.raises(SystemExit, match="--resume takes the run's settings from its checkpoint; drop --config"):
        cli.main(["replay", "--resume", str(tmp_path), "--config", str(tmp_path / "bad.toml")])


def test_paths_are_relative_to_the_file(tmp_path):
    (tmp_path / "d").mkdir()
    c = _cfg(tmp_path, "[sources]\ndir = 'd'\n[topology]\nfile = 'd/t.csv'\n[follow]\ndir = 'in'\n[run]\nout = 'o'")
    assert c.settings["input"] == str(tmp_path / "d") and c.settings["topology"] == str(tmp_path / "d" / "t.csv")
    assert c.follow["dir"] == str(tmp_path / "in") and c.settings["out"] == "o"


def test_an_option_typed_at_its_default_overrides_the_file(tmp_path):
    """--config FILE then --elements 10000 (the parser's default) typed: the command line wins;
    options not typed keep the file's values."""
    conf = tmp_path / "c.toml"
    conf.write_text("[synthetic]\nelements = 500\nseed = 3\n[run]\nlateness_s = 120\n")
    argv = ["replay", "--config", str(conf), "--elements", "10000", "--lateness-s", "900"]
    args = cli.build_parser().parse_args(argv)
    args.explicit = cli.explicit_options(argv)
    assert {"elements", "lateness_s", "config"} <= args.explicit and "seed" not in args.explicit
    s = cli.replay_settings(args)
    assert s["elements"] == 10_000 and s["lateness_s"] == 900  # typed at their defaults: they win
    assert s["seed"] == 3  # not typed: the file's value
    argv = ["replay", "--config", str(conf)]
    args = cli.build_parser().parse_args(argv)
    args.explicit = cli.explicit_options(argv)
    s = cli.replay_settings(args)
    assert s["elements"] == 500 and s["lateness_s"] == 120 and s["seed"] == 3
