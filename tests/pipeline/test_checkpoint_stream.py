"""Checkpoints streamed entry by entry and written in the background: the snapshot is independent of
the live state, the file equals what ``np.savez`` of the encoded entries gives, the helpers equal
plain NumPy references, and a background writer's error is never lost."""

import io
import json
import threading
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from telcoanalytics.pipeline import checkpoint as ck
from telcoanalytics.pipeline.checkpoint import start_checkpoint, write_checkpoint
from telcoanalytics.pipeline.pipeline import Pipeline
from telcoanalytics.pipeline.run import IteratorSource, Runner
from telcoanalytics.synth.network import generate


@pytest.fixture(scope="module")
def day():
    return generate(n_elements=40, n_regions=2, days=0.02, seed=4)


def _loaded(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _assert_same_entries(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), k


# ---- the helpers against plain NumPy ---------------------------------------------------------------------
@settings(max_examples=80, deadline=None)
@given(
    hnp.arrays(
        st.sampled_from(["f8", "f4", "i4", "i2", "i8"]),
        hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6),
        elements=st.sampled_from([0, 1, -1, 7]),
    ),
    st.data(),
)
def test_held_slots_equals_a_plain_any(a, data):
    if a.dtype.kind == "f" and a.size:  # -0.0 and NaN are values, +0.0 is not
        a.reshape(-1)[data.draw(st.integers(0, a.size - 1))] = data.draw(st.sampled_from([-0.0, np.nan, 0.0]))
    axis = data.draw(st.integers(0, a.ndim - 1))
    ref = ((a != 0) | np.signbit(a)) if a.dtype.kind == "f" else a != 0
    ref = ref.any(axis=tuple(i for i in range(a.ndim) if i != axis)) if a.ndim > 1 else ref
    np.testing.assert_array_equal(ck._held_slots(a, axis), ref)
    if a.ndim > 1:  # a non-contiguous view too
        v = a[::-1]
        ref_v = ((v != 0) | np.signbit(v)) if v.dtype.kind == "f" else v != 0
        np.testing.assert_array_equal(
            ck._held_slots(v, axis), ref_v.any(axis=tuple(i for i in range(v.ndim) if i != axis))
        )


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        st.sampled_from(["f8", "i8", "i4"]),
        hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=7),
        elements=st.integers(-3, 300),
    ),
    st.data(),
)
def test_compacted_entry_equals_compress_and_npy_bytes(a, data):
    axis = data.draw(st.integers(0, a.ndim - 1))
    keep = np.array(data.draw(st.lists(st.booleans(), min_size=a.shape[axis], max_size=a.shape[axis])), dtype=bool)
    dtype = data.draw(st.sampled_from([a.dtype, np.dtype("f4") if a.dtype.kind == "f" else np.dtype("i2")]))
    block, ck._BLOCK_ELEMENTS = ck._BLOCK_ELEMENTS, data.draw(st.integers(1, 50))  # many blocks
    try:
        c = ck._Compacted(a, keep, axis, dtype)
        got = c.materialize()
        buf = io.BytesIO()
        c.write_npy(buf)
    finally:
        ck._BLOCK_ELEMENTS = block
    ref = np.compress(keep, a, axis=axis).astype(dtype)
    assert got.dtype == ref.dtype and got.shape == ref.shape == c.shape
    np.testing.assert_array_equal(got, ref)
    want = io.BytesIO()
    np.save(want, ref)
    assert buf.getvalue() == want.getvalue()


@settings(max_examples=80, deadline=None)
@given(
    hnp.arrays(
        st.sampled_from(["f8", "f4", "i8", "u1", "?", "U5", "S3", "c16", "M8[ms]", ">i4"]),
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=40),
    ),
    st.integers(1, 64),
)
def test_plain_arrays_are_written_byte_for_byte_as_np_save_writes_them(a, block):
    small, ck._WRITE_BLOCK_BYTES = ck._WRITE_BLOCK_BYTES, block
    try:
        got = io.BytesIO()
        assert ck._write_plain_npy(got, a)
    finally:
        ck._WRITE_BLOCK_BYTES = small
    want = io.BytesIO()
    np.save(want, a, allow_pickle=False)
    assert got.getvalue() == want.getvalue()


