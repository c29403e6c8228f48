"""SLA monitor: the cost of a collection gap (issue 12), quiet-stretch path against the
minute-by-minute path in the same process; and the cost of an hour of minute ticks on data (issue
14), fused conditions (one kernel call per rule and tick) against the step-by-step path.

Run: ``.venv/bin/python -m pytest benchmarks/bench_sla.py --benchmark-only -q``
(``BENCH_SLA_N`` elements, default 300; ``BENCH_SLA_GAP_H`` gap hours, default 24).

``test_hour_fused`` / ``test_hour_step_by_step``: the monitor restored after 2 hours of a synthetic
day (default rules, arrival order), then fed the third hour batch by batch with an advance after
each (late rows included, so re-evaluation runs too); the same events either way.
``test_hour_fused_late_data_and_ticks_stepwise``: the same without the fused late-data kernels and
the one-pass lifecycle step (``fused_late = ring_step = False``).

A synthetic network (default rules, its 3 hours of arrival-order data) is fed, then one advance
crosses a gap without data. ``test_gap_quiet`` is the monitor as it runs; ``test_gap_per_minute``
the same with every minute evaluated (the path before the quiet stretches), as the peer. Both
start from the same checkpointed state and must give the same events.
"""

import os

import pytest

from telcoanalytics.sla.sla import SlaMonitor

N = int(os.environ.get("BENCH_SLA_N", 300))
GAP_H = int(os.environ.get("BENCH_SLA_GAP_H", 24))


@pytest.fixture(scope="module")
def fed_state():
    import telcoanalytics.synth.network as synth

    day = synth.generate(synth.SynthConfig(n_elements=N, days=0.125, seed=3))
    mon = SlaMonitor(day.topology)
    for src, rows, arr, _ in day.raw_batches(60_000, with_arrival=True):
        mon.update(src, rows)
        mon.advance(int(arr.max()) - 600_000)
    return mon.to_state(), (mon.last_tick + 1) * 60_000 + GAP_H * 3_600_000


def _gap(state, until_ms, per_minute):
    mon = SlaMonitor.from_state(state)
    if per_minute:
        mon._quiet_until = lambda tick, wm_tick: tick
    return [e.to_dict() for e in mon.advance(until_ms)]


def test_gap_quiet(benchmark, fed_state):
    state, until = fed_state
    got = benchmark(_gap, state, until, False)
    assert got == _gap(state, until, True)


def test_gap_per_minute(benchmark, fed_state):
    state, until = fed_state
    benchmark(_gap, state, until, True)


@pytest.fixture(scope="module")
def hour_feed():
    import telcoanalytics.synth.network as synth

    day = synth.generate(synth.SynthConfig(n_elements=N, days=0.125, seed=5))
    batches = [
        (src, rows, int(arr.max()) - 600_000) for src, rows, arr, _ in day.raw_batches(60_000, with_arrival=True)
    ]
    cut = 2 * len(batches) // 3
    mon = SlaMonitor(day.topology)
    for src, rows, wm in batches[:cut]:
        mon.update(src, rows)
        mon.advance(wm)
    return mon.to_state(), batches[cut:]


def _restored(state, fused, late_and_ring=True):
    mon = SlaMonitor.from_state(state)
    mon.fused_conditions = fused
    mon.fused_late = mon.ring_step = late_and_ring
    return mon


def _hour(mon, batches):
    out = []
    for src, rows, wm in batches:
        mon.update(src, rows)
        out += mon.advance(wm)
    return [e.to_dict() for e in out]


def _bench_hour(benchmark, hour_feed, fused, late_and_ring=True):
    state, batches = hour_feed
    # the restore is not timed: each round starts from the same state
    return benchmark.pedantic(
        _hour, setup=lambda: ((_restored(state, fused, late_and_ring), batches), {}), rounds=5, warmup_rounds=1
    )


def test_hour_fused(benchmark, hour_feed):
    got = _bench_hour(benchmark, hour_feed, True)
    state, batches = hour_feed
    assert got == _hour(_restored(state, False), batches)
    assert got == _hour(_restored(state, True, False), batches)


def test_hour_fused_late_data_and_ticks_stepwise(benchmark, hour_feed):
    """The peer of ``test_hour_fused`` before the fused late-data path (one kernel call per ratio or
    quantile threshold rule) and the one-pass lifecycle step: ``fused_late = ring_step = False``."""
    _bench_hour(benchmark, hour_feed, True, False)


def test_hour_step_by_step(benchmark, hour_feed):
    _bench_hour(benchmark, hour_feed, False)
