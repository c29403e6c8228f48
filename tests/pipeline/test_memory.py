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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_untouched_zero_pages_become_resident_and_values_stay():
    h = _Holder(16_384)  # 128 MiB of lazily mapped zeros
    h.state.profile[5, 7] = 3.0
    before = _rss_bytes()
    n = commit_pages(h)
    grown = _rss_bytes() - before
    assert n == h.state.profile.nbytes + h.tables["a"][0].nbytes  # the 80-byte array is below min_bytes
    assert grown > 0.9 * h.state.profile.nbytes
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


def test_fixed_size_entries_are_stored_as_they_are():
    a = np.zeros((168, 1000, 2))
    a[3, 5, 0] = 1.5
    flat = {"comp.anomaly::net::detector::seas_w": a, "comp.x::other": a}
    enc, how = ck.encode_entries(flat)
    assert enc["comp.anomaly::net::detector::seas_w"] is a  # dense, float64: the size does not depend on fill
    assert "comp.x::other" in how and how["comp.x::other"]["sparse"]  # other entries are compacted
    back = ck.decode_entries(enc, how)
    np.testing.assert_array_equal(back["comp.x::other"], a)


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