def test_other_arrays_are_left_to_numpy():
    structured = np.zeros(3, dtype=[("a", "i4"), ("b", "U3")])
    for a in (np.arange(12.0).reshape(3, 4)[:, ::2], np.asfortranarray(np.ones((3, 4))), structured):
        assert not ck._write_plain_npy(io.BytesIO(), a)
    with zipfile.ZipFile(io.BytesIO(), "w") as z:
        ck._write_member(z, "s", structured)
        ck._write_member(z, "t", np.arange(12.0).reshape(3, 4)[:, ::2])
        with z.open("s.npy") as f:
            np.testing.assert_array_equal(np.lib.format.read_array(f), structured)
        with z.open("t.npy") as f:
            np.testing.assert_array_equal(np.lib.format.read_array(f), np.arange(12.0).reshape(3, 4)[:, ::2])


def test_float32_narrowing_checks_every_value_after_the_sample():
    a = np.full(100_000, 0.5)
    a[1] = 0.1  # not exactly a float32, and not in the strided sample
    assert ck._narrow(a).dtype == np.float64
    a[1] = 0.25
    assert ck._narrow(a).dtype == np.float32
    a[::24] = 0.1  # the sample says no at once
    assert ck._narrow(a).dtype == np.float64


# ---- the file ------------------------------------------------------------------------------------------
def test_streamed_file_equals_savez_of_the_encoded_entries(day, tmp_path):
    """The streamed writer's archive holds exactly what ``np.savez`` of ``encode_entries`` holds."""
    p = Pipeline(day.topology, allowed_lateness_ms=60_000)
    p.feed(list(day.raw_batches())[:12])
    small, ck.ENCODE_MIN_BYTES = ck.ENCODE_MIN_BYTES, 256  # compact many entries of the small state
    try:
        path = write_checkpoint(p, tmp_path / "s.npz", driver={"position": 12})
        enc, how = ck.encode_entries(ck.pipeline_entries(p))
    finally:
        ck.ENCODE_MIN_BYTES = small
    assert how  # something was compacted
    got = _loaded(path)
    meta = json.loads(bytes(got.pop("__meta__")).decode())
    assert meta["encoded"] == json.loads(json.dumps(how)) and meta["driver"] == {"position": 12}
    _assert_same_entries(got, enc)
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None and z.namelist()[-1] == "__meta__.npy"
    q = Pipeline.restore(path)
    assert q.counts() == p.counts()


def test_streamed_fixed_size_entries_equal_their_encoding(tmp_path):
    """Large entries of every kind, fixed-size ones (written block by block) included: the archive
    holds what ``encode_entries`` gives, and reads back to the original arrays."""
    rng = np.random.default_rng(5)
    week = np.zeros((168, 300, 2))
    week[:, rng.random(300) < 0.7] = rng.normal(size=(168, 1, 2))
    counts = rng.integers(0, 40, (300, 400)).astype(np.int32)
    counts[::3] = 0
    flat = {
        "comp.anomaly::net::detector::seas_w": week,
        "comp.anomaly::net::detector::seas_d": week[:24].copy(),
        "comp.analysis::series::counts_x": counts,
        "sparse": np.where(rng.random(40_000) < 0.01, 1.5, 0.0),
        "dense": rng.normal(size=40_000),
        "names": np.array(["a", "bc"] * 5000),
    }
    block, ck._BLOCK_ELEMENTS = ck._BLOCK_ELEMENTS, 1000
    try:
        ck._write_entries(tmp_path / "f.npz", dict(flat), json.dumps({"kind": "k"}))
    finally:
        ck._BLOCK_ELEMENTS = block
    enc, how = ck.encode_entries(dict(flat))
    assert set(how) == {"comp.anomaly::net::detector::seas_w", "comp.anomaly::net::detector::seas_d"} | {
        "comp.analysis::series::counts_x",
        "sparse",
    }
    got = _loaded(tmp_path / "f.npz")
    assert json.loads(bytes(got.pop("__meta__"))) == {"kind": "k", "encoded": json.loads(json.dumps(how))}
    _assert_same_entries(got, enc)
    back = ck.decode_entries(got, how)
    _assert_same_entries(back, flat)


