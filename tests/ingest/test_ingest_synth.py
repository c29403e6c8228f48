"""Ingest of the synthetic network's arrival stream: every injected defect is found, by reason."""

import numpy as np
import pytest

import telcoanalytics.synth.network as synth
from telcoanalytics.ingest.ingestor import Ingestor
from telcoanalytics.ingest.quarantine import Quarantine
from telcoanalytics.records import SOURCES


@pytest.fixture(scope="module")
def day():
    return synth.generate(synth.SynthConfig(n_elements=150, days=0.1, seed=11))


def test_raw_batches_quarantine_exactly_the_injected_defects(day):
    q = Quarantine()
    ing = {s: Ingestor(s, topology=day.topology, quarantine=q) for s in SOURCES}
    accepted = {s: 0 for s in SOURCES}
    for source, batch in day.raw_batches(batch_ms=60_000):
        r = ing[source].ingest(batch)
        assert r.n_accepted + r.n_quarantined == r.n_read
        np.testing.assert_array_equal(
            r.element_index, day.topology.index_of(r.accepted[{"flow": "src_element_id"}.get(source, "element_id")])
        )
        accepted[source] += r.n_accepted
    st = day.stats
    for s in SOURCES:
        expect = {k: v for k, v in st["n_corrupted"][s].items() if v}
        if st["n_duplicates"][s]:
            expect["duplicate_id"] = st["n_duplicates"][s]
        assert ing[s].by_reason == expect, s
        assert ing[s].n_read == st["n_arrived"][s]
        assert accepted[s] == st["n"][s]  # every clean row, once
    assert len(q) == sum(i.n_quarantined for i in ing.values())


def test_written_csv_and_parquet_files(day, tmp_path):
    pytest.importorskip("pyarrow")
    st = day.stats
    for fmt in ("csv", "parquet"):
        out = tmp_path / fmt
        day.write(out, fmt=fmt)
        for s in day.sources:  # the sources the day generated (complaints are optional)
            path = next(p for p in out.iterdir() if p.name.startswith(s) and p.suffix in (".csv", ".parquet"))
            ing = Ingestor(s, topology=day.topology)
            n = sum(r.n_read for r in ing.ingest_file(path, chunk_rows=5_000))
            extra = day.config.csv_unparseable if fmt == "csv" else 0
            assert n == st["n_arrived"][s] + extra
            assert ing.n_accepted == st["n"][s], (fmt, s)
            assert ing.by_reason.get("unparseable", 0) == extra
