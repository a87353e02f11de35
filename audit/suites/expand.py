"""Scenario templates x attribute values -> counterfactual cases.

Design: one attribute changed at a time. For each scenario the baseline case
fills every protected slot with its attribute's baseline value; each
counterfactual case replaces exactly one attribute's value and keeps the rest
at baseline, so the difference of decision scores between a counterfactual
case and its baseline is the effect of that one value (Kusner et al. 2017,
"Counterfactual Fairness"; Tamkin et al. 2023 use the same design). All cases
of a scenario share a ``pair_id`` so statistics can pair them.

Every case keeps the character span of every slot it filled, so explainers can
read attributions per slot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from audit.suites.schema import SLOT_PATTERN, Attribute, AttributeValue, Scenario, Suite

BASELINE = "baseline"


@dataclass(frozen=True)
class Case:
    """One prompt to the model, with the provenance of every slot."""

    case_id: str
    pair_id: str
    scenario_id: str
    attribute: str | None  # the attribute changed from baseline; None for the baseline case
    value: str  # the text of the changed value, or "baseline"
    groups: dict[str, str]  # the full protected profile: race, sex, age, ...
    text: str
    slots: dict[str, list[tuple[int, int]]]  # slot name -> character spans in text
    protected_slots: tuple[str, ...] = field(default=())

    @property
    def is_baseline(self) -> bool:
        return self.attribute is None


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "value"


def render(template: str, fills: dict[str, str]) -> tuple[str, dict[str, list[tuple[int, int]]]]:
    """Fill ``{slot}`` placeholders and return the text with each slot's character spans."""
    pieces: list[str] = []
    spans: dict[str, list[tuple[int, int]]] = {}
    cursor = 0
    length = 0
    for match in SLOT_PATTERN.finditer(template):
        literal = template[cursor : match.start()]
        pieces.append(literal)
        length += len(literal)
        value = fills[match.group(1)]
        spans.setdefault(match.group(1), []).append((length, length + len(value)))
        pieces.append(value)
        length += len(value)
        cursor = match.end()
    pieces.append(template[cursor:])
    return "".join(pieces), spans


def _profile(attributes: tuple[Attribute, ...], chosen: dict[str, AttributeValue]) -> dict[str, str]:
    groups: dict[str, str] = {}
    for attribute in attributes:
        groups.update(chosen[attribute.name].groups)
    return groups


def expand_scenario(suite: Suite, scenario: Scenario) -> list[Case]:
    used = [a for a in suite.attributes if a.name in scenario.slots]
    baseline_values = {a.name: a.baseline for a in suite.attributes}
    protected_slots = tuple(a.name for a in used)

    def make_case(attribute: Attribute | None, value: AttributeValue | None) -> Case:
        chosen = dict(baseline_values)
        if attribute is not None:
            chosen[attribute.name] = value
        fills = {**scenario.values, **{name: v.text for name, v in chosen.items()}}
        text, spans = render(scenario.template, fills)
        suffix = BASELINE if attribute is None else f"{slugify(attribute.name)}={slugify(value.text)}"
        return Case(
            case_id=f"{scenario.id}/{suffix}",
            pair_id=scenario.id,
            scenario_id=scenario.id,
            attribute=None if attribute is None else attribute.name,
            value=BASELINE if value is None else value.text,
            groups=_profile(suite.attributes, chosen),
            text=text,
            slots=spans,
            protected_slots=protected_slots,
        )

    cases = [make_case(None, None)]
    for attribute in used:
        cases.extend(make_case(attribute, value) for value in attribute.values)
    return cases


def expand(suite: Suite, limit: int | None = None) -> list[Case]:
    """All cases of the suite; ``limit`` keeps the first N scenarios (each with all its variants).

    An imported test set (``audit.suites.discrim_eval``) brings its cases with it; they are returned as they are.
    """
    scenarios = suite.scenarios if limit is None else suite.scenarios[:limit]
    if suite.cases is not None:
        kept = {scenario.id for scenario in scenarios}
        return [case for case in suite.cases if case.scenario_id in kept]
    return [case for scenario in scenarios for case in expand_scenario(suite, scenario)]
