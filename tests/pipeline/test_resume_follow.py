"""Real-time mode: a folder followed as files arrive (ordering, incomplete files ignored, exact
resume from the position), ``telcoanalytics run`` stopped by SIGTERM with a final checkpoint and
restarted where it stopped, and the same over any iterator of batches from Python."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from telcoanalytics import cli
from telcoanalytics.pipeline.follow import DirectorySource, run_stream
from telcoanalytics.pipeline.pipeline import Pipeline
from telcoanalytics.pipeline.run import Progress
from telcoanalytics.synth.network import generate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    assert cli.main(["generate", "--elements", "60", "--days", "0.03", "--out", str(d), "--format", "csv"]) == 0
    return d


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s


def _lines(path):
    return len(Path(path).read_text().splitlines()) - 1  # without the header


def test_directory_source_order_stability_and_resume(data, tmp_path):
    inc = tmp_path / "in"
    inc.mkdir()
    shutil.copy(data / "qos.csv", inc / "qos_2.csv")
    shutil.copy(data / "qos.csv", inc / "qos_1.csv")
    shutil.copy(data / "cdr.csv", inc / "cdr_1.csv.part")  # still being written: ignored
    (inc / "notes.txt").write_text("x")
    clock = _Clock()
    src = DirectorySource(inc, chunk_rows=200, poll_s=1.0, idle_exit_s=3.0, clock=clock, sleep=clock.sleep)
    got = [(s, chunk.n) for s, chunk in src]
    n = _lines(data / "qos.csv")
    assert [s for s, _ in got] == ["qos"] * len(got) and sum(k for _, k in got) == 2 * n
    assert src.position() == {"qos": {"done": "qos_2.csv", "file": None, "rows": 0}} and src.n_files == 2
    assert clock.t >= 3.0  # one listing to see sizes settle, then idle until idle_exit_s
    # stop in the middle of a file, resume from the position: the rest of it, then the next file
    (inc / "cdr_1.csv.part").rename(inc / "cdr_1.csv")
    src = DirectorySource(inc, chunk_rows=100, poll_s=1.0, idle_exit_s=3.0, clock=clock, sleep=clock.sleep)
    it = iter(src)
    first = [next(it) for _ in range(2)]
    pos = src.position()
    assert pos["cdr"] == {"done": None, "file": "cdr_1.csv", "rows": 200} and first[0][0] == "cdr"
    rest = DirectorySource(inc, chunk_rows=100, start=pos, idle_exit_s=3.0, clock=clock, sleep=clock.sleep)
    rows = [c.n for s, c in rest]
    assert 200 + sum(rows) == _lines(data / "cdr.csv") + 2 * n


def test_run_stream_over_an_iterator_checkpoints_at_the_end(tmp_path):
    day = generate(n_elements=40, n_regions=2, days=0.03, seed=2)
    p = Pipeline(day.topology)
    r = run_stream(p, day.raw_batches(), checkpoint_path=tmp_path / "ck.npz", progress=Progress(mode="off"))
    q = Pipeline.restore(tmp_path / "ck.npz")
    assert q.counts() == p.counts() and q.checkpoint_driver["position"] == r.driver["position"] > 0


def _config(tmp_path, data, extra=""):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f"""
[run]
out = "{tmp_path / "out"}"
[topology]
file = "{data / "topology.csv"}"
[checkpoints]
every_min = 5
[sources]
chunk_rows = 100
[follow]
dir = "in"
poll_s = 0.2
status_every_s = 0.2
{extra}
"""
    )
    (tmp_path / "in").mkdir(exist_ok=True)
    return cfg


@pytest.mark.slow  # two runs in subprocesses
def test_run_command_stops_on_sigterm_and_restarts_where_it_stopped(data, tmp_path):
    cfg = _config(tmp_path, data)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "telcoanalytics", "run", "--config", str(cfg)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for s in ("cdr", "equip", "flow", "qos"):
        shutil.copy(data / f"{s}.csv", tmp_path / "in" / f".{s}_1.csv")  # hidden while copied ...
        os.replace(tmp_path / "in" / f".{s}_1.csv", tmp_path / "in" / f"{s}_1.csv")  # ... then published
    ck = tmp_path / "out" / "checkpoint.npz"
    deadline = time.time() + 120
    want = sum(_lines(data / f"{s}.csv") for s in ("cdr", "equip", "flow", "qos"))
    while time.time() < deadline:
        if ck.exists():  # the first periodic checkpoint: files are being processed
            break
        time.sleep(0.2)
    assert ck.exists()
    time.sleep(3.0)  # let it take all four files
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopped on request" in out and "lag" in out and "rows | event time" in out
    p = Pipeline.restore(ck)
    n_first = sum(c["read"] for c in p.counts().values())  # the final checkpoint holds what was read:
    assert 0 < n_first <= want  # everything unless the machine was too slow to take all four files in 3 s
    if n_first == want:
        assert p.checkpoint_driver["position"]["qos"]["done"] == "qos_1.csv"
    # a new file, then a restart (the service runs the same command again): only the new rows
    shutil.copy(data / "qos.csv", tmp_path / "in" / "qos_2.csv")
    cfg = _config(tmp_path, data, "idle_exit_s = 1.5")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "resuming from" in r.stdout
    if n_first == want:
        assert "from 1 files this run" in r.stdout
    q = Pipeline.restore(ck)
    assert sum(c["read"] for c in q.counts().values()) == want + _lines(data / "qos.csv")
    quarantined = sum(c["quarantined"] for c in q.counts().values())
    assert len((tmp_path / "out" / "quarantine.jsonl").read_text().splitlines()) == quarantined


def test_run_command_errors(tmp_path, data):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[run]\nout = 'o'\n")
    with pytest.raises(SystemExit, match=r"follow.dir is missing; set \[follow\] dir"):
        cli.main(["run", "--config", str(cfg)])
    cfg.write_text("[follow]\ndir = 'in'\n")
    with pytest.raises(SystemExit, match=r"topology.file is missing"):
        cli.main(["run", "--config", str(cfg)])
    cfg.write_text(f"[follow]\ndir = 'nope'\n[topology]\nfile = '{data / 'topology.csv'}'\n[run]\nout = '{tmp_path}/o'")
    with pytest.raises(SystemExit, match=r"follow.dir .*nope is not a folder"):
        cli.main(["run", "--config", str(cfg)])
