"""Controls: named checks over the evidence, each tied to the clauses it evidences.

A control turns evidence into measurements (one per protected group, or one
overall), each a value with its confidence interval. The policy
(``audit.controls.policy``) sets the threshold and decides pass / fail / inconclusive;
this module only measures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from audit.errors import AuditError


@dataclass(frozen=True)
class Measurement:
    label: str  # e.g. "race = black (vs white)" or "all cases"
    value: float | None
    ci: tuple[float, float] | None
    detail: str = ""
    key: dict[str, str] = field(default_factory=dict)  # attribute, property, group where the value is per group
    n_cases: int | None = None  # the group's cases, where the policy's minimum sample size per group applies


@dataclass(frozen=True)
class ControlOption:
    """A setting of a control beside its threshold, with its default and the interval a policy may set it in.

    The registry is the one place a default is written: the policy parser, the stages that apply the setting
    (the answer-mass floor, the reasons' floors) and docs/policies.md read it from here.
    """

    name: str
    default: float
    low: float
    high: float
    low_inclusive: bool
    high_inclusive: bool
    meaning: str

    def interval_in_words(self) -> str:
        """"between 0 and 1", "above 0 and at most 1", "from 0 up to (not including) 1" or "from 0 to 1"."""
        low, high = f"{self.low:g}", f"{self.high:g}"
        if self.low_inclusive:
            return f"from {low} to {high}" if self.high_inclusive else f"from {low} up to (not including) {high}"
        return f"above {low} and at most {high}" if self.high_inclusive else f"between {low} and {high}"

    def accepts(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        above = value >= self.low if self.low_inclusive else value > self.low
        below = value <= self.high if self.high_inclusive else value < self.high
        return above and below


@dataclass(frozen=True)
class ControlDefinition:
    id: str
    title: str
    question: str  # what the control asks, in plain language
    metric: str  # how the value is computed
    direction: str  # "max": value must stay at or below the threshold; "min": at or above
    unit: str  # "log-odds", "ratio" or "share"
    clauses: tuple[str, ...]
    measure: Callable[[dict, dict], list[Measurement]]
    threshold_range: tuple[float | None, float | None]  # a policy's threshold must lie here (None: unbounded)
    summary: str = ""  # the value in a few words, for the table of controls (docs/policies.md)
    remedy: str = ""  # what to investigate when the control fails (the report's first page)
    to_decide: str = ""  # what evidence would decide it when it is inconclusive
    if_not_evaluated: str = ""  # what the audit needs before it can measure the control at all
    options: tuple[ControlOption, ...] = ()  # settings beside the threshold, with their defaults

    def option(self, name: str) -> ControlOption:
        return next(option for option in self.options if option.name == name)

    def threshold_problem(self, threshold: float) -> str | None:
        """Why ``threshold`` cannot be this control's threshold (not finite, outside the range), else None."""
        low, high = self.threshold_range
        if not math.isfinite(threshold):
            return f"must be a finite number, got {threshold}"
        if (low is not None and threshold < low) or (high is not None and threshold > high):
            if low is not None and high is not None:
                bounds = f"from {low:g} to {high:g}"
            else:
                bounds = f"at least {low:g}" if low is not None else f"at most {high:g}"
            return f"must be {bounds} ({self.unit}), got {threshold:g}"
        return None


CONTROLS: dict[str, ControlDefinition] = {}  # id -> definition, in the order registered


def register_control(definition: ControlDefinition, *, origin: str = "") -> ControlDefinition:
    """Add ``definition`` to the registry (a policy may then name it); refuses a second control of one id."""
    where = f"{origin}: " if origin else ""
    if not isinstance(definition, ControlDefinition):
        raise AuditError(f"{where}is a {type(definition).__name__}, not an audit.controls.base.ControlDefinition")
    if definition.id in CONTROLS and CONTROLS[definition.id] is not definition:
        raise AuditError(f"{where}a control with id {definition.id!r} is already registered")
    if definition.direction not in ("max", "min"):
        raise AuditError(f"{where}{definition.id}: direction must be 'max' or 'min', got {definition.direction!r}")
    CONTROLS[definition.id] = definition
    return definition
