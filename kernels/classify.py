"""Topology classification of a batch's episode rows in one compiled pass (crowd / surge by shared
deviation along topology levels, parent inhibition, the class an episode opened with).

Class codes are indices into ``telcoanalytics.anomaly.config.CLASSIFICATIONS`` (fault 0, crowd 2,
surge 3, change 5, inhibited 6); the module keeps its own copies so that it imports nothing from
``telcoanalytics``.
"""

import numpy as np

from kernels._numba import kernel

FAULT = 0
CHANGE = 5
INHIBITED = 6
FLAG_WARM = 4  # kernels.detect.FLAG_WARM: the event's slot was warm when it was scored


@kernel
def classify_episodes(
    slot, direction, is_ep, closing, nm, open_dir, nobs, batch_slot, flags, z, shared_z,
    level_node, level_members, level_starts, level_n_nodes, level_min, level_frac, level_code,
    parent, silent_since, slot_class, out_code, out_level, out_node,
):  # fmt: skip
    """Classify episode rows and record the class of each slot's open episode.

    Parameters
    ----------
    slot, direction : int64 / int8 arrays (n_rows,)
        Each row's slot (``element * nm + metric``) and direction (+1 / -1).
    is_ep, closing : bool arrays (n_rows,)
        The row is an episode (not a change), and it closes one (``end_ms >= 0``).
    nm : int
        Metrics per element.
    open_dir : int8 (n_slots,)
        Direction of each slot's open episode (0: none); ``nobs``: int32 observations per slot
        (a slot with any counts as reporting its metric).
    batch_slot, flags, z : arrays (n_events,)
        The batch's events: slot, detector flags and z-score. A warm event at least ``shared_z``
        sigmas off makes its slot deviate in the z's direction when no episode is open there
        (the last such event of a slot wins).
    level_node : int64 (n_levels, n_elements)
        Dense node of each element at each grouping level, in order of precedence (a later level
        that matches wins).
    level_members, level_starts : int64 (n_levels, n_elements) / (n_levels, max nodes + 1)
        The elements of node ``k`` of level ``lv`` are
        ``level_members[lv, level_starts[lv, k]:level_starts[lv, k + 1]]``.
    level_n_nodes : int64 (n_levels,); level_min, level_frac : float64 (n_levels,)
        Nodes per level; a row of direction d is shared at a level when at least ``level_min``
        elements of its node deviate in direction d on its metric, and at least ``level_frac`` of
        the node's elements reporting the metric.
    level_code : int8 (n_levels,)
        The class a shared row gets at each level.
    parent : int64 (n_elements,)
        Parent element (-1 none); a fault whose parent has an open fault on any metric or is
        silent (``silent_since >= 0``) is inhibited.
    slot_class : int8 (n_slots,)
        Class of each slot's open episode (-1 none), read for closing rows (they keep the class
        they opened with) and updated: opening rows set it, closing rows clear it (after all
        openings of the batch).
    out_code, out_level, out_node : int8 / int8 / int64 arrays (n_rows,)
        Written: class code of each row; level index of its scope (-1: the element) and dense
        node at that level.

    Notes
    -----
    Only the (node, metric) pairs of the rows are counted, each once per call: the cost follows
    the rows and the size of their nodes, not the network.
    """
    n_rows = slot.shape[0]
    n_levels = level_node.shape[0]
    # deviating now: an open episode, else a warm point of this batch beyond shared_z sigmas
    near = np.zeros(open_dir.shape[0], dtype=np.int8)
    for i in range(batch_slot.shape[0]):
        zi = z[i]
        if (flags[i] & FLAG_WARM) != 0 and not np.isnan(zi) and abs(zi) >= shared_z:
            near[batch_slot[i]] = 1 if zi > 0 else -1
    for j in range(n_rows):
        out_code[j] = FAULT if is_ep[j] else CHANGE
        out_level[j] = -1
        out_node[j] = -1
    for lv in range(n_levels):
        node = level_node[lv]
        members = level_members[lv]
        starts = level_starts[lv]
        k = level_n_nodes[lv] * nm
        done = np.zeros(k, dtype=np.bool_)
        tot = np.empty(k)
        pos = np.empty(k)
        neg = np.empty(k)
        for j in range(n_rows):
            d = direction[j]
            if not is_ep[j] or d == 0:
                continue
            m = slot[j] % nm
            nd = node[slot[j] // nm]
            g = nd * nm + m
            if not done[g]:
                t = 0.0
                up = 0.0
                down = 0.0
                for q in range(starts[nd], starts[nd + 1]):
                    s = members[q] * nm + m
                    if nobs[s] > 0:
                        t += 1.0
                    dv = open_dir[s] if open_dir[s] != 0 else near[s]
                    if dv > 0:
                        up += 1.0
                    elif dv < 0:
                        down += 1.0
                tot[g] = t
                pos[g] = up
                neg[g] = down
                done[g] = True
            c = pos[g] if d > 0 else neg[g]
            if c >= level_min[lv] and c / max(tot[g], 1.0) >= level_frac[lv]:
                out_code[j] = level_code[lv]
                out_level[j] = lv
                out_node[j] = nd
    # a parent's failure (open fault or silence) inhibits its children; closing rows keep the
    # class their episode opened with (read before this batch's updates)
    for j in range(n_rows):
        if not is_ep[j]:
            continue
        p = parent[slot[j] // nm]
        if p >= 0 and out_code[j] == FAULT:
            down_ = silent_since[p] >= 0
            for m in range(nm):
                if slot_class[p * nm + m] == FAULT:
                    down_ = True
            if down_:
                out_code[j] = INHIBITED
        if closing[j] and slot_class[slot[j]] >= 0:
            out_code[j] = slot_class[slot[j]]
    for j in range(n_rows):
        if is_ep[j] and not closing[j]:
            slot_class[slot[j]] = out_code[j]
    for j in range(n_rows):
        if is_ep[j] and closing[j]:
            slot_class[slot[j]] = -1
