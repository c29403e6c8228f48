"""Output files that resume exactly (truncate to the checkpointed length, undo later rotations),
rotation with retention, the runner's periodic checkpoints and its progress line."""

import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telcoanalytics.pipeline.pipeline import Pipeline
from telcoanalytics.pipeline.run import IteratorSource, OutputLog, Progress, Runner
from telcoanalytics.synth.network import generate


@pytest.fixture(scope="module")
def day():
    return generate(n_elements=40, n_regions=2, days=0.05, seed=8)


def test_resume_truncates_what_came_after_the_checkpoint(tmp_path):
    log = OutputLog(tmp_path / "a.jsonl")
    log.write_lines(["1", "2"])
    st_ = log.state()
    log.write_lines(["3"])
    log.close()
    again = OutputLog(tmp_path / "a.jsonl", state=st_)
    again.write_lines(["3b"])
    assert again.read_lines() == ["1", "2", "3b"]
    again.close()
    (tmp_path / "a.jsonl").write_text("1\n")  # someone cut the file shorter than the checkpoint saw
    with pytest.raises(ValueError, match="has 2 bytes, the checkpoint recorded 4: it was truncated"):
        OutputLog(tmp_path / "a.jsonl", state=st_)


def test_fresh_log_replaces_old_files(tmp_path):
    (tmp_path / "a.jsonl").write_text("old\n")
    (tmp_path / "a.jsonl.3").write_text("old\n")
    log = OutputLog(tmp_path / "a.jsonl")
    assert log.read_lines() == [] and log.files() == [tmp_path / "a.jsonl"]


@settings(max_examples=30, deadline=None)
@given(
    chunks=st.lists(st.lists(st.integers(0, 999), min_size=1, max_size=4), min_size=1, max_size=12),
    cut=st.integers(0, 11),
    rotate=st.integers(8, 40),
)
def test_rotation_and_resume_equal_one_uninterrupted_log(tmp_path_factory, chunks, cut, rotate):
    """Resuming at any checkpoint, after any number of rotations, retains exactly what an
    uninterrupted writer retains (reference: the lines, in order, as plain Python lists)."""
    d = tmp_path_factory.mktemp("rot")
    cut = min(cut, len(chunks))
    ref = OutputLog(d / "ref.jsonl", rotate_bytes=rotate, keep=None)
    for c in chunks:
        ref.write_lines([str(x) for x in c])
    log = OutputLog(d / "x.jsonl", rotate_bytes=rotate, keep=None)
    for c in chunks[:cut]:
        log.write_lines([str(x) for x in c])
    state = log.state()
    for c in chunks[cut:]:  # work lost in the crash (rotations included)
        log.write_lines([str(x) for x in c] + ["lost"])
    log.close()
    log = OutputLog(d / "x.jsonl", rotate_bytes=rotate, keep=None, state=state)
    for c in chunks[cut:]:
        log.write_lines([str(x) for x in c])
    want = [str(x) for c in chunks for x in c]
    assert log.read_lines() == ref.read_lines() == want
    assert [p.name.replace("ref", "x") for p in ref.files()] == [p.name for p in log.files()]


def test_retention_keeps_the_newest_rotated_files(tmp_path):
    log = OutputLog(tmp_path / "a.jsonl", rotate_bytes=4, keep=2)
    for k in range(6):
        log.write_lines([f"{k:03d}"])  # 4 bytes each: one rotation per write
    assert [p.name for p in log.files()] == ["a.jsonl.5", "a.jsonl.6", "a.jsonl"]
    assert log.read_lines() == ["004", "005"]
    with pytest.raises(ValueError, match="keep"):
        OutputLog(tmp_path / "b.jsonl", rotate_bytes=4, keep=0)
    with pytest.raises(ValueError, match="rotate_bytes"):
        OutputLog(tmp_path / "b.jsonl", rotate_bytes=0)


