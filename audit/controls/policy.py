"""Policy as code: thresholds in YAML, pass / fail / inconclusive per control, and the exit code.

A measurement passes when its whole confidence interval lies on the safe
side of the threshold, fails when its point estimate lies on the wrong side,
and is otherwise inconclusive: the data cannot tell. A control takes the
worst status of its measurements (fail > inconclusive > not evaluated > pass).

The verdict (``verdict``) is one of three, and never PASS while a blocking control is undecided:

- **fail** (exit 1): a blocking control failed; under the policy's ``fail_on_inconclusive`` an undecided
  blocking control fails the audit too;
- **inconclusive** (exit 4): no blocking control failed, but at least one is *undecided*: inconclusive (its
  interval straddles the threshold) or not evaluated (the bundle holds nothing to measure it on);
- **pass** (exit 0): every blocking control passed.

Bundles before schema 1.6 were judged by the earlier rule, under which undecided controls did not count
(``legacy_verdict``); ``audit verify`` re-derives an old bundle's verdict by the rule it was written under.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from audit import strict_yaml
from audit.controls.base import Measurement
from audit.controls.registry import registered_controls
from audit.errors import PolicyError, did_you_mean
from audit.options import JURISDICTIONS
from audit.text_safety import check_tree

STATUS_ORDER = {"pass": 0, "not evaluated": 1, "inconclusive": 2, "fail": 3}
UNDECIDED = ("inconclusive", "not evaluated")  # a blocking control in either state keeps the verdict from PASS
EXIT_CODES = {"pass": 0, "fail": 1, "inconclusive": 4}
DEFAULT_POLICY = "default"


@dataclass(frozen=True)
class ControlSettings:
    threshold: float
    blocking: bool = True
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Policy:
    id: str
    title: str
    description: str
    controls: dict[str, ControlSettings]
    fail_on_inconclusive: bool
    source: str
    sha256: str
    jurisdiction: str | None = None
    min_group_cases: int = 0  # a group with fewer cases is inconclusive on every per-group control

    def option(self, control_id: str, name: str) -> float:
        """The policy's setting ``name`` of the control, else its registered default (a policy may leave the
        control out and still govern how the evidence it would judge is computed)."""
        settings = self.controls.get(control_id)
        if settings is not None and name in settings.options:
            return settings.options[name]
        return registered_controls()[control_id].option(name).default

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "source": self.source,
            "sha256": self.sha256,
            "fail_on_inconclusive": self.fail_on_inconclusive,
            "jurisdiction": self.jurisdiction,
            "min_group_cases": self.min_group_cases,
            "controls": {
                cid: {"threshold": c.threshold, "blocking": c.blocking, **c.options} for cid, c in self.controls.items()
            },
        }


def bundled_policy_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("audit.policies").iterdir() if p.name.endswith(".yaml"))


def load_policy(path: str | None = None, suite_id: str | None = None) -> Policy:
    """The policy at ``path``; without one, the bundled policy named after the suite, else the bundled default."""
    if path is None:
        name = suite_id if suite_id in bundled_policy_names() else DEFAULT_POLICY
        source = resources.files("audit.policies") / f"{name}.yaml"
        label, data, origin = f"{name}.yaml (bundled)", source.read_bytes(), f"bundled:{name}"
    else:
        file = Path(path)
        if not file.is_file():
            raise PolicyError(f"--policy: file {path!r} does not exist")
        label, data, origin = file.name, strict_yaml.read_bytes(file, file.name, PolicyError), str(path)
    raw = strict_yaml.load(strict_yaml.decode(data, label, PolicyError), label, PolicyError)
    digest = hashlib.sha256(data)
    for base in _extended_files(raw):  # an edit of a base changes every policy that extends it
        digest.update(base)
    return parse_policy(raw, label=label, source=origin, sha256=digest.hexdigest())


def _extended_files(raw: Any) -> list[bytes]:
    """The bytes of the bundled policies ``raw`` extends, nearest first (a name that is not one is left to
    ``resolve_extends`` to refuse)."""
    found: list[bytes] = []
    seen: set[str] = set()
    while isinstance(raw, dict) and raw.get("extends") in bundled_policy_names() and raw["extends"] not in seen:
        seen.add(raw["extends"])
        label, raw, data = _bundled_raw(raw["extends"])
        found.append(data)
    return found


FIELDS = {"id", "title", "description", "extends", "controls", "fail_on_inconclusive", "jurisdiction",
          "min_group_cases"}


def _bundled_raw(name: str) -> tuple[str, Any, bytes]:
    """(label, mapping, bytes) of the bundled policy ``name``."""
    label = f"{name}.yaml (bundled)"
    data = (resources.files("audit.policies") / f"{name}.yaml").read_bytes()
    return label, strict_yaml.load(strict_yaml.decode(data, label, PolicyError), label, PolicyError), data


def resolve_extends(raw: Any, label: str, seen: tuple[str, ...] = ()) -> Any:
    """``raw`` with ``extends: NAME`` replaced by the bundled policy NAME's fields, overridden by ``raw``'s own.

    A policy lists only what it changes: its own id, title and description, and every other field it sets
    replaces the base's, except ``controls``, which merge per control (a control's settings update the base's settings of that control, and a control the base
    does not name is added). The base may itself extend another bundled policy.
    """
    if not isinstance(raw, dict) or "extends" not in raw:
        return raw
    base_name = raw["extends"]
    names = bundled_policy_names()
    if not isinstance(base_name, str) or base_name not in names:
        raise PolicyError(f"{label}: extends: must name a bundled policy ({', '.join(names)}), got {base_name!r}")
    if base_name in seen:
        raise PolicyError(f"{label}: extends: {' -> '.join((*seen, base_name))} is a circle")
    base_label, base, _ = _bundled_raw(base_name)
    base = resolve_extends(base, base_label, (*seen, base_name))
    own = {key: value for key, value in raw.items() if key != "extends"}
    inherited = {key: value for key, value in base.items() if key not in ("id", "title", "description")}
    merged = {**inherited, **own}
    if isinstance(own.get("controls"), dict) and isinstance(base.get("controls"), dict):
        merged["controls"] = dict(base["controls"])
        for cid, settings in own["controls"].items():
            inherited = base["controls"].get(cid)
            merged["controls"][cid] = ({**inherited, **settings} if isinstance(settings, dict)
                                       and isinstance(inherited, dict) else settings)
    return merged


def parse_policy(raw: Any, *, label: str, source: str = "", sha256: str = "") -> Policy:
    if not isinstance(raw, dict):
        raise PolicyError(f"{label}: must be a mapping with id and controls")
    check_tree(raw, label, PolicyError)  # a mapping built in Python (or read from a bundle) skipped strict_yaml
    unknown = sorted(set(raw) - FIELDS)
    if unknown:
        raise PolicyError(f"{label}: {unknown[0]}: unknown field{did_you_mean(unknown[0], FIELDS)}")
    raw = resolve_extends(raw, label)
    if not isinstance(raw.get("id"), str) or not raw["id"].strip():
        raise PolicyError(f"{label}: id: is required and must be a string")
    for name in ("title", "description"):
        if raw.get(name) is not None and not isinstance(raw[name], str):
            raise PolicyError(f"{label}: {name}: must be text")
    controls_raw = raw.get("controls")
    if not isinstance(controls_raw, dict) or not controls_raw:
        raise PolicyError(f"{label}: controls: must map control ids to settings")
    controls = {}
    known = registered_controls()
    for cid, settings in controls_raw.items():
        where = f"{label}: controls.{cid}"
        if cid not in known:
            raise PolicyError(f"{where}: unknown control{did_you_mean(cid, known)} (known: {', '.join(known)})")
        if not isinstance(settings, dict):
            raise PolicyError(f"{where}: must be a mapping with a threshold")
        threshold = settings.get("threshold")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise PolicyError(f"{where}.threshold: must be a number")
        out_of_range = known[cid].threshold_problem(float(threshold))
        if out_of_range:
            raise PolicyError(f"{where}.threshold: {out_of_range}")
        blocking = settings.get("blocking", True)
        if not isinstance(blocking, bool):
            raise PolicyError(f"{where}.blocking: must be true or false")
        options = _options(known[cid], {k: v for k, v in settings.items() if k not in ("threshold", "blocking")},
                           where)
        controls[cid] = ControlSettings(threshold=float(threshold), blocking=blocking, options=options)
    fail_on_inconclusive = raw.get("fail_on_inconclusive", False)
    if not isinstance(fail_on_inconclusive, bool):
        raise PolicyError(f"{label}: fail_on_inconclusive: must be true or false")
    min_group_cases = raw.get("min_group_cases", 0)
    if isinstance(min_group_cases, bool) or not isinstance(min_group_cases, int) or min_group_cases < 0:
        raise PolicyError(f"{label}: min_group_cases: must be a whole number of cases, 0 or more")
    jurisdiction = raw.get("jurisdiction")
    if jurisdiction is not None and jurisdiction not in JURISDICTIONS:
        raise PolicyError(f"{label}: jurisdiction: must be one of {', '.join(JURISDICTIONS)}, got {jurisdiction!r}")
    return Policy(
        id=raw["id"],
        title=str(raw.get("title") or raw["id"]),
        description=str(raw.get("description") or ""),
        controls=controls,
        fail_on_inconclusive=fail_on_inconclusive,
        source=source,
        sha256=sha256,
        jurisdiction=jurisdiction,
        min_group_cases=min_group_cases,
    )


def _options(definition, given: dict[str, Any], where: str) -> dict[str, float]:
    """The control's settings beside its threshold: each one the registry defines, given or its default."""
    known = {option.name: option for option in definition.options}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise PolicyError(f"{where}.{unknown[0]}: unknown setting{did_you_mean(unknown[0], set(known))}")
    options = {}
    for name, option in known.items():
        value = given.get(name, option.default)
        if not option.accepts(value):
            raise PolicyError(f"{where}.{name}: must be a number {option.interval_in_words()}")
        options[name] = float(value)
    return options


