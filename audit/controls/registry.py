"""The registry of controls: the built-in ones, one module each, then those a third party installs.

A third party's control is one module holding a ``ControlDefinition`` (``audit.controls.base``), named in the
entry-point group ``oss_model_audit.controls`` of its distribution, plus its entry in a policy::

    [project.entry-points."oss_model_audit.controls"]
    loan-to-value-shift = "my_bank.controls:LOAN_TO_VALUE_SHIFT"

The built-in modules register themselves when imported, in the order of the default policy.
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points

from audit.controls import (  # each registers its control when imported
    counterfactual_shift, impact_ratio, decision_flip_rate, protected_attribution_share, answer_reliability,
    attribution_completeness, attribution_faithfulness, adverse_action_reasons, protected_span_mediation,
    protected_readout_encoding, prompt_format_stability,
)
from audit.controls.base import CONTROLS, ControlDefinition, register_control
from audit.errors import AuditError

BUILT_IN = (  # the built-in controls' modules, in the order they register (that of the default policy)
    counterfactual_shift, impact_ratio, decision_flip_rate, protected_attribution_share, answer_reliability,
    attribution_completeness, attribution_faithfulness, adverse_action_reasons, protected_span_mediation,
    protected_readout_encoding, prompt_format_stability,
)

CONTROL_ENTRY_POINTS = "oss_model_audit.controls"  # a third party's control: name = ControlDefinition (module:attr)


@functools.cache
def _load_entry_points() -> None:
    for entry in entry_points(group=CONTROL_ENTRY_POINTS):
        origin = f"entry point {entry.name} = {entry.value} ({CONTROL_ENTRY_POINTS})"
        try:
            definition = entry.load()
        except Exception as exc:  # a third party's module: any failure is named, never a crash
            raise AuditError(f"{origin}: cannot be loaded ({type(exc).__name__}: {exc})") from None
        register_control(definition, origin=origin)


def registered_controls() -> dict[str, ControlDefinition]:
    """Every control a policy may name: the built-in ones and those installed through the entry-point group
    ``oss_model_audit.controls`` (each a ``ControlDefinition``; loaded the first time this is called)."""
    _load_entry_points()
    return CONTROLS


def range_in_words(low: float | None, high: float | None) -> str:
    """A threshold range as docs/policies.md writes it: "any", "0 or more", "0 to 1"."""
    if low is None and high is None:
        return "any"
    if high is None:
        return f"{low:g} or more"
    if low is None:
        return f"{high:g} or less"
    return f"{low:g} to {high:g}"


def controls_table() -> str:
    """The table of controls in docs/policies.md (Markdown), written from the registry: ``audit policy controls``
    prints it, with the controls a third party installed, and a test holds the document to it."""
    lines = ["| control | value | direction | threshold range | options |", "|---|---|---|---|---|"]
    for definition in registered_controls().values():
        options = ", ".join(f"`{option.name}` ({option.default:g})" for option in definition.options)
        lines.append(f"| `{definition.id}` | {definition.summary or definition.title} | "
                     f"at {'most' if definition.direction == 'max' else 'least'} | "
                     f"{range_in_words(*definition.threshold_range)} | {options} |".replace("|  |", "| |"))
    return "\n".join(lines) + "\n"
