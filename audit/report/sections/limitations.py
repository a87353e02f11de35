"""The report's limitations: caveats computed from this run's data, then the fixed caveats of the test's design.

``scope_limits`` picks the few that matter most for the first page. Every count in a caveat is the bundle's,
and a caveat about an interval is stated only where such an interval exists.
"""

from __future__ import annotations

from audit.evidence.bundle import EvidenceBundle
from audit.report.numbers import NBSP, fmt_parameters, fmt_pct
from audit.report.phrases import counterfactual_groups, selection_phrase, threshold_of
from audit.wording import noun, plural

COMPLETENESS_CONTROL = "attribution-completeness"
SMALL_MODEL_PARAMETERS = 1_000_000_000
FEW_SCENARIOS = 10
FEW_CASES = 30


def limitations(bundle: EvidenceBundle) -> list[str]:
    """Caveats drawn from the data, followed by the fixed caveats of the design."""
    fairness = bundle.fairness
    items = [limit for limit in (coverage_limit(bundle), interval_limit(bundle)) if limit]
    small = [g for _, g in counterfactual_groups(bundle) if g["n_counterfactual"] < FEW_CASES and g["flip_ci"]]
    if small:
        fewest = min(g["n_counterfactual"] for g in small)
        widest = max(g["flip_ci"][1] for g in small)
        items.append(
            f"{'One group has' if len(small) == 1 else 'Some groups have'} few counterfactual cases (as few as "
            f"{fewest}), so {'its' if len(small) == 1 else 'their'} flip-rate intervals are wide: "
            f"the upper end of a 95{NBSP}% flip-rate interval reaches {fmt_pct(widest)}."
        )
    mass = fairness["answer_mass"]
    generative = bundle.decision.get("family", "causal-lm") == "causal-lm"
    if generative and mass["n_unreliable"]:
        items.append(
            f"{plural(mass['n_unreliable'], 'case')} ({fmt_pct(mass['unreliable_share'])}) put less than "
            f"{fmt_pct(fairness['params']['mass_floor'], 0)} of the next-token probability on the answer words; "
            "their decisions are weakly determined and their scores less meaningful."
        )
    if generative:
        items.append(
            f"The model put on average {fmt_pct(mass['mean'])} (minimum {fmt_pct(mass['min'])}) of its next-token "
            "probability on the answer words; the decision score compares those words only and ignores the rest."
        )
    if fairness["baseline_approval_rate"] in (0.0, 1.0):
        word = "approved" if fairness["baseline_approval_rate"] == 1.0 else "declined"
        which = "The one baseline application" if fairness["n_scenarios"] == 1 else "Every baseline application"
        items.append(
            f"{which} was {word}; approval rates and impact ratios can then only move if a "
            "counterfactual flips the decision, so the log-odds shift is the more sensitive measure here."
        )
    items.extend(attribution_limitations(bundle))
    items += [limit for limit in (model_size_limit(bundle),) if limit]
    items.extend(FIXED_LIMITATIONS)
    return items


def scope_limits(bundle: EvidenceBundle) -> list[str]:
    """The scope limits that matter most, for the first page: coverage, intervals, model size, and the design's
    first limit (disparate treatment in synthetic applications, not impact on a real population)."""
    found = [coverage_limit(bundle), interval_limit(bundle), model_size_limit(bundle)]
    return [limit for limit in found if limit] + [FIXED_LIMITATIONS[0]]


def coverage_limit(bundle: EvidenceBundle) -> str | None:
    """Which part of the suite ran, where ``--limit`` left scenarios out."""
    suite, run = bundle.suite, bundle.run
    if suite["n_scenarios_used"] >= suite["n_scenarios_total"]:
        return None
    flag = f" (--limit {run['limit']})" if run.get("limit") is not None else ""
    return (f"Only {suite['n_scenarios_used']} of the suite's {plural(suite['n_scenarios_total'], 'scenario')} "
            f"{noun(suite['n_scenarios_used'], 'was')} run{flag}; the results do not cover the others.")


def interval_limit(bundle: EvidenceBundle) -> str | None:
    """How far the bootstrap intervals over scenarios can be trusted, from how many there are and whether any
    could be computed at all."""
    fairness = bundle.fairness
    n = fairness["n_scenarios"]
    if n >= FEW_SCENARIOS:
        return None
    groups = [g for a in fairness["analyses"] for g in a["groups"]]
    if not any(g.get("shift_ci") or g.get("impact_ci") for g in groups):
        return (f"With {plural(n, 'scenario')} no bootstrap interval over scenarios could be computed, so no "
                "counterfactual-shift or impact-ratio measurement can pass: each can only fail on its point estimate "
                "or stay inconclusive.")
    return (f"Bootstrap intervals are computed over {plural(n, 'scenario')}. With fewer than {FEW_SCENARIOS} "
            "resampling units a bootstrap interval is unstable and tends to be too narrow, so passes that rest on "
            "these intervals are weak evidence.")


def model_size_limit(bundle: EvidenceBundle) -> str | None:
    """A caveat for a model too small to stand for a production model."""
    parameters = bundle.model.get("parameters") or 0
    if not parameters or parameters >= SMALL_MODEL_PARAMETERS:
        return None
    return (f"The audited model has {fmt_parameters(parameters)} parameters. Models of this size follow instructions "
            "loosely; treat the results as a demonstration of the method rather than as evidence about a "
            "production-grade model.")


def attribution_limitations(bundle: EvidenceBundle) -> list[str]:
    """Caveats on the attributions: non-random selection and completeness gaps."""
    cases = bundle.attributions["cases"]
    if not cases:
        return ["No case was attributed, so the explainability controls have no evidence."]
    items = [
        f"Attributions cover {plural(len(cases), 'selected case')} ({selection_phrase(bundle.attributions)}), not a "
        "random sample; averages over them lean toward cases where the decision moved most."
    ]
    threshold = threshold_of(bundle, COMPLETENESS_CONTROL)
    gaps = []
    for case in cases:
        if case["convergence_delta"] is not None and case["reference_score"] is not None:
            gaps.append(case["convergence_delta"] / max(abs(case["score"] - case["reference_score"]), 1e-6))
    if threshold is not None and gaps:
        over = sum(g > threshold for g in gaps)
        if over:
            params = bundle.attributions["params"]
            steps = params.get("max_steps") or params.get("n_steps")
            items.append(
                f"For {over} of {plural(len(gaps), 'attributed case')} the attribution scores miss the score difference they "
                f"explain by more than {fmt_pct(threshold, 0)} (completeness gap); those attributions are "
                f"approximate{f', and more integration steps than {steps} would reduce the gap' if steps else ''}."
            )
    return items


FIXED_LIMITATIONS = (
    "The test changes one protected characteristic at a time in short synthetic applications and measures "
    "disparate treatment by the model. It does not measure disparate impact on a real applicant population, "
    "interactions between characteristics other than those a single value carries, or the model's behaviour "
    "inside the deployer's full decision process.",
    "Names are a noisy proxy for race/ethnicity and sex; a shift for a group of names can reflect reactions to "
    "particular names as much as to the group.",
    "Attributions show how sensitive the decision score is to each word relative to a reference input, not why "
    "the model decided as it did; they are not a causal explanation and not by themselves adverse-action reasons.",
    "The decision score is read from the answer-word probabilities at one position with a fixed prompt, answer "
    "prefix and threshold of zero; other prompts, wordings or cut-offs can give different results.",
    "The regulatory crosswalk maps controls to clauses as evidence for a compliance review; it is not legal "
    "advice and does not establish compliance with any regulation.",
)
