"""Root-cause faults of the synthetic network: the truth matches the rows changed, the option is
off by default and leaves every other source unchanged."""

import numpy as np
import pytest

from telcoanalytics.records import CAUSE_NORMAL, CAUSE_USER
from telcoanalytics.synth import generate
from telcoanalytics.synth.rootcause import cdr_attributes, inject_root_causes, matches


@pytest.fixture(scope="module")
def pair():
    kw = dict(n_elements=800, n_regions=2, days=0.5, seed=5)
    return generate(**kw), generate(**kw, n_root_cause=2)


def test_option_changes_only_the_faulted_calls(pair):
    plain, faulty = pair
    assert plain.root_causes == [] and "root_causes" not in plain.labels_document()
    assert "n_root_cause" not in plain.labels_document()["config"]
    for s in ("equip", "flow", "qos"):
        assert plain[s].tobytes() == faulty[s].tobytes()  # bytes: QoS mos holds NaN
    changed = plain.cdr != faulty.cdr
    attrs = cdr_attributes(plain.cdr, plain.topology_table)
    inside = np.zeros(len(plain.cdr), bool)
    for fa in faulty.root_causes:
        inside |= (
            matches(attrs, fa.items)
            & (attrs["region"] == fa.region_id)
            & (plain.cdr["start_ms"] >= fa.start_ms)
            & (plain.cdr["start_ms"] < fa.end_ms)
        )
    assert changed.any() and not (changed & ~inside).any()
    assert sum(fa.n_dropped for fa in faulty.root_causes) == changed.sum()
    assert np.isin(plain.cdr["cause"][changed], CAUSE_NORMAL + CAUSE_USER).all()
    assert not np.isin(faulty.cdr["cause"][changed], CAUSE_NORMAL + CAUSE_USER).any()
    doc = faulty.labels_document()
    assert len(doc["root_causes"]) == 2 and doc["config"]["n_root_cause"] == 2


def test_fault_roughly_multiplies_the_region_drop_rate(pair):
    plain, faulty = pair
    for fa in faulty.root_causes:
        a = cdr_attributes(plain.cdr, plain.topology_table)
        sc = (
            (a["region"] == fa.region_id) & (plain.cdr["start_ms"] >= fa.start_ms) & (plain.cdr["start_ms"] < fa.end_ms)
        )
        ok = sc & (plain.cdr["answer_ms"] >= 0)
        before = int((ok & ~np.isin(plain.cdr["cause"], CAUSE_NORMAL + CAUSE_USER)).sum())
        after = int((ok & ~np.isin(faulty.cdr["cause"], CAUSE_NORMAL + CAUSE_USER)).sum())
        ratio = after / before
        assert 1.2 < ratio < 4.0, ratio


def test_too_small_a_span_or_network_raises():
    day = generate(n_elements=300, n_regions=1, days=0.25, seed=1)
    with pytest.raises(ValueError, match="hours"):
        inject_root_causes(
            day.cdr, day.topology_table, (day.start_ms, day.start_ms + 3_600_000), 1, np.random.default_rng(0)
        )
    with pytest.raises(ValueError, match="no combination"):
        inject_root_causes(
            day.cdr, day.topology_table, (day.start_ms, day.end_ms), 1, np.random.default_rng(0), share=(0.99, 1.0)
        )
