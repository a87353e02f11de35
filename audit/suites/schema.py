"""Suite YAML: dataclasses and strict validation.

A suite is data, not code (as in lm-evaluation-harness): a question, the
answer words, protected attributes with a baseline value and counterfactual
values, legitimate factors, and scenario templates with ``{slot}``
placeholders. Validation errors name the file and the field, e.g.
``fair-lending.yaml: scenarios[3].template: slot {incom} is neither an
attribute nor a key of values``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from audit.errors import SuiteError, did_you_mean
from audit.text_safety import check_tree

SLOT_PATTERN = re.compile(r"\{([^{}]+)\}")
SUITE_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
PROMPT_FIELD = re.compile(r"\{(case|question)\}")
ANSWER_FORMS = ("variants", "exact")


@dataclass(frozen=True)
class AttributeValue:
    """One value of a protected attribute: the text put in the slot and its group labels."""

    text: str
    groups: dict[str, str]
    source: str | None = None


@dataclass(frozen=True)
class Attribute:
    """A protected attribute slot with its baseline and counterfactual values."""

    name: str
    protected: tuple[str, ...]
    baseline: AttributeValue
    values: tuple[AttributeValue, ...]
    description: str = ""
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    template: str
    values: dict[str, str]

    @property
    def slots(self) -> list[str]:
        return SLOT_PATTERN.findall(self.template)


@dataclass(frozen=True)
class Answers:
    favourable: tuple[str, ...]
    unfavourable: tuple[str, ...]


@dataclass(frozen=True)
class Suite:
    id: str
    title: str
    question: str
    answers: Answers
    attributes: tuple[Attribute, ...]
    factors: tuple[str, ...]
    scenarios: tuple[Scenario, ...]
    version: int = 1
    description: str = ""
    domain: str = ""
    clauses: tuple[str, ...] = ()
    answer_prefix: str = ""
    system_prompt: str | None = None
    baseline: str = ""
    prompt_template: str | None = None  # the whole prompt with {case} (and {question}); no chat template
    answer_forms: str = "variants"  # "exact": the answer words only as written, no case or space variants
    source: str = ""
    sha256: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    cases: tuple | None = field(default=None, repr=False, compare=False)  # rows of an imported test set

    def render_prompt(self, text: str) -> str:
        """The prompt of a suite with its own ``prompt_template``: {case} and {question} filled, nothing else."""
        fills = {"case": text, "question": self.question}
        return PROMPT_FIELD.sub(lambda match: fills[match.group(1)], self.prompt_template)

    def attribute(self, name: str) -> Attribute:
        return next(a for a in self.attributes if a.name == name)

    @property
    def protected_properties(self) -> list[str]:
        """Every protected property in the suite, in declaration order (race, sex, age, ...)."""
        seen: list[str] = []
        for attribute in self.attributes:
            seen.extend(p for p in attribute.protected if p not in seen)
        return seen


def parse_suite(raw: Any, *, label: str = "suite", source: str = "", sha256: str = "") -> Suite:
    """Validate a suite mapping and build the dataclasses; every error names ``label: field``."""
    v = _Validator(label)
    root = v.mapping(raw, "")
    check_tree(root, label, SuiteError)  # a mapping built in Python did not pass through strict_yaml
    v.only_keys(
        root,
        "",
        {
            "id", "version", "title", "description", "domain", "clauses", "question", "answer_prefix",
            "system_prompt", "answers", "baseline", "attributes", "factors", "scenarios", "prompt_template",
            "answer_forms",
        },
    )
    suite_id = v.string(root, "id")
    if not SUITE_ID_PATTERN.fullmatch(suite_id):
        v.fail("id", f"{suite_id!r} must be lowercase letters, digits, '.', '_' or '-'")
    answers_raw = v.mapping(v.require(root, "answers"), "answers")
    v.only_keys(answers_raw, "answers", {"favourable", "unfavourable"})
    answers = Answers(
        favourable=tuple(v.string_list(answers_raw, "favourable", prefix="answers.")),
        unfavourable=tuple(v.string_list(answers_raw, "unfavourable", prefix="answers.")),
    )
    overlap = {a.lower() for a in answers.favourable} & {a.lower() for a in answers.unfavourable}
    if overlap:
        v.fail("answers", f"{sorted(overlap)} is both favourable and unfavourable")

    attributes = tuple(
        _parse_attribute(v, name, spec) for name, spec in v.mapping(v.require(root, "attributes"), "attributes").items()
    )
    if not attributes:
        v.fail("attributes", "must name at least one protected attribute")
    factors = tuple(v.string_list(root, "factors", required=False))
    attribute_names = {a.name for a in attributes}
    clash = attribute_names & set(factors)
    if clash:
        v.fail("factors", f"{sorted(clash)} is also an attribute")

    scenarios_raw = v.require(root, "scenarios")
    if not isinstance(scenarios_raw, list) or not scenarios_raw:
        v.fail("scenarios", "must be a non-empty list")
    scenarios = tuple(_parse_scenario(v, i, s, attribute_names) for i, s in enumerate(scenarios_raw))
    ids = [s.id for s in scenarios]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        v.fail("scenarios", f"duplicate scenario id {duplicates[0]!r}")

    system_prompt = root.get("system_prompt")
    if system_prompt is not None and not isinstance(system_prompt, str):
        v.fail("system_prompt", "must be a string or null")
    version = root.get("version", 1)
    if not isinstance(version, int):
        v.fail("version", "must be an integer")
    prompt_template = root.get("prompt_template")
    if prompt_template is not None:
        if not isinstance(prompt_template, str):
            v.fail("prompt_template", "must be a string")
        if prompt_template.count("{case}") != 1:
            v.fail("prompt_template", "must contain {case} exactly once (where the case text goes)")
    answer_forms = root.get("answer_forms", "variants")
    if answer_forms not in ANSWER_FORMS:
        v.fail("answer_forms", f"must be one of {', '.join(ANSWER_FORMS)}, got {answer_forms!r}")
    return Suite(
        id=suite_id,
        title=v.string(root, "title"),
        question=v.string(root, "question", required=False),  # a classifier reads the case text alone
        answers=answers,
        attributes=attributes,
        factors=factors,
        scenarios=scenarios,
        version=version,
        description=v.string(root, "description", required=False),
        domain=v.string(root, "domain", required=False),
        clauses=tuple(v.string_list(root, "clauses", required=False)),
        answer_prefix=v.string(root, "answer_prefix", required=False, allow_empty=True),
        system_prompt=system_prompt,
        baseline=v.string(root, "baseline", required=False),
        prompt_template=prompt_template,
        answer_forms=answer_forms,
        source=source,
        sha256=sha256,
        raw=root,
    )


def _parse_attribute(v: "_Validator", name: str, spec: Any) -> Attribute:
    where = f"attributes.{name}"
    if not isinstance(name, str) or not name.strip() or "{" in name or "}" in name:
        v.fail("attributes", f"{name!r} is not a valid attribute name")
    spec = v.mapping(spec, where)
    v.only_keys(spec, where, {"protected", "description", "baseline", "values", "sources"})
    protected = tuple(v.string_list(spec, "protected", prefix=where + "."))
    baseline = _parse_value(v, spec.get("baseline"), f"{where}.baseline", protected)
    values_raw = v.require(spec, "values", prefix=where + ".")
    if not isinstance(values_raw, list) or not values_raw:
        v.fail(f"{where}.values", "must be a non-empty list")
    values = tuple(_parse_value(v, item, f"{where}.values[{i}]", protected) for i, item in enumerate(values_raw))
    texts = [baseline.text] + [value.text for value in values]
    repeated = sorted({t for t in texts if texts.count(t) > 1})
    if repeated:
        v.fail(f"{where}.values", f"{repeated[0]!r} appears more than once (baseline included)")
    return Attribute(
        name=name,
        protected=protected,
        baseline=baseline,
        values=values,
        description=v.string(spec, "description", required=False, prefix=where + "."),
        sources=tuple(v.string_list(spec, "sources", required=False, prefix=where + ".")),
    )


def _parse_value(v: "_Validator", item: Any, where: str, protected: tuple[str, ...]) -> AttributeValue:
    if item is None:
        v.fail(where, "is required")
    if not isinstance(item, dict):
        text = v.scalar_text(item, where)
        if len(protected) != 1:
            v.fail(where, f"a plain value needs exactly one protected property, the attribute has {list(protected)}")
        if not text.strip():
            v.fail(where, "must not be empty")
        return AttributeValue(text=text, groups={protected[0]: text})
    item = v.mapping(item, where)
    v.only_keys(item, where, {"text", "source", *protected})
    text = v.string(item, "text", prefix=where + ".")
    groups = {}
    for prop in protected:
        if prop not in item:
            v.fail(f"{where}.{prop}", "is required (listed under protected)")
        groups[prop] = v.scalar_text(item[prop], f"{where}.{prop}")
    source = item.get("source")
    return AttributeValue(text=text, groups=groups,
                          source=None if source is None else v.scalar_text(source, f"{where}.source"))


def _parse_scenario(v: "_Validator", index: int, item: Any, attribute_names: set[str]) -> Scenario:
    where = f"scenarios[{index}]"
    item = v.mapping(item, where)
    v.only_keys(item, where, {"id", "title", "template", "values"})
    scenario_id = v.string(item, "id", prefix=where + ".")
    if not SUITE_ID_PATTERN.fullmatch(scenario_id):
        v.fail(f"{where}.id", f"{scenario_id!r} must be lowercase letters, digits, '.', '_' or '-'")
    template = v.string(item, "template", prefix=where + ".")
    values_raw = item.get("values") or {}
    values = {str(k): v.scalar_text(val, f"{where}.values.{k}")
              for k, val in v.mapping(values_raw, f"{where}.values").items()}
    for slot in SLOT_PATTERN.findall(template):
        if slot not in attribute_names and slot not in values:
            v.fail(f"{where}.template", f"slot {{{slot}}} is neither an attribute nor a key of values")
    stray = re.sub(SLOT_PATTERN, "", template)
    if "{" in stray or "}" in stray:
        v.fail(f"{where}.template", "has an unbalanced '{' or '}'")
    for name in attribute_names:
        count = SLOT_PATTERN.findall(template).count(name)
        if count > 1:
            v.fail(f"{where}.template", f"uses attribute slot {{{name}}} {count} times; at most once")
    return Scenario(
        id=scenario_id,
        title=v.string(item, "title", required=False, prefix=where + ".") or scenario_id,
        template=template,
        values=values,
    )


class _Validator:
    """Small helpers that raise ``SuiteError('<file>: <field>: <problem>')``."""

    def __init__(self, label: str):
        self.label = label

    def fail(self, field_name: str, problem: str):
        where = f"{self.label}: {field_name}: " if field_name else f"{self.label}: "
        raise SuiteError(where + problem)

    def mapping(self, value: Any, where: str) -> dict:
        if not isinstance(value, dict):
            self.fail(where, f"must be a mapping, got {type(value).__name__}")
        return value

    def only_keys(self, mapping: dict, where: str, allowed: set[str]):
        unknown = sorted(str(k) for k in mapping if k not in allowed)
        if unknown:
            prefix = f"{where}." if where else ""
            self.fail(f"{prefix}{unknown[0]}", f"unknown field{did_you_mean(unknown[0], allowed)} "
                                               f"(allowed: {', '.join(sorted(allowed))})")

    def require(self, mapping: dict, key: str, prefix: str = ""):
        if key not in mapping or mapping[key] is None:
            self.fail(prefix + key, "is required")
        return mapping[key]

    def string(self, mapping: dict, key: str, *, required: bool = True, allow_empty: bool = False, prefix: str = "") -> str:
        if key not in mapping or mapping[key] is None:
            if required:
                self.fail(prefix + key, "is required")
            return ""
        value = self.scalar_text(mapping[key], prefix + key)
        if not allow_empty and not value.strip():
            self.fail(prefix + key, "must not be empty")
        return value

    def string_list(self, mapping: dict, key: str, *, required: bool = True, prefix: str = "") -> list[str]:
        if key not in mapping or mapping[key] is None:
            if required:
                self.fail(prefix + key, "is required")
            return []
        value = mapping[key]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.fail(prefix + key, f"must be a list of strings, got {_kind(value)}")
        if required and not value:
            self.fail(prefix + key, "must not be empty")
        return [self.scalar_text(x, f"{prefix}{key}[{i}]") for i, x in enumerate(value)]

    def scalar_text(self, value: Any, where: str) -> str:
        """A string, or a finite number written as text; a list, mapping, boolean, date or null is refused, so
        that ``[640000, 'USD']`` or ``True`` never reaches a prompt."""
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            self.fail(where, f"must be text, got the boolean {str(value).lower()} (YAML reads unquoted yes, no, on "
                             "and off as booleans: put the word in quotes)")
        if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
            return str(value)
        self.fail(where, f"must be text or a number, got {_kind(value)}")


def _kind(value: Any) -> str:
    """How a YAML value reads to its author: 'a list', 'a mapping', 'null', 'the number inf', 'a date'."""
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"the number {value}"
    names = {list: "a list", dict: "a mapping", bytes: "binary data"}
    return next((name for kind, name in names.items() if isinstance(value, kind)), f"a {type(value).__name__}")
