"""Committing a pipeline's state pages at start (resident memory that does not creep while
fixed-size state fills) and checkpoint entries stored at their fixed size."""

import mmap
import sys
from typing import NamedTuple

import numpy as np
import pytest

from telcoanalytics.pipeline import checkpoint as ck
from telcoanalytics.pipeline.memory import commit_pages


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")  # pragma: no cover


class _State(NamedTuple):
    profile: np.ndarray
    small: np.ndarray


class _Holder:
    def __init__(self, n):
        self.state = _State(np.zeros((n, 1024)), np.zeros(10))
        self.view = self.state.profile[::2]  # a view of the same allocation: touched once
        self.tables = {"a": [np.zeros(1 << 18, dtype=[("k", "i8"), ("v", "f8")])]}
        self.callback = print  # callables are not walked


def _resident_fraction(a: np.ndarray) -> float:
    """Share of ``a``'s pages resident in memory (``mincore``)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    page = mmap.PAGESIZE
    addr = a.__array_interface__["data"][0]
    start = addr - addr % page
    n_pages = (addr + a.nbytes - start + page - 1) // page
    vec = (ctypes.c_ubyte * n_pages)()
    rc = libc.mincore(ctypes.c_void_p(start), ctypes.c_size_t(n_pages * page), vec)
    assert rc == 0, ctypes.get_errno()
    return sum(v & 1 for v in vec) / n_pages


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_untouched_zero_pages_become_resident_and_values_stay():
    h = _Holder(16_384)  # 128 MiB of zeros, lazily mapped unless the allocator reused resident memory
    h.state.profile[5, 7] = 3.0
    was_resident = _resident_fraction(h.state.profile)
    before = _rss_bytes()
    n = commit_pages(h)
    grown = _rss_bytes() - before
    assert n == h.state.profile.nbytes + h.tables["a"][0].nbytes  # the 80-byte array is below min_bytes
    assert _resident_fraction(h.state.profile) > 0.999  # (the partial page at the end may stay unmapped)
    # resident memory grew by the pages that were not resident before (in a long test session the
    # allocator may hand out memory that is already resident)
    assert grown > 0.9 * (1.0 - was_resident) * h.state.profile.nbytes - (8 << 20)
    assert h.state.profile.sum() == 3.0 and h.state.profile[5, 7] == 3.0 and not h.tables["a"][0]["v"].any()


def test_read_only_and_mapped_memory_left_alone(tmp_path):
    ro = np.zeros(1 << 18)
    ro.flags.writeable = False
    path = tmp_path / "m.bin"
    path.write_bytes(b"\0" * (1 << 21))
    with open(path, "r+b") as f:
        mm = mmap.mmap(f.fileno(), 0)
        mapped = np.frombuffer(mm, dtype=np.uint8)
        assert commit_pages({"ro": ro, "mapped": mapped}, [ro]) == 0
        del mapped
        mm.close()
    deep = {"x": np.zeros(1 << 18)}
    for _ in range(12):  # deeper than the walk goes
        deep = {"x": deep}
    assert commit_pages(deep) == 0
    assert commit_pages(np.zeros(1 << 18), min_bytes=1) == 8 << 18


def test_fixed_size_entries_are_stored_at_full_size_per_slot_held():
    a = np.zeros((168, 1000, 2))
    a[3, 5, 0] = 1.5
    flat = {"comp.anomaly::net::detector::seas_w": a, "comp.x::other": a}
    enc, how = ck.encode_entries(flat)
    w = enc["comp.anomaly::net::detector::seas_w"]
    assert w.dtype == np.float64 and w.shape == (168, 1, 2)  # the whole week of the one slot held, float64
    a[100:, 5, 1] = 3.25  # the slot's week fills: the stored size does not change
    assert ck.encode_entries(dict(flat))[0]["comp.anomaly::net::detector::seas_w"].nbytes == w.nbytes
    assert "comp.x::other" in how and how["comp.x::other"]["sparse"]  # other entries are compacted
    back = ck.decode_entries(enc, how)
    a[100:, 5, 1] = 0
    np.testing.assert_array_equal(back["comp.x::other"], a)
    np.testing.assert_array_equal(back["comp.anomaly::net::detector::seas_w"], a)


def test_a_fresh_pipeline_commits_its_state_and_a_topology_change_recommits():
    from telcoanalytics.pipeline.components import build_components
    from telcoanalytics.pipeline.pipeline import Pipeline
    from telcoanalytics.topology import Topology

    n = 300
    topo = Topology.from_columns(np.arange(n) + 1, {"region": np.arange(n) // 100 + 1, "site": np.arange(n) // 2 + 100})
    pipe = Pipeline(topo, components=build_components(topo, ["anomaly", "windows"]))
    det = pipe.components["anomaly"].net
    assert pipe.committed_bytes >= pipe.components["windows"].win.nbytes // 2
    assert pipe.committed_bytes > 0 and det is not None
    target, ch = topo.add_elements([10_000, 10_001], [100, 101])
    pipe.change_topology(target, [ch])
    assert pipe.committed_bytes > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim and /proc")
def test_release_free_memory_hands_freed_heap_pages_back():
    from telcoanalytics.pipeline.memory import release_free_memory

    chunks = [np.ones(8192) for _ in range(2400)]  # 64 KiB each (below the mmap threshold): heap memory
    pin = np.ones(8192)  # keeps the top of the heap in use, so free() alone cannot shrink it
    del chunks
    before = _rss_bytes()
    assert release_free_memory()
    assert before - _rss_bytes() > 80 << 20  # of the ~150 MiB freed, most is no longer resident
    assert pin.sum() == 8192
