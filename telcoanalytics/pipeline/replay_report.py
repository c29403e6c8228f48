"""The replay's report (what was ingested, quarantined, routed and found) and its topology-change plan."""

from __future__ import annotations

import datetime as _dt
import time

import numpy as np

from telcoanalytics.records import SOURCES


def hhmm(t_ms) -> str:
    return _dt.datetime.fromtimestamp(int(t_ms) / 1000, tz=_dt.UTC).strftime("%d %H:%M UTC")


def fmt_int(n) -> str:
    return f"{int(n):,}"


def table(rows: list[list], header: list[str]) -> list[str]:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    out = []
    for k, r in enumerate(cells):
        out.append("  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if k == 0:
            out.append("  " + "  ".join("-" * w for w in widths))
    return out


def rehome_plan(day, share: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Elements to move to another site mid-replay (a re-parenting after a transmission change).

    Takes ``share`` of the elements of sites untouched by any injected scenario, each to another
    untouched site of the same region (so the scorecard's ground truth keeps its meaning).
    Returns ``(element_ids, new_site_ids)``, empty when nothing qualifies.
    """
    topo = day.topology
    eid = topo.ids[topo.element_level]
    site_of = topo.element_to("site")
    region_of_site = topo.node_to("site", "region")
    touched = np.zeros(topo.n_nodes("site"), dtype=bool)
    for lab, det in zip(day.labels, day.scenarios):
        if lab["scope_level"] == "region":  # moves stay inside a region: region scopes keep their meaning
            continue
        if lab["scope_level"] == "site":
            touched[np.searchsorted(topo.ids["site"], lab["scope_id"])] = True
        ids = np.asarray(det.get("element_ids", [lab["element_id"]]), dtype=np.int64)
        ids = ids[ids >= 0]
        if len(ids):
            touched[site_of[topo.index_of(ids)]] = True
    free = np.flatnonzero(~touched[site_of] & topo.active)
    n = int(round(share * topo.n_elements))
    if n == 0 or len(free) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(free, size=min(n, len(free)), replace=False))
    new_site = np.full(len(pick), -1, dtype=np.int64)
    for k, e in enumerate(pick):
        cand = np.flatnonzero(~touched & (region_of_site == region_of_site[site_of[e]]))
        cand = cand[cand != site_of[e]]
        if len(cand):
            new_site[k] = cand[rng.integers(len(cand))]
    ok = new_site >= 0
    return eid[pick[ok]], topo.ids["site"][new_site[ok]]


def replay_report(pipe, src, runner, say, out, t_start: float) -> int:
    """Say the replay's report; returns the exit code (0 when counts are conserved)."""
    n_in = runner.driver["n_in"]
    t_proc = runner.driver["proc_s"]
    say()
    say(
        f"== ingested {n_in:,} rows in {pipe.n_batches:,} batches in {t_proc:.1f} s "
        f"({n_in / max(t_proc, 1e-9) / 1e6:.2f} M rows/s end to end, all components included)"
    )
    rows = [
        [s, fmt_int(c["read"]), fmt_int(c["accepted"]), fmt_int(c["quarantined"])] for s, c in pipe.counts().items()
    ]
    for line in table(rows, ["source", "read", "accepted", "quarantined"]):
        say(line)
    ok = pipe.conserved()
    say(f"   conservation (read == accepted + quarantined, accepted == routed): {'ok' if ok else 'VIOLATED'}")
    say(f"   {pipe.clock.summary()}")
    prior = sum(c["read"] for c in pipe.counts().values()) - n_in
    if prior:
        say(f"   {prior:,} of the rows counted were read before the restored checkpoint (--restore)")
    say()
    say("== quarantine by reason (rows kept with their original values in quarantine.jsonl)")
    q = pipe.quarantine.counts_by_source()
    rows = [[s, r, fmt_int(n)] for s in SOURCES for r, n in q.get(s, {}).items()]
    for line in table(rows or [["-", "none", "0"]], ["source", "reason", "rows"]):
        say(line)
    say()
    say(f"== routed by {pipe.route_level} (accepted rows per source)")
    rt = pipe.region_table()
    key = pipe.route_level + "_id"
    rows = [[r[key]] + [fmt_int(r[s]) for s in SOURCES] + [fmt_int(r["total"])] for r in rt]
    for line in table(rows, [pipe.route_level] + list(SOURCES) + ["total"]):
        say(line)
    if pipe.unrouted.any():
        say(f"   rows of retired elements (kept, not routed): {fmt_int(pipe.unrouted.sum())}")
    for line in runner.driver.get("notes", []):
        say()
        say(line)
    for section in [comp.report_lines() for comp in pipe.components.values()] + [pipe.alert_report_lines()]:
        if section:
            say()
        for line in section:
            say(line)
    if src.day is not None and ("anomaly" in pipe.components or "sla" in pipe.components):
        from telcoanalytics.evaluate.scorecard import scenario_scorecard

        say()
        delays: dict = {}
        for line in scenario_scorecard(src.day, src.replay_from, pipe.components, delays=delays):
            say(line)
        if getattr(pipe.alerts, "incidents", None) is not None:
            import json

            from telcoanalytics.evaluate.scorecard import incident_scorecard

            sc = incident_scorecard(
                src.day,
                src.replay_from,
                pipe.alerts.incidents.all(),
                pipe.max_event_ms + 1,
                finding_delay_ms=delays,
                notify_lag_ms=pipe.allowed_lateness_ms,
            )
            for line in [""] + sc["lines"] + [""] + sc["appendix"]:
                say(line)
            figures = {k: v for k, v in sc.items() if k not in ("lines", "appendix")}
            (out / "scorecard.json").write_text(
                json.dumps(dict(figures, seconds_incidents=pipe.alerts.incidents.seconds))
            )
    say()
    secs = ", ".join(f"{k} {v:.1f} s" for k, v in pipe.seconds.items())
    ck = checkpoint_note(runner)
    say(f"== time: {secs}; total {time.perf_counter() - t_start:.1f} s{ck}")
    return 0 if ok else 1


def checkpoint_note(runner) -> str:
    """The time line's checkpoint part: how many, the seconds the run waited for them, and who
    wrote them (forked writers with their largest private memory, a background thread), or why a
    fork was not possible; "" without checkpoints.

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> checkpoint_note(NS(driver={"n_checkpoints": 4}, checkpoint_s=1.25, checkpoint_write_s=20.0,
    ...                    checkpoint_writer_mib=2048.4, fork_fallback=None))
    '; 4 checkpoints (1.2 s in this process, written in 20.0 s by forked writers, each up to 2,048 MiB of memory of its own)'
    >>> checkpoint_note(NS(driver={"n_checkpoints": 1}, checkpoint_s=3.0, checkpoint_write_s=0.0,
    ...                    checkpoint_writer_mib=0.0, fork_fallback="other threads run in this process (x)"))
    '; 1 checkpoints (3.0 s in this process; written in the foreground: other threads run in this process (x))'
    >>> checkpoint_note(NS(driver={"n_checkpoints": 2}, checkpoint_s=0.5, checkpoint_write_s=4.0,
    ...                    checkpoint_writer_mib=0.0, fork_fallback=None))
    '; 2 checkpoints (0.5 s in this process, written in 4.0 s by a background thread)'
    >>> checkpoint_note(NS(driver={"n_checkpoints": 0}))
    ''
    """
    n_ck = runner.driver["n_checkpoints"]
    if not n_ck:
        return ""
    ck = f"; {n_ck} checkpoints ({runner.checkpoint_s:.1f} s in this process"
    if runner.checkpoint_write_s:
        ck += f", written in {runner.checkpoint_write_s:.1f} s by "
        if runner.checkpoint_writer_mib:
            ck += f"forked writers, each up to {runner.checkpoint_writer_mib:,.0f} MiB of memory of its own"
        else:
            ck += "a background thread"
    if runner.fork_fallback:
        ck += f"; written in the foreground: {runner.fork_fallback}"
    return ck + ")"
