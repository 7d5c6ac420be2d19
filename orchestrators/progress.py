"""How a training run is split and how its progress is reported (pure).

A train run may cover hundreds of segments (the case study starts at 14 regions × 4). Two
things must not grow with that number:

* the history of any one orchestration — replaying it is the orchestrator's cost, so segments
  are trained in batches, one sub-orchestration per batch, and the train orchestration's own
  history holds one event pair per batch rather than per segment;
* the custom status — Azure fails an orchestration whose custom status exceeds 16 KB of
  UTF-16 JSON, so progress is counts plus a short list of the latest outcomes; the
  per-segment details are the orchestration's output.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

BATCH_MAX = 25  # segments per batch sub-orchestration
BATCHES_WANTED = 4  # small runs still report progress a few times
RECENT = 10  # latest outcomes shown in the custom status
ERROR_CHARS = 160  # of one segment's error in the custom status


def training_batches(segments: list[str]) -> list[list[str]]:
    """Split ``segments`` (kept in order) into batches of at most ``BATCH_MAX``.

    Small runs get about ``BATCHES_WANTED`` batches so progress moves more than once; large
    runs get full batches. Depends only on the list, so every replay splits the same way.
    """
    if not segments:
        return []
    size = max(1, min(BATCH_MAX, math.ceil(len(segments) / BATCHES_WANTED)))
    return [segments[i : i + size] for i in range(0, len(segments), size)]


def outcome_of(result: dict[str, Any]) -> str:
    """One word for a segment's result: the gate's decision, else its status."""
    return str(result.get("decision") or result.get("status") or "unknown")


@dataclass
class TrainingProgress:
    """Counts of a training run, and the latest outcomes (bounded), for the custom status."""

    segments: int
    batches: int = 0
    batches_finished: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    recent: deque[dict[str, str]] = field(default_factory=lambda: deque(maxlen=RECENT))

    def record(self, segment: str, result: dict[str, Any]) -> None:
        outcome = outcome_of(result)
        self.outcomes[outcome] += 1
        entry = {"segment": segment, "outcome": outcome}
        if result.get("status") != "completed" and result.get("error"):
            entry["error"] = str(result["error"])[:ERROR_CHARS]
        self.recent.append(entry)

    @property
    def finished(self) -> int:
        return sum(self.outcomes.values())

    def counts(self) -> dict[str, Any]:
        """Segment counts by outcome (champion, challenger, rejected, failed, ...)."""
        return {
            "segments": self.segments,
            "finished": self.finished,
            "outcomes": dict(sorted(self.outcomes.items())),
        }

    def status(self, stage: str) -> dict[str, Any]:
        """The custom status: a few hundred bytes whatever the number of segments."""
        return {
            "stage": stage,
            **self.counts(),
            "batches": {"finished": self.batches_finished, "total": self.batches},
            "recent": list(self.recent),
        }
