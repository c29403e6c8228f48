"""The compiled classification of episode rows (``kernels.classify``) against a plain Python
reference written from ``ClassifyConfig``'s rules, and the network detector paths around it."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from kernels.classify import classify_episodes
from telcoanalytics.anomaly.config import CLASSIFICATIONS
from telcoanalytics.anomaly.detector import ClassifyConfig, DetectorConfig, NetworkAnomalyDetector
from telcoanalytics.topology.model import Topology

FAULT, INHIBITED, CHANGE = (CLASSIFICATIONS.index(c) for c in ("fault", "inhibited", "change"))


def reference_classify(rows, nm, open_dir, nobs, events, shared_z, levels, parent, silent_since, slot_class):
    """One row at a time, one element at a time, lists and dicts only.

    rows: (slot, direction (+1 / -1; 0 is never shared), is_episode, closing); events: (slot, warm, z); levels: (node of each
    element, min elements, min share, class code). Returns ([(code, level, node)], new slot_class).
    """
    n_el = len(parent)
    dev = {s: int(open_dir[s]) for s in range(len(open_dir))}
    for s, warm, z in events:  # a warm point far enough off, where no episode is open
        if warm and not np.isnan(z) and abs(z) >= shared_z and open_dir[s] == 0:
            dev[s] = 1 if z > 0 else -1
    before = [int(c) for c in slot_class]
    out = []
    for slot, d, is_ep, closing in rows:
        e, m = divmod(slot, nm)
        code, lvl, node = (FAULT if is_ep else CHANGE), -1, -1
        if is_ep:
            for li, (node_of, min_n, frac, lcode) in enumerate(levels):
                members = [x for x in range(n_el) if node_of[x] == node_of[e]]
                same = sum(1 for x in members if dev[x * nm + m] == d)
                reporting = sum(1 for x in members if nobs[x * nm + m] > 0)
                if d != 0 and same >= min_n and same / max(reporting, 1) >= frac:
                    code, lvl, node = lcode, li, node_of[e]
            p = parent[e]
            if code == FAULT and p >= 0:
                if silent_since[p] >= 0 or any(before[p * nm + k] == FAULT for k in range(nm)):
                    code = INHIBITED
            if closing and before[slot] >= 0:
                code = before[slot]
        out.append((code, lvl, node))
    after = list(before)
    for (slot, _, is_ep, closing), (code, _, _) in zip(rows, out):
        if is_ep and not closing:
            after[slot] = code
    for slot, _, is_ep, closing in rows:
        if is_ep and closing:
            after[slot] = -1
    return out, after


def _groups(node, n_nodes):
    """The elements of each node listed together (any order within a node), and where each starts."""
    n_levels, n_el = node.shape
    members = np.zeros((n_levels, n_el), np.int64)
    starts = np.zeros((n_levels, int(max(n_nodes, default=0)) + 1), np.int64)
    for lv in range(n_levels):
        lists = [[x for x in range(n_el) if node[lv, x] == k][::-1] for k in range(n_nodes[lv])]
        members[lv] = [x for group in lists for x in group]
        starts[lv, 1 : n_nodes[lv] + 1] = np.cumsum([len(g) for g in lists])
    return members, starts


@given(
    seed=st.integers(0, 2**32 - 1),
    n_el=st.integers(1, 12),
    nm=st.integers(1, 3),
    n_levels=st.integers(0, 2),
    n_rows=st.integers(1, 25),
    n_events=st.integers(0, 40),
)
def test_kernel_matches_reference(seed, n_el, nm, n_levels, n_rows, n_events):
    rng = np.random.default_rng(seed)
    n_slots = n_el * nm
    open_dir = rng.choice(np.array([-1, 0, 0, 1], dtype=np.int8), n_slots)
    nobs = rng.choice(np.array([0, 3], dtype=np.int32), n_slots)
    ev_slot = rng.integers(0, n_slots, n_events)
    flags = rng.choice(np.array([0, 4, 4 | 1, 8], dtype=np.int8), n_events)
    z = rng.choice(np.array([-3.0, -2.0, -1.0, 0.5, 2.0, 2.5, np.nan, np.inf, -np.inf]), n_events)
    shared_z = 2.0
    n_nodes = rng.integers(1, 4, n_levels)
    node = np.array([rng.integers(0, k, n_el) for k in n_nodes], dtype=np.int64).reshape(n_levels, n_el)
    lmin = rng.integers(1, 4, n_levels).astype(np.float64)
    lfrac = rng.choice([0.2, 0.5, 1.0], n_levels)
    lcode = np.array([CLASSIFICATIONS.index(c) for c in ("crowd", "surge")[:n_levels]], dtype=np.int8)
    parent = np.where(rng.random(n_el) < 0.5, rng.integers(0, n_el, n_el), -1).astype(np.int64)
    silent_since = np.where(rng.random(n_el) < 0.2, 1000, -1).astype(np.int64)
    slot_class = rng.choice(np.array([-1, -1, FAULT, 2, 3, INHIBITED], dtype=np.int8), n_slots)
    slot = rng.integers(0, n_slots, n_rows)
    direction = rng.choice(np.array([-1, 1, 1, -1, 0], dtype=np.int8), n_rows)  # 0: no direction
    is_ep = rng.random(n_rows) < 0.8
    closing = rng.random(n_rows) < 0.4
    levels = [(node[i].tolist(), lmin[i], lfrac[i], int(lcode[i])) for i in range(n_levels)]
    rows = list(zip(slot.tolist(), direction.tolist(), is_ep.tolist(), closing.tolist()))
    events = [(int(s), bool(f & 4), float(v)) for s, f, v in zip(ev_slot, flags, z)]
    want, want_class = reference_classify(
        rows, nm, open_dir, nobs, events, shared_z, levels, parent, silent_since, slot_class
    )
    code = np.empty(n_rows, np.int8)
    lvl = np.empty(n_rows, np.int8)
    nd = np.empty(n_rows, np.int64)
    members, starts = _groups(node, n_nodes)
    classify_episodes(
        slot, direction, is_ep, closing, nm, open_dir, nobs, ev_slot, flags, z, shared_z, node, members, starts,
        n_nodes.astype(np.int64), lmin, lfrac, lcode, parent, silent_since, slot_class, code, lvl, nd,
    )  # fmt: skip
    assert list(zip(code.tolist(), lvl.tolist(), nd.tolist())) == want
    assert slot_class.tolist() == want_class


def _crowd_topology(level_names=("region", "site")):
    """Two sites of three elements each, in one region."""
    ids = np.arange(6) + 100
    return Topology.from_columns(ids, {level_names[0]: np.ones(6, int), level_names[1]: np.repeat([10, 11], 3)})


def _steps(net, n_el, n_steps, rng, bump=None, t0=0):
    out = []
    for k in range(n_steps):
        t = np.full(n_el, t0 + k * 300_000, dtype=np.int64)
        x = 50.0 + rng.normal(0, 1.0, n_el)
        if bump is not None and k == n_steps - 1:
            x[bump] += 40.0
        out.append(net.update(t, np.arange(n_el), np.zeros(n_el, dtype=np.int64), x))
    return np.concatenate(out)


def test_long_level_names_are_kept_whole(rng):
    """A crowd's scope level is the level's full name (up to the record's 16 characters)."""
    topo = _crowd_topology(("metro_area", "cell_site_group"))
    cc = ClassifyConfig(crowd_level="cell_site_group", surge_level=None)
    net = NetworkAnomalyDetector(topo, ("cpu_util_pct",), DetectorConfig(season="none", warmup=5), cc)
    _steps(net, 6, 30, rng)
    rows = _steps(net, 6, 1, rng, bump=[0, 1, 2], t0=30 * 300_000)
    opened = rows[rows["end_ms"] < 0]
    assert set(opened["classification"]) == {"crowd"} and len(opened) == 3
    assert set(opened["scope_level"]) == {"cell_site_group"} and set(opened["scope_id"]) == {10}


def test_classification_follows_a_rehomed_element(rng):
    """After set_topology the crowd counts group elements by their new site."""
    topo = _crowd_topology()
    cc = ClassifyConfig(crowd_min_elements=3, crowd_fraction=0.5, surge_level=None)
    net = NetworkAnomalyDetector(topo, ("cpu_util_pct",), DetectorConfig(season="none", warmup=5), cc)
    _steps(net, 6, 30, rng)
    moved, _ = topo.rehome_elements([103], [10])  # site 10 now has four elements
    net.set_topology(moved)
    rows = _steps(net, 6, 1, rng, bump=[0, 1, 3], t0=30 * 300_000)
    opened = rows[rows["end_ms"] < 0]
    assert sorted(opened["element_id"].tolist()) == [100, 101, 103]
    assert set(opened["classification"]) == {"crowd"} and set(opened["scope_id"]) == {10}
    net2 = NetworkAnomalyDetector(topo, ("cpu_util_pct",), DetectorConfig(season="none", warmup=5), cc)
    _steps(net2, 6, 30, np.random.default_rng(42))
    rows2 = _steps(net2, 6, 1, np.random.default_rng(7), bump=[0, 1, 3], t0=30 * 300_000)
    assert set(rows2[rows2["end_ms"] < 0]["classification"]) == {"fault"}  # two of three per site


def test_shared_z_is_inclusive_and_needs_a_warm_point():
    """Element 1's point exactly ``shared_z`` sigmas off joins element 0's episode in a crowd; a
    point just inside, or one scored before its slot was warm, does not."""

    def classify(z, flag):
        code, lvl, nd = np.empty(1, np.int8), np.empty(1, np.int8), np.empty(1, np.int64)
        classify_episodes(
            np.array([0]), np.array([1], np.int8), np.array([True]), np.array([False]), 1,
            np.array([1, 0], np.int8), np.array([5, 5], np.int32), np.array([0, 1]), np.array([4, flag], np.int8),
            np.array([3.0, z]), 2.0, np.zeros((1, 2), np.int64), np.array([[0, 1]]), np.array([[0, 2]]),
            np.array([1]), np.array([2.0]), np.array([1.0]),
            np.array([2], np.int8), np.array([-1, -1]), np.array([-1, -1]), np.array([-1, -1], np.int8), code, lvl, nd,
        )  # fmt: skip
        return int(code[0]), int(lvl[0]), int(nd[0])

    assert classify(2.0, 4) == (CLASSIFICATIONS.index("crowd"), 0, 0)
    assert classify(1.999, 4) == (FAULT, -1, -1)
    assert classify(2.0, 0) == (FAULT, -1, -1)


def test_without_a_gap_level_silent_elements_are_single_silences(rng):
    """No gap level: six elements silent together are six silences, never a collection gap; the
    open episode's direction is visible per slot."""
    topo = _crowd_topology()
    cc = ClassifyConfig(gap_level=None, gap_min_elements=2)
    net = NetworkAnomalyDetector(topo, ("cpu_util_pct",), DetectorConfig(season="none", warmup=5), cc)
    _steps(net, 6, 30, rng)
    rows = _steps(net, 6, 1, rng, bump=[4], t0=30 * 300_000)
    assert net.detector.open_direction.tolist() == [0, 0, 0, 0, 1, 0] and len(rows) == 1
    silent = net.check_silence(31 * 300_000 + 120_000)
    assert len(silent) == 6 and set(silent["classification"]) == {"silence"}
    assert set(silent["scope_level"]) == {"element"}
