"""Checkpoint files: atomic durable writes, one clear error for damaged / foreign / newer files,
older formats still load."""

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from telcoanalytics.pipeline import checkpoint as ck
from telcoanalytics.pipeline.checkpoint import CHECKPOINT_FORMAT, CheckpointError, read_checkpoint, write_atomic
from telcoanalytics.pipeline.components import WindowsComponent
from telcoanalytics.pipeline.pipeline import Pipeline
from telcoanalytics.synth.network import generate

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def day():
    return generate(n_elements=40, n_regions=2, days=0.02, seed=4)


@pytest.fixture
def saved(day, tmp_path):
    p = Pipeline(day.topology, allowed_lateness_ms=60_000)
    p.feed(list(day.raw_batches())[:10])
    return p, p.checkpoint(tmp_path / "ck.npz", driver={"position": 10, "outputs": {"a.jsonl": 5}})


def _entries(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _rewrite(path, flat, **meta_changes):
    meta = json.loads(bytes(flat["__meta__"]).decode())
    for k, v in meta_changes.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    flat = dict(flat, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    np.savez(path, **flat)
    return path


def test_roundtrip_keeps_the_driver_section(saved, day):
    p, path = saved
    q = Pipeline.restore(path)
    assert q.checkpoint_driver == {"position": 10, "outputs": {"a.jsonl": 5}}
    assert q.counts() == p.counts() and q.n_batches == p.n_batches
    np.testing.assert_array_equal(q.routed, p.routed)
    assert Pipeline(day.topology).checkpoint_driver is None
    assert sorted(x.name for x in path.parent.iterdir()) == ["ck.npz"]  # no temporary left


def test_write_is_fsynced_and_renamed(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.path.realpath(f"/proc/self/fd/{fd}")), real(fd)))
    write_atomic(tmp_path / "x.bin", lambda f: f.write(b"1"))
    assert synced[-1] == str(tmp_path) and len(synced) == 2  # the file (as its temporary), then the folder
    assert (tmp_path / "x.bin").read_bytes() == b"1"


def test_failed_write_removes_its_temporary_and_keeps_the_old_file(saved, tmp_path, monkeypatch):
    p, path = saved
    before = path.read_bytes()

    def boom(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="No space"):
        p.checkpoint(path)
    assert path.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["ck.npz"]

    def half(f):
        f.write(b"PK")
        raise KeyboardInterrupt

    monkeypatch.undo()
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, half)
    assert path.read_bytes() == before and sorted(x.name for x in tmp_path.iterdir()) == ["ck.npz"]


def test_missing_truncated_and_garbage_files(saved, tmp_path):
    _, path = saved
    with pytest.raises(CheckpointError, match=r"nope.npz does not exist .*start the run afresh"):
        Pipeline.restore(tmp_path / "nope.npz")
    data = path.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"trunc.npz is damaged or not a checkpoint \(not a complete .npz"):
        Pipeline.restore(tmp_path / "trunc.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(CheckpointError, match="text.npz is damaged or not a checkpoint"):
        Pipeline.restore(tmp_path / "text.npz")


def test_bad_crc_is_damage(saved, tmp_path):
    _, path = saved
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("routed.npy")
    raw = bytearray(path.read_bytes())
    off = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size - 1
    raw[off] ^= 0xFF  # flip the last data byte of an entry
    (tmp_path / "crc.npz").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="crc.npz is damaged"):
        Pipeline.restore(tmp_path / "crc.npz")


def test_foreign_files(saved, tmp_path):
    _, path = saved
    np.savez(tmp_path / "other.npz", a=np.arange(3))
    with pytest.raises(CheckpointError, match="other.npz is not a telcoanalytics checkpoint .*without the __meta__"):
        Pipeline.restore(tmp_path / "other.npz")
    np.savez(tmp_path / "pickled.npz", __meta__=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="pickled.npz .*pickled Python objects, which are never loaded"):
        Pipeline.restore(tmp_path / "pickled.npz")
    flat = _entries(path)
    with pytest.raises(CheckpointError, match="kind 'someone.else'"):
        Pipeline.restore(_rewrite(tmp_path / "kind.npz", flat, kind="someone.else"))
    flat2 = dict(flat, __meta__=np.frombuffer(b"[1, 2", dtype=np.uint8))
    np.savez(tmp_path / "meta.npz", **flat2)
    with pytest.raises(CheckpointError, match=r"meta.npz is damaged \(unreadable __meta__"):
        Pipeline.restore(tmp_path / "meta.npz")


def test_newer_and_impossible_formats(saved, tmp_path):
    _, path = saved
    flat = _entries(path)
    with pytest.raises(CheckpointError, match=f"format {CHECKPOINT_FORMAT + 1}, written by a newer telcoanalytics"):
        Pipeline.restore(_rewrite(tmp_path / "new.npz", flat, format=CHECKPOINT_FORMAT + 1))
    with pytest.raises(CheckpointError, match="format 0, which never existed"):
        Pipeline.restore(_rewrite(tmp_path / "zero.npz", flat, format=0))


def test_missing_entries_are_damage(saved, tmp_path):
    _, path = saved
    flat = _entries(path)
    del flat["routed"]
    np.savez(tmp_path / "noroute.npz", **flat)
    with pytest.raises(CheckpointError, match=r"noroute.npz is damaged \(missing or malformed entry KeyError"):
        Pipeline.restore(tmp_path / "noroute.npz")
    flat = _entries(path)
    with pytest.raises(CheckpointError, match=r"lacks max_event_ms"):
        Pipeline.restore(_rewrite(tmp_path / "nomax.npz", flat, max_event_ms=None))


