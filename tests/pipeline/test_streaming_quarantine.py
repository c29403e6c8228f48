"""The replay's streaming quarantine against the in-memory store: the same lines as a plain
``Quarantine.write_jsonl`` of the same rows, the counts of a store that keeps nothing."""

import json

import numpy as np
import pytest

from telcoanalytics.ingest import Ingestor
from telcoanalytics.ingest.quarantine import Quarantine
from telcoanalytics.pipeline.run import OutputLog, streaming_quarantine
from telcoanalytics.synth.network import generate


def _feed(q, day):
    ings = {}
    for source, rows in day.raw_batches():
        ing = ings.setdefault(source, Ingestor(source, topology=day.topology, quarantine=q))
        ing.ingest(rows)


def test_streamed_lines_and_counts_equal_the_in_memory_store(tmp_path):
    day = generate(n_elements=80, days=0.1, seed=5)
    restored = Quarantine()  # a restored store holding a row (its details are not written again)
    restored.add("qos", np.array([7]), np.array([1], np.int8), np.array(["ts_ms"]), {"ts_ms": np.array(["x"])})
    log = OutputLog(tmp_path / "q.jsonl")
    q = streaming_quarantine(log, restored=restored)
    _feed(q, day)
    log.sync()
    full, counts_only = Quarantine(), Quarantine(max_kept=0)
    _feed(full, day)
    _feed(counts_only, day)
    ref = tmp_path / "ref.jsonl"
    n = full.write_jsonl(ref)
    assert n > 10  # the synthetic day has corrupted rows
    got = (tmp_path / "q.jsonl").read_text().splitlines()
    assert got == ref.read_text().splitlines()  # the restored block is not written again
    assert [json.loads(x) for x in got] == full.records()
    counts_only.merge(restored)
    assert q.counts_by_source() == counts_only.counts_by_source()
    assert len(q) == len(counts_only)
    assert q.n_not_kept == counts_only.n_not_kept == n + 1  # the restored row is counted, not kept
    assert q.n_kept == 0


def test_a_rejected_add_leaves_the_store_as_it_was(tmp_path):
    log = OutputLog(tmp_path / "q.jsonl")
    q = streaming_quarantine(log)
    with pytest.raises(ValueError, match="reason codes"):
        q.add("qos", np.array([1]), np.array([99], np.int8), np.array(["f"]), {})
    assert len(q) == 0 and q.n_not_kept == 0 and q.n_kept == 0 and q.max_kept == 0
    q.add("qos", np.array([1]), np.array([1], np.int8), np.array(["f"]), {})
    log.sync()
    assert len((tmp_path / "q.jsonl").read_text().splitlines()) == 1
