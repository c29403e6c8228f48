"""Checkpoints written by a forked process: the file is the state at the fork (entry for entry what a
foreground write of a twin pipeline gives), the run goes on meanwhile, the writer's failures reach the
run as clear errors, the writer dies with the run and never writes the run's buffered output, and the
runner falls back to the foreground where a fork is not safe."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from telcoanalytics.pipeline import checkpoint as ck
from telcoanalytics.pipeline.checkpoint import CheckpointWriterError, fork_checkpoint, write_checkpoint
from telcoanalytics.pipeline.pipeline import Pipeline
from telcoanalytics.pipeline.run import IteratorSource, Runner
from telcoanalytics.synth.network import generate

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(ck.fork_unavailable() is not None, reason=f"no fork here: {ck.fork_unavailable()}")


@pytest.fixture(scope="module")
def day():
    return generate(n_elements=40, n_regions=2, days=0.02, seed=4)


def _loaded(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _assert_same_files(a: Path, b: Path):
    """Every stored entry equal (dtype, shape, bytes) and the same meta."""
    x, y = _loaded(a), _loaded(b)
    assert json.loads(bytes(x.pop("__meta__"))) == json.loads(bytes(y.pop("__meta__")))
    assert sorted(x) == sorted(y)
    for k in x:
        assert x[k].dtype == y[k].dtype and x[k].shape == y[k].shape, k
        assert x[k].tobytes() == y[k].tobytes(), k


def _fed(day, n):
    p = Pipeline(day.topology, allowed_lateness_ms=60_000)
    p.feed(list(day.raw_batches())[:n])
    return p


# ---- the file -------------------------------------------------------------------------------------------
def test_forked_checkpoint_is_the_state_at_the_fork(day, tmp_path):
    """The run feeds on while the writer writes; the file equals a foreground write of a twin fed the
    same batches up to the fork (and differs from the state after)."""
    batches = list(day.raw_batches())
    p, twin = _fed(day, 15), _fed(day, 15)
    pending = fork_checkpoint(p, tmp_path / "fork.npz", driver={"position": 15})
    p.feed(batches[15:])  # the live state moves on, routing counts included
    p.advance(p.max_event_ms + 1)
    assert pending.wait() == tmp_path / "fork.npz" and pending.done()
    assert pending.wait() == tmp_path / "fork.npz"  # collected once, asked twice
    write_checkpoint(twin, tmp_path / "twin.npz", driver={"position": 15})
    _assert_same_files(tmp_path / "fork.npz", tmp_path / "twin.npz")
    assert Pipeline.restore(tmp_path / "fork.npz").counts() == twin.counts() != p.counts()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["fork.npz", "twin.npz"]  # no temporary left
    rep = pending.report
    assert rep["seconds"] == pending.seconds > 0 and rep["cpu_s"] >= 0 and rep["private_mib"] > 0


def test_done_reports_a_running_writer(day, tmp_path, monkeypatch):
    real = ck._write_entries
    gate = tmp_path / "go"

    def held(path, flat, meta_json):
        while not gate.exists():  # the test's file tells the child to go on
            time.sleep(0.01)
        return real(path, flat, meta_json)

    monkeypatch.setattr(ck, "_write_entries", held)
    pending = fork_checkpoint(_fed(day, 5), tmp_path / "x.npz")
    time.sleep(0.2)
    assert not pending.done() and not (tmp_path / "x.npz").exists()
    gate.touch()
    deadline = time.time() + 60
    while not pending.done() and time.time() < deadline:
        time.sleep(0.01)
    assert pending.done() and pending.wait() == tmp_path / "x.npz"
    assert Pipeline.restore(tmp_path / "x.npz").n_batches == 5


def test_forked_write_in_process_equals_write_checkpoint(day, tmp_path):
    """The writer's work, run here (as the child runs it), writes what write_checkpoint writes."""
    p = _fed(day, 9)
    rep = ck._forked_write(p, tmp_path / "a.npz", ck._meta_json(p, {"k": 1}))
    write_checkpoint(p, tmp_path / "b.npz", driver={"k": 1})
    _assert_same_files(tmp_path / "a.npz", tmp_path / "b.npz")
    assert set(rep) == {"seconds", "cpu_s", "private_mib"}


# ---- failures --------------------------------------------------------------------------------------------
def test_a_failed_writer_raises_its_own_error_once_and_leaves_no_file(day, tmp_path, monkeypatch):
    def full(f):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck, "write_atomic", lambda path, write: full(None))
    pending = fork_checkpoint(_fed(day, 3), tmp_path / "x.npz")
    with pytest.raises(OSError, match="No space left") as info:
        pending.wait()
    assert info.value.errno == 28 and not isinstance(info.value, CheckpointWriterError)
    assert pending.wait() == tmp_path / "x.npz"  # raised once
    assert not list(tmp_path.iterdir())


