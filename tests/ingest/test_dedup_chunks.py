"""Batches longer than the ring kernel's hash chunk (``kernels.dedup_batch.CHUNK`` rows): the keys
are hashed and probed chunk by chunk, and a bucket that fills in a later chunk resumes there. The
decisions are those of the separate steps (``fused_dedup = False``) and of a plain Python set."""

import numpy as np
import pytest

import telcoanalytics.ingest.ingestor as ingestor_mod
from kernels.dedup_batch import CHUNK
from telcoanalytics.ingest.dedup import TimeBucketKeySet
from telcoanalytics.ingest.ingestor import Ingestor
from telcoanalytics.records import NATURAL_KEY
from telcoanalytics.topology.model import Topology
from tests.ingest.test_dedup_sources import T0, rows

N_EL = 500
IDS = 1000 + np.arange(N_EL, dtype=np.int64) * 3
BAD = {"equip": ("value", np.nan), "flow": ("bytes", -1), "qos": ("latency_ms", np.inf)}


def _topology() -> Topology:
    return Topology.from_columns(IDS, {"region": np.arange(N_EL) // 100, "site": np.arange(N_EL) // 4})


def _batch(source: str, n: int, t: np.ndarray, rng) -> np.ndarray:
    a = rows(source, n)
    a["ts_ms"] = t
    el = IDS[rng.integers(0, N_EL, n)]
    if source == "flow":
        a["src_element_id"] = el
        a["dst_element_id"] = IDS[rng.integers(0, N_EL, n)]
    else:
        a["element_id"] = el
    if source == "equip":
        a["metric_id"] = rng.integers(0, 3, n)
    return a


def _python_set_decisions(source: str, a: np.ndarray, valid: np.ndarray, seen: set) -> np.ndarray:
    """Valid rows whose natural key was seen before (earlier batches or earlier in this one)."""
    dup = np.zeros(len(a), bool)
    cols = [a[f].tolist() for f in NATURAL_KEY[source]]
    for i in np.flatnonzero(valid):
        k = tuple(c[i] for c in cols)
        if k in seen:
            dup[i] = True
        else:
            seen.add(k)
    return dup


def _check(source: str, a: np.ndarray, fused: Ingestor, steps: Ingestor, seen: set) -> dict:
    field = BAD[source][0]
    valid = a[field] >= 0 if source == "flow" else np.isfinite(a[field])
    dup = _python_set_decisions(source, a, valid, seen)
    r1, r2 = fused.ingest(a), steps.ingest(a.copy())
    assert r1.by_reason == r2.by_reason
    assert r1.by_reason.get("duplicate_id", 0) == int(dup.sum())
    keep = valid & ~dup
    assert r1.accepted.tobytes() == r2.accepted.tobytes() == a[keep].tobytes()
    assert np.array_equal(r1.element_index, r2.element_index)
    assert np.array_equal(
        r1.element_index, np.searchsorted(IDS, a[keep]["src_element_id" if source == "flow" else "element_id"])
    )
    return r1.by_reason


@pytest.mark.parametrize("source", ["equip", "flow", "qos"])
def test_a_batch_of_several_chunks_decides_as_the_steps_and_a_python_set(source, rng):
    topo = _topology()
    fused, steps = Ingestor(source, topology=topo), Ingestor(source, topology=topo)
    steps.fused_dedup = False
    seen: set = set()
    n = 2 * CHUNK + 777
    t = T0 + np.sort(rng.integers(0, 90 * 60_000, n)) // 1000 * 1000  # 90 min: all within the horizon
    a = _batch(source, n, t, rng)
    # copies of rows of the first chunk in the later ones (duplicates across chunk boundaries), some
    # rows corrupt (the first copy of a few of the copied rows among them: the copy is then kept)
    src = rng.integers(0, CHUNK, 400)
    dst = np.sort(rng.choice(np.arange(CHUNK + 10, n), 400, replace=False))
    a[dst] = a[src]
    field, value = BAD[source]
    a[field][rng.integers(0, n, n // 1000)] = value
    a[field][src[:20]] = value
    by = _check(source, a, fused, steps, seen)
    assert by["duplicate_id"] > 300
    again = a[CHUNK - 500 : CHUNK + 500].copy()  # across the first boundary, delivered again
    assert _check(source, again, fused, steps, seen)["duplicate_id"] > 900


def test_a_bucket_filling_in_a_later_chunk_resumes_there(rng, monkeypatch):
    """Without the large call's sizing the tables start small and grow in the kernel; the densest
    bucket comes in the third chunk, so the kernel stops and resumes past the first chunk."""
    starts = []
    kernel = ingestor_mod.ring_dedup_compact

    def spy(rows, start, *args):
        starts.append(int(start))
        return kernel(rows, start, *args)

    monkeypatch.setattr(ingestor_mod, "ring_dedup_compact", spy)
    monkeypatch.setattr(TimeBucketKeySet, "_prepare_large", lambda self, rows, clock, out_code: None)
    topo = _topology()
    fused, steps = Ingestor("equip", topology=topo), Ingestor("equip", topology=topo)
    steps.fused_dedup = False
    seen: set = set()
    warm = _batch("equip", 100, np.full(100, T0), rng)  # the robust clock is set from here on
    _check("equip", warm, fused, steps, seen)
    n_spread = 2 * CHUNK
    n_dense = CHUNK // 2
    t = np.r_[
        T0 + np.sort(rng.integers(0, 30 * 60_000, n_spread)),  # six 5-min buckets
        T0 + 30 * 60_000 + np.sort(rng.integers(0, 300_000, n_dense)),  # one bucket of CHUNK / 2 rows
    ]
    a = _batch("equip", len(t), t, rng)
    a[len(t) - 300 :] = a[len(t) - 600 : len(t) - 300]  # duplicates in the dense bucket
    a["value"][rng.integers(0, len(t), 60)] = np.nan
    by = _check("equip", a, fused, steps, seen)
    assert by["duplicate_id"] >= 290
    assert max(starts) > 2 * CHUNK  # the dense bucket filled in the third chunk
    assert fused.dedup.tables.shape[1] >= 2 * n_dense  # (load <= 0.35 of the grown table)