def test_snapshot_copies_what_the_live_state_holds_and_nothing_else(monkeypatch):
    live = np.arange(10.0)
    view_base = np.zeros(8)

    def entries(pipe):
        return {"live": live, "view": view_base[2:], "fresh": np.ones(4), "routed": pipe}

    monkeypatch.setattr(ck, "pipeline_entries", lambda pipe: dict(entries(pipe), routed=np.full(3, 2)))
    snap = ck.snapshot_entries(None)
    assert not np.shares_memory(snap["live"], live) and np.array_equal(snap["live"], live)
    assert not np.shares_memory(snap["view"], view_base) and snap["view"].shape == (6,)
    fresh = ck.pipeline_entries(None)["fresh"]
    assert fresh.base is None  # the kind of array a to_state copy is
    live[:] = -1  # the live state moves on: the snapshot does not
    assert snap["live"][3] == 3.0


def test_fresh_arrays_are_not_copied_again(monkeypatch):
    made = {}

    def entries(pipe):
        made["a"] = np.ones(5)
        made["id"] = id(made["a"])
        out = {"a": made.pop("a")}
        return out

    monkeypatch.setattr(ck, "pipeline_entries", entries)
    snap = ck.snapshot_entries(None)
    assert id(snap["a"]) == made["id"]  # held by the snapshot alone: used as it is


def test_background_checkpoint_is_the_state_at_the_snapshot(day, tmp_path, monkeypatch):
    """The pipeline keeps processing while the writer is held back; the file still holds the state of
    the moment it was started (compared with a twin pipeline fed the same batches, written in the
    foreground)."""
    batches = list(day.raw_batches())
    p, twin = (Pipeline(day.topology, allowed_lateness_ms=60_000) for _ in range(2))
    p.feed(batches[:15])
    twin.feed(batches[:15])
    go = threading.Event()
    real = ck._encode_iter

    def held(*args, **kw):
        assert go.wait(60)
        yield from real(*args, **kw)

    monkeypatch.setattr(ck, "_encode_iter", held)
    pending = start_checkpoint(p, tmp_path / "bg.npz", driver={"position": 15})
    p.feed(batches[15:])  # mutates the live state, routing counts included
    p.advance(p.max_event_ms + 1)
    assert not pending.done()
    go.set()
    assert pending.wait() == tmp_path / "bg.npz" and pending.done()
    monkeypatch.setattr(ck, "_encode_iter", real)
    twin_path = write_checkpoint(twin, tmp_path / "twin.npz", driver={"position": 15})
    a, b = _loaded(tmp_path / "bg.npz"), _loaded(twin_path)
    assert json.loads(bytes(a.pop("__meta__"))) == json.loads(bytes(b.pop("__meta__")))
    _assert_same_entries(a, b)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["bg.npz", "twin.npz"]  # no temporary left
    assert Pipeline.restore(tmp_path / "bg.npz").counts() == twin.counts() != p.counts()


def test_background_write_error_is_raised_by_wait_and_leaves_no_file(day, tmp_path, monkeypatch):
    p = Pipeline(day.topology)
    p.feed(list(day.raw_batches())[:3])

    def full(f):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck, "write_atomic", lambda path, write: full(None))
    pending = start_checkpoint(p, tmp_path / "x.npz")
    with pytest.raises(OSError, match="No space"):
        pending.wait()
    assert pending.wait() == tmp_path / "x.npz"  # raised once
    assert not list(tmp_path.iterdir())


# ---- the runner ----------------------------------------------------------------------------------------
def _runner(day, tmp_path, background=True, **kw):
    return Runner(
        Pipeline(day.topology, allowed_lateness_ms=60_000),
        checkpoint_path=tmp_path / "ck.npz",
        checkpoint_every_min=2,
        background=background,
        **kw,
    )


