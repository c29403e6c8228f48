"""Adapters that plug the analysis capabilities into the pipeline for ``telcoanalytics replay``.

Each adapter implements the component protocol of :mod:`telcoanalytics.pipeline`
(``update``, ``advance``, ``report_lines``, ``to_state``, ``load_state``).
"""
from __future__ import annotations

from pathlib import Path

COMPONENTS: dict = {}
"""name -> factory(topology, day, out_dir) of the available components, in run order."""


def build_components(topology, day, out_dir: Path, enabled=None) -> dict:
    """Instantiate the enabled components (default: all) for a replay."""
    names = list(COMPONENTS) if enabled is None else list(enabled)
    unknown = [n for n in names if n not in COMPONENTS]
    if unknown:
        raise SystemExit(f"unknown components {unknown}; available: {', '.join(COMPONENTS) or 'none'}")
    return {n: COMPONENTS[n](topology, day, out_dir) for n in names}