def judge(measurement: Measurement, threshold: float, direction: str, min_group_cases: int = 0) -> str:
    """Pass, fail or inconclusive by the CI rule; a group smaller than ``min_group_cases`` cannot pass or fail."""
    if measurement.value is None:
        return "not evaluated"
    if measurement.n_cases is not None and measurement.n_cases < min_group_cases:
        return "inconclusive"
    sign = 1 if direction == "max" else -1
    if sign * (measurement.value - threshold) > 0:
        return "fail"
    if measurement.ci is None:
        return "inconclusive"
    edge = measurement.ci[1] if direction == "max" else measurement.ci[0]
    return "pass" if sign * (edge - threshold) <= 0 else "inconclusive"


def reach(measurement: Measurement, direction: str) -> float:
    """How far toward the unsafe side a measurement's interval reaches (its CI edge, else its value)."""
    if measurement.value is None:
        return float("-inf")
    if direction == "max":
        return measurement.ci[1] if measurement.ci else measurement.value
    return -(measurement.ci[0] if measurement.ci else measurement.value)


def evaluate(policy: Policy, evidence: dict[str, Any], statistics_params: dict[str, Any]) -> list[dict[str, Any]]:
    """Measure every control the policy names and decide its status."""
    results = []
    for cid, settings in policy.controls.items():
        definition = registered_controls()[cid]
        measurements = definition.measure(evidence, statistics_params)
        judged = [(judge(m, settings.threshold, definition.direction, policy.min_group_cases), m)
                  for m in measurements]
        if judged:
            status, decisive = max(judged, key=lambda sm: (STATUS_ORDER[sm[0]], reach(sm[1], definition.direction)))
        else:
            status, decisive = "not evaluated", None
        results.append(
            {
                "id": cid,
                "title": definition.title,
                "question": definition.question,
                "metric": definition.metric,
                "direction": definition.direction,
                "unit": definition.unit,
                "threshold": settings.threshold,
                "blocking": settings.blocking,
                "status": status,
                "value": None if decisive is None else decisive.value,
                "ci": None if decisive is None else decisive.ci,
                "decisive": None if decisive is None else decisive.label,
                "decisive_key": None if decisive is None else decisive.key,
                "clauses": list(definition.clauses),
                "measurements": [
                    {"label": m.label, "key": m.key, "value": m.value, "ci": m.ci, "status": s,
                     "detail": m.detail + (f"; fewer than the policy's {policy.min_group_cases} cases per group"
                                           if m.n_cases is not None and m.n_cases < policy.min_group_cases else "")}
                    for s, m in judged
                ],
            }
        )
    return results