def test_an_error_that_cannot_be_sent_arrives_as_its_text(day, tmp_path, monkeypatch):
    class Odd(Exception):
        def __init__(self, a, b):  # pickles, but cannot be rebuilt from its args
            super().__init__(f"odd {a}")

    def fail(path, flat, meta_json):
        raise Odd(1, 2)

    monkeypatch.setattr(ck, "_write_entries", fail)
    pending = fork_checkpoint(_fed(day, 3), tmp_path / "x.npz")
    with pytest.raises(CheckpointWriterError, match=r"writer failed writing .*x\.npz: Odd: odd 1"):
        pending.wait()


def test_a_killed_writer_is_a_clear_error_and_the_previous_checkpoint_stays(day, tmp_path, monkeypatch):
    p = _fed(day, 4)
    write_checkpoint(p, tmp_path / "x.npz", driver={"n": 1})
    before = (tmp_path / "x.npz").read_bytes()
    real = ck.write_atomic

    def killed_mid_write(path, write):
        def half(f):
            f.write(b"partial")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)  # the out-of-memory killer, say

        return real(path, half)

    monkeypatch.setattr(ck, "write_atomic", killed_mid_write)
    p.feed(list(day.raw_batches())[4:8])
    pending = fork_checkpoint(p, tmp_path / "x.npz", driver={"n": 2})
    with pytest.raises(CheckpointWriterError, match="killed by signal SIGKILL.*previous checkpoint there is intact"):
        pending.wait()
    assert (tmp_path / "x.npz").read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["x.npz"]  # its temporary removed


def test_an_exit_without_a_report_names_the_status(day, tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "_write_entries", lambda path, flat, meta_json: os._exit(7))
    pending = fork_checkpoint(_fed(day, 2), tmp_path / "x.npz")
    with pytest.raises(CheckpointWriterError, match="exit status 7"):
        pending.wait()


def test_a_failed_fork_leaves_no_descriptor(day, tmp_path, monkeypatch):
    def no_fork():
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(ck, "_fork", no_fork)
    n_fds = len(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError, match="Cannot allocate"):
        fork_checkpoint(_fed(day, 2), tmp_path / "x.npz")
    assert len(os.listdir("/proc/self/fd")) == n_fds


def test_pickled_error_round_trip_or_nothing():
    import pickle

    err = pickle.loads(ck._pickled_error(OSError(28, "No space left on device", "/x")))
    assert isinstance(err, OSError) and err.errno == 28 and err.filename == "/x"
    assert ck._pickled_error(ValueError(lambda: 1)) == b""  # a lambda does not pickle


# ---- when a fork is safe ------------------------------------------------------------------------------------
def test_fork_unavailable_names_the_reason(monkeypatch):
    assert ck.fork_unavailable() is None
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, name="some worker")
    t.start()
    try:
        assert "other threads run in this process (some worker)" in ck.fork_unavailable()
    finally:
        stop.set()
        t.join()
    out = []
    t = threading.Thread(target=lambda: out.append(ck.fork_unavailable()))
    t.start()
    t.join()
    assert "not taken from the main thread" in out[0]
    monkeypatch.setattr(ck, "_prctl", lambda: None)
    assert "no Linux prctl" in ck.fork_unavailable()
    monkeypatch.delattr(os, "fork")
    assert "no os.fork" in ck.fork_unavailable()


def test_prctl_is_linux_only(monkeypatch):
    assert ck._prctl() is not None
    monkeypatch.setattr(sys, "platform", "darwin")
    assert ck._prctl() is None


# ---- the runner ---------------------------------------------------------------------------------------------
def _runner(day, tmp_path, background="fork", name="ck.npz"):
    return Runner(
        Pipeline(day.topology, allowed_lateness_ms=60_000),
        checkpoint_path=tmp_path / name,
        checkpoint_every_min=2,
        background=background,
    )


def test_runner_with_fork_writes_what_the_foreground_writes(day, tmp_path, monkeypatch):
    forked = []
    real = ck.fork_checkpoint
    monkeypatch.setattr(ck, "fork_checkpoint", lambda *a, **k: forked.append(1) or real(*a, **k))
    r = _runner(day, tmp_path, "fork", "fork.npz")
    assert r.run(IteratorSource(day.raw_batches())) is True
    f = _runner(day, tmp_path, False, "fg.npz")
    assert f.run(IteratorSource(day.raw_batches())) is True
    assert len(forked) == r.driver["n_checkpoints"] == f.driver["n_checkpoints"] >= 2
    assert r._pending is None and r.fork_fallback is None
    assert r.checkpoint_write_s > 0 and r.checkpoint_writer_mib > 0
    x, y = ck.read_checkpoint(tmp_path / "fork.npz"), ck.read_checkpoint(tmp_path / "fg.npz")
    for meta in (x[1], y[1]):  # timings differ between runs
        del meta["driver"]["seconds"], meta["driver"]["proc_s"]
    assert x[1] == y[1] and sorted(x[0]) == sorted(y[0])
    for k in x[0]:
        assert x[0][k].dtype == y[0][k].dtype and x[0][k].tobytes() == y[0][k].tobytes(), k


