"""Duplicates by natural key in every source (``records.NATURAL_KEY``), with a bounded horizon."""

import numpy as np
import pytest

from telcoanalytics.ingest.ingestor import DEDUP_HORIZON_MS, Ingestor
from telcoanalytics.records import NATURAL_KEY, SOURCES, empty

T0 = 1_700_000_000_000


def rows(source: str, n: int, t0: int = T0) -> np.ndarray:
    a = empty(source, n)
    t = t0 + (np.arange(n) // 10) * 60_000
    el = 1000 + np.arange(n) % 10
    if source == "cdr":
        a["record_id"] = np.arange(n) + t0
        a["start_ms"], a["end_ms"], a["element_id"], a["cause"] = t, t + 1000, el, 16
    elif source == "equip":
        a["ts_ms"], a["element_id"], a["metric_id"], a["value"] = t, el, 0, 50.0
    elif source == "flow":
        a["ts_ms"], a["src_element_id"], a["dst_element_id"], a["bytes"] = t, el, el + 1, 10
    elif source == "qos":
        a["ts_ms"], a["element_id"], a["latency_ms"], a["jitter_ms"], a["loss_pct"] = t, el, 10.0, 1.0, 0.1
    else:  # complaint: a ticket id, a cell, no location
        a["complaint_id"], a["ts_ms"], a["element_id"], a["lat"], a["lon"] = np.arange(n) + t0, t, el, np.nan, np.nan
    return a


@pytest.mark.parametrize("source", SOURCES)
def test_a_batch_delivered_twice_is_quarantined_once(source):
    ing = Ingestor(source)
    a = rows(source, 500)
    assert ing.ingest(a).n_accepted == 500
    r = ing.ingest(a)
    assert r.n_accepted == 0 and r.by_reason == {"duplicate_id": 500}
    rec = ing.quarantine.records(reason="duplicate_id")[0]
    assert rec["field"] == "+".join(NATURAL_KEY[source])
    # rows that differ in any one field of the key are not duplicates
    for f in NATURAL_KEY[source]:
        b = a.copy()
        b[f] += {"ts_ms": 7, "metric_id": 1, "record_id": 10**6, "complaint_id": 10**6}.get(f, 100)
        assert ing.ingest(b).n_accepted == 500, f
    # a field outside the key does not make a row new
    if source != "cdr":
        c = a.copy()
        val = {"equip": "value", "flow": "bytes", "qos": "latency_ms", "complaint": "category"}[source]
        c[val] = c[val] + 1
        assert ing.ingest(c).by_reason == {"duplicate_id": 500}


def test_duplicates_inside_one_batch_and_corrupt_first_copies():
    ing = Ingestor("equip")
    a = rows("equip", 20)
    b = np.concatenate([a, a[:5]])
    b["value"][0] = np.nan  # a corrupt first copy does not hide the valid second one
    r = ing.ingest(b)
    assert r.by_reason == {"non_finite": 1, "duplicate_id": 4} and r.n_accepted == 20


def test_keys_are_forgotten_after_the_horizon_and_memory_stays_bounded():
    h = DEDUP_HORIZON_MS["qos"]
    ing = Ingestor("qos")
    first = rows("qos", 100)
    ing.ingest(first)
    sizes = []
    for k in range(1, 40):  # ten hours of probes, one batch per quarter hour
        ing.ingest(rows("qos", 100, T0 + k * 900_000 + 1))
        sizes.append(len(ing.dedup))
    assert max(sizes) <= 100 * (2 * h // 900_000 + 2)  # at most two horizons of keys are kept
    assert ing.ingest(first).n_accepted == 100  # long forgotten: not a duplicate any more
    with pytest.raises(ValueError, match="dedup_horizon_ms"):
        Ingestor("equip", dedup_horizon_ms=0)


def test_a_row_far_ahead_does_not_flush_the_key_set():
    ing = Ingestor("equip")
    a = rows("equip", 200)
    ing.ingest(a)
    b = rows("equip", 1, T0 + 90 * 86_400_000)  # one row three months ahead, alone in its batch
    b["element_id"] = 5
    ing.ingest(b)
    c = rows("equip", 50, T0)
    c["element_id"] = 7  # something new, with five rows a day ahead in the same batch
    c["ts_ms"][:5] += 86_400_000
    ing.ingest(c)
    assert ing.ingest(a).by_reason == {"duplicate_id": 200}  # still remembered


def test_dedup_can_be_switched_off_and_survives_a_checkpoint():
    off = Ingestor("flow", dedup=False)
    a = rows("flow", 50)
    off.ingest(a)
    assert off.ingest(a).n_accepted == 50
    on = Ingestor("flow")
    on.ingest(a)
    back = Ingestor.from_state(on.to_state())
    assert back.ingest(a).by_reason == {"duplicate_id": 50}


# ---- a day with every batch delivered twice gives the day's findings -----------------------------------
@pytest.mark.slow
def test_every_batch_delivered_twice_gives_the_same_findings(tmp_path):
    from telcoanalytics.synth.network import SynthConfig, generate
    from tests.ingest.test_clock import _findings, _run

    day = generate(SynthConfig(n_elements=1500, days=0.2, seed=3))

    def twice():
        for source, b in day.raw_batches():
            yield source, b
            yield source, b.copy()

    once, _ = _run(day, day.raw_batches(), tmp_path / "once")
    both, _ = _run(day, twice(), tmp_path / "twice")
    for s in day.sources:
        c1, c2 = once.counts()[s], both.counts()[s]
        assert c2["read"] == 2 * c1["read"] and c2["accepted"] == c1["accepted"]
        q1, q2 = once.quarantine.counts(s), both.quarantine.counts(s)
        # the second copy of an accepted row is a duplicate; a rejected row is rejected again
        assert q2.pop("duplicate_id") == 2 * q1.pop("duplicate_id", 0) + c1["accepted"]
        assert q2 == {k: 2 * v for k, v in q1.items()}
    assert _findings(both) == _findings(once)
