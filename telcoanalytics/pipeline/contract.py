"""The component contract: what every analysis component of a :class:`~telcoanalytics.pipeline.Pipeline` does.

A component owns the state of one capability (windows, SLA monitoring, anomaly detection, cubes,
...) and is driven by the pipeline, never by another component:

* ``update(batch)`` takes one :class:`RoutedBatch`: accepted canonical rows of one source, their
  dense element indices (resolved once, at ingest, by the topology's one lookup) and their
  partition. Values were validated at ingest and are trusted here.
* ``advance(watermark_ms)``: event time has reached ``watermark_ms`` (the pipeline already
  subtracted the allowed lateness); settle what is final.
* ``topology_changed(topology, changes)``: follow a topology change while data flows.
* ``finish(watermark_ms)``: the input is over.

Each of these four returns the component's **findings** in one shape: a list of
:class:`~telcoanalytics.alerts.Alert` (labels, annotations, start, end, state). The pipeline hands
them to its alert manager (deduplication, grouping, inhibition, sinks) and returns them from
:meth:`Pipeline.advance`; components never push findings sideways into each other.

State: ``to_state() -> dict`` of arrays, scalars and strings, and the classmethod
``from_state(state, topology)`` that rebuilds the component from it (the checkpoint stores each
component's class, so a restore needs no objects). ``report_lines()`` says what it found, for
people.

:func:`check_component` verifies an object against this contract; the pipeline calls it on every
component it is given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from telcoanalytics.alerts.manager import Alert
    from telcoanalytics.topology.model import Topology


class RoutedBatch(NamedTuple):
    """One accepted, routed batch of one source, as every component receives it.

    Attributes
    ----------
    source : str
        ``"cdr"``, ``"equip"``, ``"flow"`` or ``"qos"``.
    rows : structured ndarray
        Accepted rows in the source's canonical dtype (``telcoanalytics.records.DTYPES``).
    element_index : int64 ndarray
        Dense topology index of each row's element (never -1: unknown elements were quarantined).
    partition : int64 ndarray
        Node index of each row at the pipeline's route level (-1: the element was retired).
    """

    source: str
    rows: np.ndarray
    element_index: np.ndarray
    partition: np.ndarray


@runtime_checkable
class Component(Protocol):
    """The protocol every pipeline component implements (see the module docstring)."""

    def update(self, batch: RoutedBatch) -> list[Alert]: ...

    def advance(self, watermark_ms: int) -> list[Alert]: ...

    def topology_changed(self, topology: Topology, changes: list) -> list[Alert]: ...

    def finish(self, watermark_ms: int) -> list[Alert]: ...

    def report_lines(self) -> list[str]: ...

    def to_state(self) -> dict: ...

    @classmethod
    def from_state(cls, state: dict, topology: Topology) -> Component: ...


CONTRACT_METHODS = ("update", "advance", "topology_changed", "finish", "report_lines", "to_state", "from_state")


def check_component(name: str, comp) -> None:
    """Raise ``TypeError`` naming what ``comp`` lacks of the :class:`Component` contract.

    Examples
    --------
    >>> check_component("x", object())
    Traceback (most recent call last):
    ...
    TypeError: component 'x' (object) lacks update, advance, topology_changed, finish, report_lines, to_state, \
from_state of the component contract (telcoanalytics.pipeline.contract.Component)
    """
    missing = [m for m in CONTRACT_METHODS if not callable(getattr(comp, m, None))]
    if missing:
        raise TypeError(
            f"component {name!r} ({type(comp).__name__}) lacks {', '.join(missing)} of the component contract "
            "(telcoanalytics.pipeline.contract.Component)"
        )


def class_path(obj) -> str:
    """``module:QualName`` of an object's class, as stored in checkpoints."""
    t = type(obj)
    return f"{t.__module__}:{t.__qualname__}"


def load_class(path: str):
    """The component class named by :func:`class_path`.

    Raises
    ------
    ValueError
        The path names nothing in this version, or something that is not a component class.
    """
    import importlib

    mod, _, qual = path.partition(":")
    try:
        if not mod or not qual:
            raise ValueError("expected 'module:Class'")
        obj = importlib.import_module(mod)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(
            f"component class {path!r} does not exist in this version ({exc}); the checkpoint was written by "
            "another version or program: restore with that version, or start afresh"
        ) from None
    if not isinstance(obj, type) or not all(callable(getattr(obj, m, None)) for m in CONTRACT_METHODS):
        raise ValueError(f"{path!r} is not a component class (telcoanalytics.pipeline.contract.Component)")
    return obj