def test_format_2_still_loads(saved, tmp_path):
    p, path = saved
    old = _rewrite(tmp_path / "f2.npz", _entries(path), format=2, kind=None, driver=None)
    q = Pipeline.restore(old)
    assert q.counts() == p.counts() and q.checkpoint_driver is None
    assert read_checkpoint(old)[1]["format"] == CHECKPOINT_FORMAT  # upgraded in memory


def test_format_1_still_loads():
    """A checkpoint written by the format-1 code (see data/README.md for what it recorded)."""
    q = Pipeline.restore(DATA / "format1_windows.npz")
    assert q.counts()["equip"] == {"read": 225, "accepted": 220, "quarantined": 5}
    assert q.counts()["cdr"] == {"read": 19, "accepted": 11, "quarantined": 8}
    assert q.n_batches == 18 and q.alerts is None and q.next_tick_ms is None
    np.testing.assert_array_equal(q.routed, [[4, 7], [110, 110], [21, 21], [24, 24], [0, 0]])  # + complaint (new)
    w = q.components["windows"]
    assert isinstance(w, WindowsComponent) and w.win.max_ts_ms == 1772410437060 and w.n_side == 96
    assert q.conserved()


def test_format_1_with_an_unknown_component(tmp_path):
    flat = _entries(DATA / "format1_windows.npz")
    with pytest.raises(CheckpointError, match=r"holds components \['alerts'\] that this version does not know"):
        Pipeline.restore(_rewrite(tmp_path / "f1.npz", flat, components=["windows", "alerts"]))


def test_flatten_rejects_objects():
    with pytest.raises(TypeError, match="state entry p::x has unsupported type object"):
        ck._flatten("p", {"x": object()}, {})


# ---- format 4: large entries compacted losslessly ---------------------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["i8", "i4", "u8", "f8", "f4"]).flatmap(
        lambda dt: hnp.arrays(
            dt,
            st.integers(0, 3000),
            elements=st.one_of(
                st.just(0),
                st.integers(-300, 300) if dt[0] in "iu" and dt[0] != "u" else st.integers(0, 300),
                st.integers(-(2**40), 2**40) if dt == "i8" else st.just(1),
                st.floats(width=32 if dt == "f4" else 64, allow_nan=True) if dt[0] == "f" else st.just(2),
            ),
        )
    )
)
def test_encoding_restores_every_array_exactly(a):
    """Sparse or dense, narrowed or not: decode(encode(x)) == x in dtype, shape and every bit
    (NaN at the same places, the sign of zero kept)."""
    small, ck.ENCODE_MIN_BYTES = ck.ENCODE_MIN_BYTES, 0
    try:
        enc, how = ck.encode_entries({"x": a, "y": a.reshape(-1, 1) if a.size else a})
    finally:
        ck.ENCODE_MIN_BYTES = small
    back = ck.decode_entries(dict(enc), json.loads(json.dumps(how)))
    for k in ("x", "y"):
        assert back[k].dtype == a.dtype and back[k].size == a.size
        if a.dtype.kind == "f":
            np.testing.assert_array_equal(np.signbit(back[k].ravel()), np.signbit(a.ravel()))
        np.testing.assert_array_equal(back[k].ravel(), a.ravel())
    held = np.count_nonzero((a != 0) | np.signbit(a)) if a.dtype.kind == "f" else np.count_nonzero(a)  # -0.0 held
    if a.size and held < 0.4 * a.size:
        assert how["x"]["sparse"] and "x@nz" in enc


def test_large_entries_are_stored_compacted_and_read_back(day, tmp_path):
    """A pipeline whose windows hold mostly zeros: the file is smaller than the state, the restored
    state equals the saved one, and format 3 files (nothing compacted) still load."""
    p = Pipeline(day.topology, allowed_lateness_ms=60_000, components={"windows": WindowsComponent(day.topology)})
    p.feed(list(day.raw_batches())[:10])
    path = p.checkpoint(tmp_path / "ck.npz")
    flat = _entries(path)
    meta = json.loads(bytes(flat["__meta__"]).decode())
    assert meta["format"] == 4 and "comp.windows::win::cells" in meta["encoded"]
    state = ck.pipeline_entries(p)
    assert path.stat().st_size < 0.7 * sum(v.nbytes for v in state.values())
    got, _ = read_checkpoint(path)
    for k, v in state.items():
        assert got[k].dtype == v.dtype
        np.testing.assert_array_equal(got[k], v)
    plain = dict(state, __meta__=flat["__meta__"])  # the same state written as format 3 did
    old = _rewrite(tmp_path / "old.npz", plain, format=3, encoded=None)
    q = Pipeline.restore(old)
    np.testing.assert_array_equal(q.components["windows"].win.cells, p.components["windows"].win.cells)
    flat.pop("comp.windows::win::cells@nz")  # damaged: the positions are missing
    with pytest.raises(CheckpointError, match=r"ck2.npz is damaged \(a compacted entry cannot be rebuilt"):
        Pipeline.restore(_rewrite(tmp_path / "ck2.npz", flat))
