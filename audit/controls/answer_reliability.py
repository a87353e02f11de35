"""The control ``answer-reliability``: decision reliability (answer mass)."""

from __future__ import annotations

from audit.controls.base import ControlDefinition, ControlOption, Measurement, register_control
from audit.wording import plural


MASS_FLOOR = ControlOption(
    "mass_floor", 0.5, 0.0, 1.0, False, False,
    "least answer mass p(favourable) + p(unfavourable) of a reliable decision; a case below it counts as unreliable "
    "(and is left out of the prompt-format comparison)")


def measure_reliability(evidence: dict, params: dict) -> list[Measurement]:
    mass = evidence["fairness"]["answer_mass"]
    return [
        Measurement(
            "all cases", mass["unreliable_share"], mass["unreliable_ci"],
            f"{mass['n_unreliable']} of {plural(evidence['fairness']['n_cases'], 'case')} below answer mass "
            f"{evidence['fairness']['params']['mass_floor']}; mean mass {mass['mean']:.3f}",
        )
    ]


DEFINITION = register_control(ControlDefinition(
    "answer-reliability",
    "Decision reliability (answer mass)",
    "Does the model actually answer Yes or No, so that its decisions can be read at all?",
    "share of cases whose answer mass p(favourable) + p(unfavourable) is below the floor; Wilson 95 % CI",
    "max",
    "share",
    ("eu-ai-act-art-15", "nist-ai-rmf-measure-2.5"),
    measure_reliability,
    threshold_range=(0.0, 1.0),
    summary="share of cases with answer mass below `mass_floor`",
    remedy=(
        "The model often does not answer with the decision words: change the prompt format or answer "
        "prefix (see prompt-format sensitivity), or use an instruction-tuned model, and audit again."
    ),
    to_decide="Run more cases: the share's Wilson interval narrows with the number of cases.",
    if_not_evaluated="Score at least one case.",
    options=(MASS_FLOOR,),
))
