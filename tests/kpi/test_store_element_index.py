"""Element ids resolved once: a batch added with the ingest's element indices gives the counters
that a lookup of its ids gives."""

import numpy as np
import pytest

from telcoanalytics.kpi import CounterStore
from tests.kpi.test_kpi import random_cdr, topo6


def test_add_with_resolved_indices_equals_lookup(rng):
    topo = topo6()
    cdr = random_cdr(rng, 2000, np.array([10, 11, 12, 13, 14, 15]), 30)
    a, b = CounterStore(topo), CounterStore(topo)
    ra = a.add("cdr", cdr)
    rb = b.add("cdr", cdr, topo.index_of(cdr["element_id"]))
    assert ra.accepted == rb.accepted == len(cdr) and ra.rejected == rb.rejected
    np.testing.assert_array_equal(ra.elem, rb.elem)
    st_a, st_b = a.to_state(), b.to_state()
    for k in st_a:
        if isinstance(st_a[k], np.ndarray):
            np.testing.assert_array_equal(st_a[k], st_b[k], err_msg=k)


def test_add_rejects_indices_of_another_length(rng):
    topo = topo6()
    cdr = random_cdr(rng, 10, np.array([10, 11]), 2)
    with pytest.raises(ValueError, match="element_index has shape"):
        CounterStore(topo).add("cdr", cdr, np.zeros(3, np.int64))
