"""Command-line errors: one clear line, exit status 2, tracebacks only with --debug."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from telcoanalytics import cli

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from telcoanalytics.synth.network import SynthConfig, generate

    d = tmp_path_factory.mktemp("ds")
    generate(SynthConfig(n_elements=60, days=0.02, seed=2)).write(d, fmt="csv")
    return d


def _extra_column(dataset, tmp_path) -> Path:
    d = tmp_path / "extra"
    d.mkdir()
    for f in dataset.iterdir():
        text = f.read_text()
        if f.name == "equip.csv":
            lines = text.splitlines()
            text = "\n".join([lines[0] + ",site_name"] + [x + ",north" for x in lines[1:]]) + "\n"
        (d / f.name).write_text(text)
    return d


def test_errors_are_one_line_with_status_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["replay", "--input", str(tmp_path / "nope")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("telcoanalytics: error: --input") and "not a directory" in err


def test_schema_error_names_the_file_and_the_fix(dataset, tmp_path, capsys):
    d = _extra_column(dataset, tmp_path)
    with pytest.raises(SystemExit) as e:
        cli.main(["replay", "--input", str(d), "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "equip.csv" in err and "site_name" in err and "allow_extra_columns" in err
    assert "Traceback" not in err


def test_allow_extra_columns_on_the_command_line(dataset, tmp_path):
    d = _extra_column(dataset, tmp_path)
    out = tmp_path / "o"
    assert cli.main(["replay", "--input", str(d), "--out", str(out), "--allow-extra-columns"]) == 0
    assert "conservation (read == accepted + quarantined, accepted == routed): ok" in (out / "report.txt").read_text()


def test_debug_shows_the_exception(dataset, tmp_path):
    from telcoanalytics.ingest.schema import SchemaError

    d = _extra_column(dataset, tmp_path)
    with pytest.raises(SchemaError, match="site_name"):
        cli.main(["--debug", "replay", "--input", str(d), "--out", str(tmp_path / "o")])


def test_a_damaged_file_is_one_line_in_a_real_process(dataset, tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "topology.csv").write_text((dataset / "topology.csv").read_text())
    (d / "qos.csv").write_bytes(b"\xff\xfe\x00garbage")  # no header a schema could match
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.run(
        [sys.executable, "-m", "telcoanalytics", "replay", "--input", str(d), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "qos.csv" in lines[0] and "Traceback" not in p.stderr
