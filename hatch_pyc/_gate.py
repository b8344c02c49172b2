"""Threshold checks ("gates") of reports: every check with what it compared, its limit, the value it
measured and its verdict, for the terminal, the JSON and the Markdown alike.

An import time is never compared across runs as a number of milliseconds: CI machines differ from run to
run far more than a regression worth catching. Each figure is first made a ratio to a reference measured in
the same interleaved rounds (a compiled variant to the sources-only variant; the sources-only variant to the
interpreter's own start-up), round by round, and that ratio is what is compared with the baseline's.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hatch_pyc._measure import median_ci, median_ci_level, paired_ratios

PASS, FAIL, NOISE, NOT_CHECKED = "pass", "fail", "within-noise", "not-checked"


@dataclass(frozen=True)
class GateCheck:
    """One threshold checked: ``verdict`` is ``pass``, ``fail``, ``within-noise`` (past the limit, but the
    intervals overlap: not failing) or ``not-checked`` (nothing to compare; ``detail`` says why)."""

    kind: str  # "size", "import" or "startup"
    subject: str  # what was measured: "sourceless-O0 wheel_bytes", "cache-O0 `idna`"
    limit_pct: float
    change_pct: float | None
    verdict: str
    detail: str  # what was compared with what, and how noisy it was

    @property
    def line(self) -> str:
        """The check as one line: ``FAIL: import time cache-O0 `idna`: ... (+31.2%, limit +10%)``."""
        label = {PASS: "PASS", FAIL: "FAIL", NOISE: "NOISE", NOT_CHECKED: "SKIP"}[self.verdict]
        what = {"size": "size", "import": "import time", "startup": "start-up"}[self.kind]
        change = "" if self.change_pct is None else f" ({self.change_pct:+}%, limit +{self.limit_pct:g}%)"
        return f"{label}: {what} {self.subject}: {self.detail}{change}"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "limit_pct": self.limit_pct,
            "change_pct": self.change_pct,
            "verdict": self.verdict,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class GateResult:
    """Every check of a report against its thresholds."""

    checks: list[GateCheck] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        return [c.line for c in self.checks if c.verdict == FAIL]

    @property
    def notes(self) -> list[str]:
        return [c.line for c in self.checks if c.verdict in (NOISE, NOT_CHECKED)]

    @property
    def passed(self) -> bool:
        return not any(c.verdict == FAIL for c in self.checks)

    def lines(self) -> list[str]:
        """Failures first, then the rest in the order checked; a verdict line last."""
        ordered = [c for c in self.checks if c.verdict == FAIL] + [c for c in self.checks if c.verdict != FAIL]
        failed, made = len(self.failures), len(self.checks)
        plural = "s" if made != 1 else ""
        verdict = f"gate: {failed} of {made} check{plural} failed" if failed else f"gate: passed ({made} check{plural})"
        return [c.line for c in ordered] + [verdict]

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [c.to_json() for c in self.checks]}


def pct(new: float, old: float) -> float | None:
    """``new`` against ``old`` in percent, rounded to 2 places; ``None`` when there is nothing to compare."""
    if not old or math.isnan(old) or math.isnan(new):
        return None
    return round((new - old) / old * 100, 2)


def size_check(subject: str, old: int, new: int, limit: float, against: str) -> GateCheck:
    change = pct(new, old)
    verdict = FAIL if change is not None and change > limit else PASS
    return GateCheck("size", subject, limit, change, verdict, f"{old} ({against}) -> {new} bytes")


@dataclass(frozen=True)
class Ratio:
    """The median of round-by-round ratios, with its order-statistic interval."""

    median: float
    low: float
    high: float
    rounds: int

    @classmethod
    def of(cls, values: Sequence[float], reference: Sequence[float]) -> Ratio | None:
        ratios = paired_ratios(values, reference)
        if not ratios:
            return None
        low, high = median_ci(ratios)
        return cls(statistics.median(ratios), low, high, len(ratios))

    def __str__(self) -> str:
        sure = median_ci_level(self.rounds)
        return f"{self.median:.3f} [{self.low:.3f}-{self.high:.3f}, {sure:.0%} over {self.rounds} rounds]"


def slowdown_check(
    kind: str, subject: str, limit: float, *, new: Ratio, old: Ratio | None, reference: str
) -> GateCheck:
    """``new`` (a time over ``reference``, round by round) against ``old`` (the baseline's same ratio), or
    against 1 (the reference itself) without a baseline. Past the limit it fails only when the new interval
    lies wholly above the old one (or above 1); overlapping, it is within the measured noise."""
    if old is None:
        change = pct(new.median, 1.0)
        clear = new.low > 1.0
        detail = f"{subject.split(maxsplit=1)[0]} / {reference}, round by round: {new}"
    else:
        change = pct(new.median, old.median)
        clear = new.low > old.high
        detail = f"{subject.split(maxsplit=1)[0]} / {reference}, round by round: {old} (baseline) -> {new}"
    verdict = PASS if change is None or change <= limit else FAIL if clear else NOISE
    if verdict == NOISE:
        detail += "; the intervals overlap: within the measured noise, not failing"
    return GateCheck(kind, subject, limit, change, verdict, detail)


def not_checked(kind: str, subject: str, limit: float, why: str) -> GateCheck:
    return GateCheck(kind, subject, limit, None, NOT_CHECKED, why)
