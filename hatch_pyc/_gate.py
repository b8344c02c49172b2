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
    """One threshold checked: ``verdict`` is ``pass``, ``fail``, ``within-noise`` (past the limit, but not by
    more than the noise of both runs: not failing, see :func:`slowdown_check`) or ``not-checked`` (nothing to
    compare; ``detail`` says why)."""

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
    def nothing_checked(self) -> bool:
        """Whether no threshold could be checked at all (every check was not made): never a pass."""
        return bool(self.checks) and all(c.verdict == NOT_CHECKED for c in self.checks)

    @property
    def passed(self) -> bool:
        return not any(c.verdict == FAIL for c in self.checks) and not self.nothing_checked

    def lines(self) -> list[str]:
        """Failures first, then the rest in the order checked; a verdict line last."""
        ordered = [c for c in self.checks if c.verdict == FAIL] + [c for c in self.checks if c.verdict != FAIL]
        failed, made = len(self.failures), len(self.checks)
        plural = "s" if made != 1 else ""
        verdict = f"gate: {failed} of {made} check{plural} failed" if failed else f"gate: passed ({made} check{plural})"
        if self.nothing_checked:
            verdict = f"gate: failed: none of the {made} check{plural} could be made (see above)"
        return [c.line for c in ordered] + [verdict]

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [c.to_json() for c in self.checks]}


def pct(new: float, old: float) -> float | None:
    """``new`` against ``old`` in percent, rounded to 2 places; ``None`` when there is nothing to compare."""
    if not old or math.isnan(old) or math.isnan(new):
        return None
    return round((new - old) / old * 100, 2)


def size_check(subject: str, old: int, new: int, limit: float, against: str) -> GateCheck:
    detail = f"{old} ({against}) -> {new} bytes"
    change = pct(new, old) if old > 0 and new >= 0 else None
    if change is None:
        return not_checked("size", subject, limit, detail + "; nothing to compare with (not a positive size)")
    return GateCheck("size", subject, limit, change, FAIL if change > limit else PASS, detail)


@dataclass(frozen=True)
class Ratio:
    """The median of round-by-round ratios, with its order-statistic interval."""

    median: float
    low: float
    high: float
    rounds: int

    @classmethod
    def of(cls, values: Sequence[float], reference: Sequence[float]) -> Ratio | None:
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (*values, *reference)):
            raise ValueError("a time that is not a number")
        # The rounds where both times are positive numbers.
        ratios = [
            r for v, r in zip(values, paired_ratios(values, reference), strict=True) if v > 0 and math.isfinite(r)
        ]
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
    against 1 (the reference itself) without a baseline. Past the limit it fails only when even the most
    favourable reading of both intervals (the new one's low end against the baseline's high end, or 1) is a
    slow-down past the limit: the intervals measure the noise within each run, and runs differ by more than
    that. Otherwise it is within the measured noise (``within-noise``), not failing."""
    name = subject.split(maxsplit=1)[0]
    if old is None:
        change, worst = pct(new.median, 1.0), 1.0
        detail = f"{name} / {reference}, round by round: {new}"
    else:
        change, worst = pct(new.median, old.median), old.high
        detail = f"{name} / {reference}, round by round: {old} (baseline) -> {new}"
    if change is None:
        return not_checked(kind, subject, limit, detail + "; no ratio to compare with (a zero or missing time)")
    clear = new.low > worst * (1 + limit / 100)
    verdict = PASS if change <= limit else FAIL if clear else NOISE
    if verdict == NOISE:
        detail += "; past the limit only within the measured noise, not failing"
    return GateCheck(kind, subject, limit, change, verdict, detail)


def not_checked(kind: str, subject: str, limit: float, why: str) -> GateCheck:
    return GateCheck(kind, subject, limit, None, NOT_CHECKED, why)
