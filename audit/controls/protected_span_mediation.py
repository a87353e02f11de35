"""The control ``protected-span-mediation``: share of the group gap carried by the protected words."""

from __future__ import annotations

from audit.controls.base import ControlDefinition, Measurement, register_control
from audit.wording import plural


def measure_mediation(evidence: dict, params: dict) -> list[Measurement]:
    """The mediated fraction of activation patching (``explainers.patching.summarise_patching``): the mean over
    patched pairs of NIE at the output of the first decoder layer, with its bootstrap CI over pairs."""
    patching = (evidence.get("internals") or {}).get("patching")
    if not patching or not patching["pairs"]:
        return []
    summary = patching["summary"]
    mediated = summary["mediated_fraction"]
    if mediated["mean"] is None:
        pairs = "the one patched pair" if summary["n_pairs"] == 1 else f"all {summary['n_pairs']} patched pairs"
        return [
            Measurement(
                "patched pairs", None, None,
                f"{pairs} moved the decision by less than "
                f"{patching['total_effect_floor']} log-odds: there is no gap to mediate",
            )
        ]
    peak = summary["peak_layer"]
    return [
        Measurement(
            plural(mediated['n_pairs'], 'patched pair'), mediated["mean"],
            None if mediated["ci"] is None else tuple(mediated["ci"]),
            f"{plural(summary['n_pairs'], 'pair')} patched, {summary['n_pairs_total_effect_below_floor']} below the total-effect "
            f"floor; the largest mean share is carried at decoder layer {peak}",
        )
    ]


DEFINITION = register_control(ControlDefinition(
    "protected-span-mediation",
    "Share of the group gap carried by the protected words",
    "When a protected attribute changes the decision, how much of that change still flows through the "
    "protected words themselves after the model's first layer, where it could be read directly, rather "
    "than through what the rest of the application says?",
    "activation patching (Vig et al. 2020; Meng et al. 2022): mean over counterfactual pairs of the normalised "
    "indirect effect of the attribute span's states at the output of the first decoder layer, patched from "
    "the counterfactual into the baseline run; pairs whose decision moved by less than the total-effect "
    "floor are left out; 95 % bootstrap CI over pairs",
    "max",
    "share",
    ("ecoa-reg-b-1002.4a", "eu-ai-act-art-13", "nist-ai-rmf-measure-2.9"),
    measure_mediation,
    threshold_range=(0.0, 1.0),
    summary="share of a counterfactual gap carried by the protected words after layer 0",
    remedy=(
        "Locate the layers that carry the gap (inside the model) and test whether removing the protected "
        "words' information there closes it."
    ),
    to_decide="Patch more pairs (--patching-pairs) from more scenarios.",
    if_not_evaluated="Patch at least one counterfactual pair whose decision moved (--patching-pairs, more scenarios).",
))