def test_runner_checkpoints_every_n_event_minutes_and_resumes(day, tmp_path):
    batches = list(day.raw_batches())
    full = Pipeline(day.topology)
    Runner(full).run(IteratorSource(batches))
    p = Pipeline(day.topology)
    r = Runner(p, checkpoint_path=tmp_path / "ck.npz", checkpoint_every_min=10)
    seen = []
    orig = r.checkpoint
    r.checkpoint = lambda pos, **kw: (seen.append((pos, p.watermark_ms)), orig(pos, **kw))[1]
    r.run(IteratorSource(batches[: len(batches) * 2 // 3]))
    wms = np.array([w for _, w in seen])
    assert len(seen) >= 3 and np.all(np.diff(wms // 600_000) >= 1)  # at most one per 10 event-minutes
    q = Pipeline.restore(tmp_path / "ck.npz")
    pos = q.checkpoint_driver["position"]
    assert pos == seen[-1][0] and q.checkpoint_driver["n_in"] == sum(c["read"] for c in q.counts().values())
    r2 = Runner(q, driver=q.checkpoint_driver)
    assert r2.run(IteratorSource(batches, start=pos))
    assert q.counts() == full.counts() and r2.driver["n_in"] == sum(c["read"] for c in full.counts().values())
    with pytest.raises(ValueError, match="checkpoint_every_min must be > 0"):
        Runner(p, checkpoint_every_min=0)


def test_runner_stops_after_the_current_batch(day):
    p = Pipeline(day.topology)
    r = Runner(p)
    src = IteratorSource(day.raw_batches())

    def hook(source, rows):
        if src.n == 5:
            r.request_stop()

    r.hooks.append(hook)
    assert r.run(src) is False and src.position() == 5 == p.n_batches


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal():
    quiet = io.StringIO()
    p = Progress(quiet)
    p.update(10, 0, force=True)
    p.close()
    assert quiet.getvalue() == ""
    tty = _Tty()
    p = Progress(tty)
    p.update(1_234, 86_400_000, force=True)
    p.close()
    text = tty.getvalue()
    assert text.startswith("\r1,234 rows | event time 1970-01-02 00:00:00 UTC | ") and text.endswith("\n")
    lines = io.StringIO()
    p = Progress(lines, mode="lines", show_lag=True, clock=lambda: 86_460.0)
    p.update(5, 86_400_000, force=True)
    assert "lag 60 s" in lines.getvalue() and lines.getvalue().endswith("\n")
    with pytest.raises(ValueError, match="progress mode"):
        Progress(mode="fancy")


def test_driver_section_is_json(day, tmp_path):
    p = Pipeline(day.topology)
    r = Runner(p, checkpoint_path=tmp_path / "ck.npz", outputs={"a": OutputLog(tmp_path / "a.jsonl")})
    r.outputs["a"].write_lines(["x"])
    r.checkpoint(3)
    d = Pipeline.restore(tmp_path / "ck.npz").checkpoint_driver
    assert d["position"] == 3 and d["outputs"] == {"a": {"seq": 0, "bytes": 2, "counters": {}}}
    json.dumps(d)


def test_streamed_findings_equal_the_in_memory_ones_and_leave_the_state(day, tmp_path):
    from telcoanalytics.pipeline.components import build_components

    batches = list(day.raw_batches())
    a = Pipeline(day.topology, components=build_components(day.topology, ["sla", "anomaly"]))
    b = Pipeline(day.topology, components=build_components(day.topology, ["sla", "anomaly"]))
    logs = {n: OutputLog(tmp_path / f"{n}.jsonl") for n in ("sla_events", "anomalies")}
    b.components["sla"].attach_log(logs["sla_events"])
    half = len(batches) // 2
    for p in (a, b):
        p.feed(batches[:half])
    b.components["anomaly"].attach_log(logs["anomalies"])  # attached late: what it held is written first
    for p in (a, b):
        p.feed(batches[half:])
        p.advance(p.max_event_ms + 1)
    ea, eb = a.components["sla"].events, b.components["sla"].events
    assert ea and [e.to_dict() for e in ea] == [e.to_dict() for e in eb]
    ra, rb = np.concatenate(a.components["anomaly"].rows), np.concatenate(b.components["anomaly"].rows)
    assert len(ra) and ra.dtype == rb.dtype
    for f in ra.dtype.names:
        np.testing.assert_array_equal(ra[f], rb[f])  # NaN == NaN here
    st_sla, st_an = b.components["sla"].to_state(), b.components["anomaly"].to_state()
    assert st_sla["events"] == [] and len(st_an["rows"]) == 0  # bounded: not in the checkpoint
    assert a.components["sla"].report_lines() == b.components["sla"].report_lines()
    assert a.components["anomaly"].report_lines() == b.components["anomaly"].report_lines()


def test_anomalies_found_between_advances_survive_a_checkpoint(day):
    from telcoanalytics.anomaly.detector import ANOMALY_DTYPE
    from telcoanalytics.pipeline.components import AnomalyComponent

    comp = AnomalyComponent(day.topology)
    row = np.zeros(1, ANOMALY_DTYPE)
    row["classification"] = "fault"
    comp._pending.append(row)  # as update() leaves what it scored until the next advance
    again = AnomalyComponent.from_state(comp.to_state(), day.topology)
    assert len(again._pending) == 1 and again._pending[0]["classification"][0] == "fault"


def test_resume_refuses_damaged_foreign_and_finished_runs(tmp_path):
    from telcoanalytics import cli

    out = tmp_path / "o"
    out.mkdir()
    (out / "checkpoint.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(SystemExit, match=r"checkpoint .*checkpoint.npz is damaged or not a checkpoint"):
        cli.main(["replay", "--resume", str(out)])
    day = generate(n_elements=40, n_regions=2, days=0.01, seed=1)
    Pipeline(day.topology).checkpoint(out / "checkpoint.npz")  # a library checkpoint: no run settings
    with pytest.raises(SystemExit, match="was not written by a replay"):
        cli.main(["replay", "--resume", str(out)])
    with pytest.raises(SystemExit, match="no checkpoint there"):
        cli.main(["replay", "--resume", str(tmp_path / "empty")])