def verdict(policy: Policy, controls: list[dict[str, Any]]) -> dict[str, Any]:
    """The audit's verdict from its controls under ``policy`` (see ``verdict_from``)."""
    return verdict_from(controls, policy.fail_on_inconclusive)


def verdict_from(controls: list[dict[str, Any]], fail_on_inconclusive: bool) -> dict[str, Any]:
    """Fail, inconclusive or pass (module docstring), with its exit code.

    ``failed_controls`` are the blocking controls that make the audit fail; ``undecided_controls`` the blocking
    controls that could not be decided (inconclusive or not evaluated), listed whether or not the policy fails
    on them.
    """
    blocking = [c for c in controls if c["blocking"]]
    undecided = [c["id"] for c in blocking if c["status"] in UNDECIDED]
    failing = [c["id"] for c in blocking if c["status"] == "fail" or (fail_on_inconclusive and c["id"] in undecided)]
    status = "fail" if failing else "inconclusive" if undecided else "pass"
    return {
        "status": status,
        "exit_code": EXIT_CODES[status],
        "failed_controls": failing,
        "undecided_controls": undecided,
        "counts": _counts(controls),
    }


def current_verdict(bundle) -> dict[str, Any]:
    """A bundle's verdict by the current rule, from its controls and its recorded policy (what every artifact
    rendered from a bundle shows, whatever rule the bundle was written under)."""
    return verdict_from(bundle.controls, bool(bundle.policy.get("fail_on_inconclusive")))


