"""The rejected rows of a structured input go to the quarantine gathered as opaque records (or, with
object fields, as they are): the kept originals equal the input rows, written out value by value."""

import numpy as np
import pytest

from telcoanalytics.ingest.ingestor import Ingestor
from telcoanalytics.records import FLOW_DTYPE, QOS_DTYPE, empty


def _text(v) -> str:
    return repr(float(v)) if isinstance(v, (float, np.floating)) else str(int(v))


@pytest.mark.parametrize("layout", ["contiguous", "strided", "object_field"])
def test_rejected_records_keep_their_input_values(layout):
    n = 40
    rng = np.random.default_rng(3)
    if layout == "object_field":
        dt = np.dtype([(f, "O" if f == "element_id" else QOS_DTYPE[f]) for f in QOS_DTYPE.names])
        a = np.zeros(n, dt)
        a["ts_ms"] = 1_700_000_000_000 + np.arange(n) * 1000
        a["element_id"] = list(range(n))
        a["latency_ms"] = rng.random(n) * 10
        a["latency_ms"][[3, 17, 31]] = [-1.0, 1e9, -2.5]
        a["mos"] = 4.0
        bad, source = [3, 17, 31], "qos"
    else:
        a = empty("flow", 2 * n if layout == "strided" else n)
        a["ts_ms"] = 1_700_000_000_000 + np.arange(len(a)) * 1000
        a["src_element_id"] = rng.integers(0, 100, len(a))
        a["dst_element_id"] = rng.integers(0, 100, len(a))
        a["bytes"] = rng.integers(0, 10**6, len(a))
        if layout == "strided":
            a = a[::2]  # a view: every other row
        a["bytes"][[0, 9, 39]] = -7
        bad, source = [0, 9, 39], "flow"
    ing = Ingestor(source, known_element_ids=np.arange(100))
    r = ing.ingest(a)
    assert r.n_quarantined == 3 and r.n_accepted == n - 3
    recs = ing.quarantine.records()
    assert [x["row"] for x in recs] == bad
    fields = (QOS_DTYPE if source == "qos" else FLOW_DTYPE).names
    assert [x["original"] for x in recs] == [{f: _text(a[f][i]) for f in fields} for i in bad]
