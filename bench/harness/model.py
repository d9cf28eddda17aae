"""Shared types: run configuration, per-figure results and the harness's errors."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any


class BenchError(Exception):
    """Root of the harness's errors: a measurement that was attempted and failed."""


class NotAvailable(BenchError):
    """A part the figure needs has not landed yet (or is not installed here)."""


@dataclass(frozen=True)
class Config:
    """Sizes and rounds for one run; ``quick()`` gives the smoke-test sizes."""

    cold_rounds: int = 30
    rt_messages: int = 5000
    rt_rounds: int = 5
    enqueue_urls: int = 10_000
    enqueue_batches: tuple[int, ...] = (1, 100)
    enqueue_rounds: int = 3
    drain_urls: int = 10_000
    drain_rounds: int = 3
    idle_seconds: float = 10.0
    idle_rounds: int = 1
    handshake_rounds: int = 20
    growth_sizes: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000)
    growth_drain_max: int = 100_000
    growth_procs: tuple[int, ...] = (1, 2, 4, 8)
    growth_proc_urls: int = 300
    timeout_s: float = 60.0
    fake_site_persistent: bool = False
    quick: bool = False

    @classmethod
    def quick_config(cls) -> Config:
        """Tiny sizes: every code path runs, in seconds, numbers meaningless."""
        return cls(
            cold_rounds=2,
            rt_messages=50,
            rt_rounds=1,
            enqueue_urls=200,
            enqueue_rounds=1,
            drain_urls=300,
            drain_rounds=1,
            idle_seconds=0.5,
            idle_rounds=1,
            handshake_rounds=2,
            growth_sizes=(1_000, 3_000),
            growth_drain_max=1_000,
            growth_procs=(1, 2),
            growth_proc_urls=20,
            timeout_s=30.0,
            quick=True,
        )


@dataclass(frozen=True)
class Summary:
    """Median, min and max of one series of samples, in the figure's unit."""

    median: float
    minimum: float
    maximum: float
    samples: tuple[float, ...]

    @classmethod
    def of(cls, samples: list[float]) -> Summary:
        """Summarise ``samples``; raises BenchError when there are none."""
        if not samples:
            raise BenchError("no samples to summarise (0 of at least 1)")
        return cls(statistics.median(samples), min(samples), max(samples), tuple(samples))

    def to_json(self) -> dict[str, Any]:
        """The JSON form written to results.json."""
        return {
            "median": self.median,
            "min": self.minimum,
            "max": self.maximum,
            "n": len(self.samples),
            "samples": list(self.samples),
        }


@dataclass
class Row:
    """One measured series: the candidate (our host) or a baseline."""

    name: str
    summary: Summary
    role: str  # "candidate" | "baseline" | "reference"
    note: str = ""


@dataclass
class FigureResult:
    """The outcome of one figure: measured rows, or why it could not be measured.

    ``ratio`` is candidate / baseline on the figure's "better" axis (for
    throughput figures higher is better, for times lower is better); ``met`` says
    whether the issue's target holds for the medians, None when not measured.
    """

    key: str
    title: str
    unit: str
    target: str
    status: str = "measured"  # "measured" | "not_available" | "error"
    reason: str = ""
    rows: list[Row] = field(default_factory=list)
    ratio: float | None = None
    met: bool | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def candidate(self) -> Row | None:
        """The first candidate row, if any."""
        return next((r for r in self.rows if r.role == "candidate"), None)

    def to_json(self) -> dict[str, Any]:
        """The JSON form written to results.json."""
        return {
            "title": self.title,
            "unit": self.unit,
            "target": self.target,
            "status": self.status,
            "reason": self.reason,
            "rows": [
                {"name": r.name, "role": r.role, "note": r.note, **r.summary.to_json()}
                for r in self.rows
            ],
            "ratio": self.ratio,
            "met": self.met,
            "notes": self.notes,
            "seconds": self.seconds,
        }