def test_runner_falls_back_to_the_foreground_with_another_thread(day, tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "fork_checkpoint", lambda *a, **k: pytest.fail("no fork with another thread running"))
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, name="dask loop")
    t.start()
    try:
        r = _runner(day, tmp_path)
        assert r.run(IteratorSource(day.raw_batches())) is True
    finally:
        stop.set()
        t.join()
    assert "other threads run in this process (dask loop)" in r.fork_fallback
    assert r.driver["n_checkpoints"] >= 2 and r.checkpoint_write_s == 0
    assert Pipeline.restore(tmp_path / "ck.npz").checkpoint_driver["n_checkpoints"] == r.driver["n_checkpoints"]


def test_runner_writes_in_the_foreground_when_the_fork_fails(day, tmp_path, monkeypatch):
    def no_fork():
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(ck, "_fork", no_fork)
    r = _runner(day, tmp_path)
    assert r.run(IteratorSource(day.raw_batches())) is True
    assert r.fork_fallback == "the fork failed ([Errno 12] Cannot allocate memory)"
    assert r.driver["n_checkpoints"] >= 2 and r.checkpoint_write_s == 0 and r._pending is None
    assert Pipeline.restore(tmp_path / "ck.npz").checkpoint_driver["n_checkpoints"] == r.driver["n_checkpoints"]


def test_runner_raises_a_failed_forked_write(day, tmp_path, monkeypatch):
    def fail(path, flat, meta_json):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck, "_write_entries", fail)
    r = _runner(day, tmp_path)
    with pytest.raises(OSError, match="No space"):
        r.run(IteratorSource(day.raw_batches()))
    assert r._pending is None and not list(tmp_path.iterdir())


def test_runner_rejects_an_unknown_writer(day):
    with pytest.raises(ValueError, match="background must be False, True / 'thread' or 'fork'"):
        Runner(Pipeline(day.topology), background="process")


# ---- the writer and the run's process --------------------------------------------------------------------------
_SCRIPT = textwrap.dedent(
    """
    import atexit, os, sys, time
    from pathlib import Path
    from telcoanalytics.pipeline import checkpoint as ck
    from telcoanalytics.pipeline.pipeline import Pipeline
    from telcoanalytics.synth.network import generate

    out = Path(sys.argv[1]); mode = sys.argv[2]
    day = generate(n_elements=20, n_regions=1, days=0.01, seed=2)
    p = Pipeline(day.topology)
    p.feed(list(day.raw_batches())[:3])
    atexit.register(lambda: open(out / "atexit", "a").write("x"))
    log = open(out / "log.txt", "w")  # buffered, not flushed before the fork
    log.write("parent line\\n")
    sys.stdout.write("before fork;")  # stdout is a pipe: block-buffered
    real = ck._write_entries

    def slow(path, flat, meta_json):
        (out / "writer.pid").write_text(str(os.getpid()))
        if mode == "kill":
            time.sleep(120)  # the parent is killed meanwhile
        return real(path, flat, meta_json)

    ck._write_entries = slow
    pending = ck.fork_checkpoint(p, out / "ck.npz")
    while not (out / "writer.pid").exists():
        time.sleep(0.01)
    if mode == "kill":
        os.kill(os.getpid(), 9)
    os.kill(pending.pid, 15)  # SIGTERM / SIGINT to the writer are left to the run
    os.kill(pending.pid, 2)
    pending.wait()
    sys.stdout.write("after wait")
    log.close()
    """
)


def _script(tmp_path, mode):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path), mode], env=env, capture_output=True, text=True, timeout=300
    )


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.slow  # two Python processes
def test_the_writer_flushes_nothing_of_the_run_and_ignores_stop_signals(tmp_path):
    r = _script(tmp_path, "ok")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "before fork;after wait"  # the buffered text once
    assert (tmp_path / "log.txt").read_text() == "parent line\n"
    assert (tmp_path / "atexit").read_text() == "x"  # the run's atexit handler ran once: not in the writer
    assert Pipeline.restore(tmp_path / "ck.npz").n_batches == 3


@pytest.mark.slow
def test_the_writer_dies_with_the_run(tmp_path):
    """A SIGKILLed run leaves no writer behind to finish a checkpoint under a resumed run."""
    r = _script(tmp_path, "kill")
    assert r.returncode == -9
    pid = int((tmp_path / "writer.pid").read_text())
    deadline = time.time() + 10
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.02)
    assert not _alive(pid)
    assert not (tmp_path / "ck.npz").exists()
    assert not (tmp_path / "atexit").exists()