def verdict_sentence(verdict: dict[str, Any], controls: list[dict[str, Any]]) -> str:
    """The verdict and why, in one sentence: what a CI log and the JUnit suite say. The status is read from
    ``verdict["failed_controls"]`` and the controls, so a stated PASS with an undecided blocking control (a bundle
    before schema 1.6) cannot read PASS here."""
    blocking = [c for c in controls if c["blocking"]]
    failed = [c["id"] for c in blocking if c["status"] == "fail"]
    undecided = {s: [c["id"] for c in blocking if c["status"] == s] for s in UNDECIDED}
    pending = "; ".join(f"{s}: {', '.join(ids)}" for s, ids in undecided.items() if ids)
    n_undecided = sum(map(len, undecided.values()))
    status = "fail" if verdict["failed_controls"] or failed else "inconclusive" if n_undecided else "pass"
    if status == "pass":
        if not blocking:
            return "PASS: the policy makes no control blocking, so no control could fail the audit."
        return f"PASS: all {_controls_phrase(len(blocking))} passed."
    if status == "fail":
        if failed:
            sentence = f"FAIL: {len(failed)} of {_controls_phrase(len(blocking))} failed ({', '.join(failed)})"
            counted = ", which this policy counts as failures" if len(verdict["failed_controls"]) > len(failed) else ""
            return sentence + (f"; {n_undecided} more could not be decided ({pending}){counted}." if n_undecided
                               else ".")
        return (f"FAIL: the policy fails an audit whose blocking controls cannot all be decided, and {n_undecided} "
                f"of {len(blocking)} could not be ({pending}).")
    return (f"INCONCLUSIVE: no blocking control failed, but {n_undecided} of {_controls_phrase(len(blocking))} "
            f"could not be decided ({pending}), so the audit does not clear the model.")


def _controls_phrase(n: int) -> str:
    return "1 blocking control" if n == 1 else f"{n} blocking controls"


def legacy_verdict(policy: Policy, controls: list[dict[str, Any]]) -> dict[str, Any]:
    """The verdict of bundles before schema 1.6: pass unless a blocking control failed (or, under
    ``fail_on_inconclusive``, was inconclusive); a not-evaluated control never counted."""
    failing = [c["id"] for c in controls if c["blocking"] and c["status"] == "fail"]
    if policy.fail_on_inconclusive:
        failing += [c["id"] for c in controls if c["blocking"] and c["status"] == "inconclusive"]
    return {"status": "fail" if failing else "pass", "exit_code": 1 if failing else 0, "failed_controls": failing,
            "counts": _counts(controls)}


def verdict_of_schema(policy: Policy, controls: list[dict[str, Any]], schema_version: str) -> dict[str, Any]:
    """The verdict by the rule a bundle of ``schema_version`` was written under (1.6 brought the inconclusive
    verdict)."""
    major, minor = (int(part) for part in schema_version.split("."))
    return verdict(policy, controls) if (major, minor) >= (1, 6) else legacy_verdict(policy, controls)


def _counts(controls: list[dict[str, Any]]) -> dict[str, int]:
    return {s: sum(c["status"] == s for c in controls) for s in STATUS_ORDER}
