"""What a computation shows a person — images, figures, metrics, texts — without knowing where it goes.

A stage opens its MLflow run with :func:`facefoundry.tracking.stage_run`, which installs a sink here for the
run's life: every ``reporting.image(...)``, ``figure(...)``, ``metrics(...)`` or ``text(...)`` made below then
lands in that run and in the stage's products folder. Generators and other lower layers report through this
module and never import ``tracking``; outside a stage (a test, a notebook) nothing is installed and the
calls do nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np


class Sink(Protocol):
    def image(self, image: np.ndarray, name: str) -> None: ...

    def figure(self, fig: Any, name: str) -> None: ...

    def metrics(self, values: dict[str, float], step: int | None = None) -> None: ...

    def text(self, text: str, name: str) -> None: ...


_SINKS: list[Sink] = []


@contextlib.contextmanager
def sink(target: Sink) -> Iterator[None]:
    """Route reports to ``target`` inside the block (the innermost block wins)."""
    _SINKS.append(target)
    try:
        yield
    finally:
        _SINKS.remove(target)


def active() -> bool:
    """Whether anyone listens (compute what only a report needs only then)."""
    return bool(_SINKS)


def image(array: np.ndarray, name: str) -> None:
    if _SINKS:
        _SINKS[-1].image(array, name)


def figure(fig: Any, name: str) -> None:  # a matplotlib figure
    if _SINKS:
        _SINKS[-1].figure(fig, name)


def metrics(values: dict[str, float], step: int | None = None) -> None:
    if _SINKS:
        _SINKS[-1].metrics(values, step)


def text(content: str, name: str) -> None:
    if _SINKS:
        _SINKS[-1].text(content, name)