def test_runner_writes_in_the_foreground_by_default(day, tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "start_checkpoint", lambda *a, **k: pytest.fail("no background write by default"))
    r = Runner(
        Pipeline(day.topology, allowed_lateness_ms=60_000), checkpoint_path=tmp_path / "ck.npz", checkpoint_every_min=2
    )
    assert r.run(IteratorSource(day.raw_batches()), wait=False) is True
    assert r.driver["n_checkpoints"] >= 2 and r._pending is None
    assert Pipeline.restore(tmp_path / "ck.npz").checkpoint_driver["n_checkpoints"] == r.driver["n_checkpoints"]


def test_runner_writes_periodic_checkpoints_in_the_background(day, tmp_path, monkeypatch):
    started = []
    real = ck.start_checkpoint
    monkeypatch.setattr(ck, "start_checkpoint", lambda *a, **k: started.append(1) or real(*a, **k))
    r = _runner(day, tmp_path)
    assert r.run(IteratorSource(day.raw_batches())) is True
    assert len(started) == r.driver["n_checkpoints"] >= 2 and r._pending is None
    q = Pipeline.restore(tmp_path / "ck.npz")  # the last one is complete when run() returns
    assert q.checkpoint_driver["n_checkpoints"] == r.driver["n_checkpoints"]
    assert r.checkpoint_write_s > 0
    r.checkpoint(r.driver["position"], finished=True)  # the final one in the foreground
    assert len(started) == r.driver["n_checkpoints"] - 1
    assert Pipeline.restore(tmp_path / "ck.npz").checkpoint_driver["finished"] is True


def test_runner_raises_a_failed_background_write(day, tmp_path, monkeypatch):
    def fail(path, flat, meta_json):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck, "_write_entries", fail)
    r = _runner(day, tmp_path)
    with pytest.raises(OSError, match="No space"):
        r.run(IteratorSource(day.raw_batches()))
    assert r._pending is None


def test_runner_keeps_its_own_error_and_notes_the_writers(day, tmp_path, monkeypatch):
    gate = threading.Event()

    def fail(path, flat, meta_json):
        gate.wait(60)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck, "_write_entries", fail)
    r = _runner(day, tmp_path)
    n = {"batches": 0}

    def boom(name, data):
        n["batches"] += 1
        if r._pending is not None:
            gate.set()
            raise RuntimeError("source broke")

    r.hooks.append(boom)
    with pytest.raises(RuntimeError, match="source broke") as info:
        r.run(IteratorSource(day.raw_batches()))
    assert any("background checkpoint write failed too: OSError" in note for note in info.value.__notes__)


def test_runner_stopped_returns_false_after_its_write(day, tmp_path):
    r = _runner(day, tmp_path)
    r.hooks.append(lambda name, data: r.request_stop() if r.driver["n_checkpoints"] else None)
    assert r.run(IteratorSource(day.raw_batches())) is False
    assert r._pending is None and (tmp_path / "ck.npz").exists()


def test_runner_without_wait_leaves_the_last_write_to_the_next_checkpoint(day, tmp_path, monkeypatch):
    r = _runner(day, tmp_path)
    assert r.run(IteratorSource(day.raw_batches()), wait=False) is True
    assert r._pending is not None  # not waited for
    assert r.wait_checkpoint() == tmp_path / "ck.npz" and r._pending is None
    assert r.wait_checkpoint() is None  # nothing pending
    n = r.driver["n_checkpoints"]
    assert Pipeline.restore(tmp_path / "ck.npz").checkpoint_driver["n_checkpoints"] == n
    # one write at a time: a foreground checkpoint waits for the background one still running
    gate, order = threading.Event(), []
    real = ck._write_entries

    def held(path, flat, meta_json):
        if json.loads(meta_json)["driver"]["n_checkpoints"] == n + 1:
            assert gate.wait(60)
        order.append(json.loads(meta_json)["driver"]["n_checkpoints"])
        return real(path, flat, meta_json)

    monkeypatch.setattr(ck, "_write_entries", held)
    r.checkpoint(r.driver["position"], background=True)
    assert not r._pending.done()
    threading.Timer(0.3, gate.set).start()
    r.checkpoint(r.driver["position"], finished=True)
    assert order == [n + 1, n + 2] and r._pending is None
    assert Pipeline.restore(tmp_path / "ck.npz").checkpoint_driver["n_checkpoints"] == n + 2
