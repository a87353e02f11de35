"""The one place that orders the stages of an audit.

    validate inputs -> load model -> expand suite -> score every case
    -> counterfactual statistics -> internals (probes, logit lens) -> attributions -> adverse-action reasons
    -> controls -> bundle -> report

Every input is checked before the model is loaded, and nothing is written
until the bundle and its report exist in memory, so bad input or a crash
leaves no partial output. The one exception is the per-case results cache
(``audit.evidence.results_cache``), written as results finish, so an interrupted run
resumes and a re-run costs nothing.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audit import __version__
from audit.stages.bias_audit import DEFINITIONS as BIAS_AUDIT_DEFINITIONS
from audit.stages.bias_audit import bias_audit_tables
from audit.report.artifacts import ATTESTATION_FILE, RENDERED_FILES, audit_files
from audit.stages.discrimination_score import mixed_effects_discrimination
from audit.errors import AuditError
from audit.stages.attribution import parse_methods, run_explainers
from audit.evidence.bundle import SCHEMA_VERSION, EvidenceBundle, utc_now
from audit.evidence.files import check_output_dir, check_output_file, write_atomically, write_outputs
from audit.evidence.environment import environment
from audit.stages.counterfactual import case_records, counterfactual_statistics
from audit.options import (
    DEFAULT_IG_MAX_STEPS, DEFAULT_IG_STEPS, DEFAULT_OUT, DEFAULT_SUITE, FORMAT_MODES, JURISDICTIONS, PATCHED_PAIRS,
    check_seed, check_steps,
)
from audit.stages.prompt_formats import sensitivity
from audit.stages.prompt_formats import variants as format_variants
from audit.stages.internals import internals
from audit.report.junit import JUNIT_FILE
from audit.models import DEFAULT_MODEL, load_model, make_adapter, parse_model_spec
from audit.models.loading import check_runtime, check_weights
from audit.controls.policy import evaluate, load_policy, verdict
from audit.progress import Progress, Stages, cache_counter
from audit.stages.reasons import adverse_action_reasons
from audit.regulations import clauses_for, load_catalog
from audit.evidence.results_cache import open_cache
from audit.evidence.revision import tool_revision
from audit.stages.scoring import score_cases
from audit.suites import expand, load_suite
from audit.suites.rows import apply_rows
from audit.suites.schema import Suite
from audit.wording import plural
from explainers.hidden import HiddenStateRecorder, answer_and_slot_positions



@dataclass
class AuditResult:
    bundle: EvidenceBundle
    paths: dict[str, Path]

    @property
    def exit_code(self) -> int:
        return self.bundle.verdict["exit_code"]


def run(
    *,
    model: str = DEFAULT_MODEL,
    suite: str = DEFAULT_SUITE,
    rows: str | None = None,
    policy: str | None = None,
    out: str | Path = DEFAULT_OUT,
    limit: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    device_map: str | None = None,
    dtype: str = "float32",
    ig_steps: int = DEFAULT_IG_STEPS,
    ig_tolerance: float | None = None,
    ig_max_steps: int = DEFAULT_IG_MAX_STEPS,
    methods: str | None = None,
    patching_pairs: int | None = PATCHED_PAIRS,
    jurisdiction: str | None = None,
    format_sensitivity: str = "baselines",
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    render: bool = True,
    command_line: list[str] | None = None,
    quiet: bool = False,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    junit: str | Path | None = None,
) -> AuditResult:
    """Audit ``model`` on ``suite`` under ``policy`` and write the evidence to ``out``.

    ``cache``: reuse and store per-case results in ``cache_dir`` (default: see ``audit.evidence.results_cache``).
    ``junit``: a second copy of ``junit.xml`` (always written into ``out``) where a CI job collects it.
    """
    started_at, started = utc_now(), time.monotonic()
    timings: dict[str, float] = {}
    out = Path(out)
    if limit is not None and limit < 1:
        raise AuditError(f"--limit: must be at least 1, got {limit}")
    check_seed(seed)
    check_steps("--ig-steps", ig_steps, least=2)
    if ig_tolerance is not None and not 0 < ig_tolerance < 1:
        raise AuditError(f"--ig-tolerance: must be a fraction between 0 and 1 (0.05 = 5 %), got {ig_tolerance}")
    if ig_tolerance is not None:
        check_steps("--ig-max-steps", ig_max_steps, least=ig_steps, least_text=f"--ig-steps ({ig_steps})")
    ig_options = {"n_steps": ig_steps}
    if ig_tolerance is not None:
        ig_options.update(tolerance=ig_tolerance, max_steps=ig_max_steps)
    if patching_pairs is not None and patching_pairs < 1:
        raise AuditError(f"--patching-pairs: must be at least 1 or 'all', got {patching_pairs}")
    check_runtime(device, dtype)
    check_output_dir(out)
    if junit is not None:
        check_output_file(Path(junit), "--junit")
    spec = parse_model_spec(model)
    check_weights(spec, allow_pickle)
    the_suite = load_suite(suite) if rows is None else apply_rows(load_suite(suite), rows)
    the_policy = load_policy(policy, suite_id=the_suite.id)
    if format_sensitivity not in FORMAT_MODES:
        raise AuditError(f"--format-sensitivity: must be one of {', '.join(FORMAT_MODES)}, got {format_sensitivity!r}")
    if jurisdiction is not None and jurisdiction not in JURISDICTIONS:
        raise AuditError(f"--jurisdiction: must be one of {', '.join(JURISDICTIONS)}, got {jurisdiction!r}")
    chosen_methods = parse_methods(methods)
    results_cache = open_cache(cache, cache_dir, quiet=quiet)
    _seed_everything(seed)

    with Stages(stage_names(the_suite, format_sensitivity, render), quiet=quiet,
                cache_counts=cache_counter(results_cache)) as stages:
        stage = time.monotonic()
        stages.begin("load model", f"loading model {spec.text} ({spec.kind})")
        loaded = load_model(
            spec, device=device, dtype=dtype, device_map=device_map, allow_pickle=allow_pickle,
            trust_remote_code=trust_remote_code, log=stages.note,
        )
        adapter = make_adapter(loaded, the_suite)
        timings["load_model"] = time.monotonic() - stage

        stage = time.monotonic()
        cases = expand(the_suite, limit)
        encoded = [adapter.encode(case) for case in cases]
        stages.begin("scoring", f"scoring {plural(len(encoded), 'case')}")
        progress = Progress("scoring", len(encoded), quiet=quiet)
        recorder = HiddenStateRecorder(adapter, answer_and_slot_positions(adapter, slots=set()))
        scores, masses = score_cases(adapter, encoded, results_cache, progress=progress, recorder=recorder)
        progress.close()
        records = case_records(encoded, scores, masses)
        timings["score_cases"] = time.monotonic() - stage

        stage = time.monotonic()
        stages.begin("statistics", "counterfactual statistics with bootstrap confidence intervals")
        mass_floor = the_policy.option("answer-reliability", "mass_floor")
        fairness = counterfactual_statistics(the_suite, records, seed=seed, mass_floor=mass_floor)
        fairness["bias_audit"] = {"definitions": BIAS_AUDIT_DEFINITIONS,
                                  "tables": bias_audit_tables(the_suite, records, seed=seed)}
        if the_suite.raw.get("format") == "discrim-eval":
            fairness["mixed_effects"] = mixed_effects_discrimination(records)
        timings["statistics"] = time.monotonic() - stage

        stage = time.monotonic()
        if "prompt formats" in stages.names:
            formats = format_variants(the_suite, reads_prompt=loaded.family != "classifier")
            n_cases = len(cases) if format_sensitivity == "full" else sum(c.is_baseline for c in cases)
            stages.begin("prompt formats", f"scoring {plural(n_cases, 'case')} in each of {len(formats)} prompt formats"
                         if len(formats) > 1 else "no other prompt format applies to this model",
                         parts=[(n_cases, "cases")] * len(formats))
        robustness = sensitivity(
            loaded, the_suite, mode=format_sensitivity, limit=limit, seed=seed, make_adapter=make_adapter,
            mass_floor=mass_floor, cache=results_cache,
            progress_factory=lambda label, n: Progress(label.removeprefix("prompt format "), n, quiet=quiet),
        )
        timings["prompt_formats"] = time.monotonic() - stage

        stage = time.monotonic()
        stages.begin("internals", "reading the logit lens, probing hidden states and patching activations",
                     parts=[(None, "cases"), (None, "probe layers"), (None, "pairs")])
        by_id = {e.case.case_id: e for e in encoded}
        inside = internals(adapter, recorder.states, records, the_suite, by_id, seed=seed,
                           patching_pairs=patching_pairs, quiet=quiet, cache=results_cache)
        del recorder  # the hidden states are summarised: free them before attribution
        timings["internals"] = time.monotonic() - stage

        stage = time.monotonic()
        stages.begin("attribution", f"attributing decisions to words ({', '.join(chosen_methods)}), then checking "
                     "how far the attributions can be trusted", parts=[(None, "method x case runs"), (None, "steps")])
        attributions = run_explainers(adapter, by_id, records, chosen_methods, ig_options=ig_options, seed=seed,
                                      quiet=quiet, cache=results_cache)
        timings["attribution"] = time.monotonic() - stage

        stage = time.monotonic()
        adverse_action = None  # a test set without legitimate factors (an imported benchmark) has no reasons to give
        if the_suite.factors:
            stages.begin("reasons", "principal reasons of every declined case")
            adverse_action = adverse_action_reasons(
                adapter, by_id, records, chosen_methods, list(the_suite.factors), attributions,
                ig_options=ig_options, seed=seed,
                stability_floor=the_policy.option("adverse-action-reasons", "stability_floor"),
                protected_floor=the_policy.option("adverse-action-reasons", "protected_floor"),
                quiet=quiet, cache=results_cache,
            )
        timings["reasons"] = time.monotonic() - stage

    evidence = {"fairness": fairness, "attributions": attributions, "adverse_action": adverse_action,
                "internals": inside, "robustness": robustness}
    controls = evaluate(the_policy, evidence, fairness["params"])
    outcome = verdict(the_policy, controls)
    clause_ids = [*the_suite.clauses, *(c for control in controls for c in control["clauses"])]
    timings["total"] = time.monotonic() - started
    bundle = EvidenceBundle(
        schema_version=SCHEMA_VERSION,
        tool={"name": "oss-model-audit", "version": __version__, "revision": tool_revision()},
        run={
            "started_at": started_at,
            "finished_at": utc_now(),
            "durations_s": {k: round(v, 3) for k, v in timings.items()},
            "limit": limit,
            "jurisdiction": jurisdiction or the_policy.jurisdiction,
            "result_cache": results_cache.summary(),
            "loading": {"allow_pickle": allow_pickle, "trust_remote_code": trust_remote_code,
                        "hub_offline": os.environ.get("HF_HUB_OFFLINE") == "1"},
            "placement": {"device": device, "device_map": device_map, "dtype": dtype,
                          "scores": "float32 log-softmax of the model's logits, whatever the weights' dtype",
                          "out_of_memory_splits": list(loaded.budget.splits)},
            "environment": environment(seed=seed, device=device, dtype=dtype, command_line=command_line),
        },
        model=loaded.fingerprint,
        suite=suite_summary(the_suite, limit),
        policy=the_policy.to_dict(),
        decision={**adapter.describe(), "example_prompt": encoded[0].prompt},
        cases=records,
        fairness=fairness,
        attributions=attributions,
        controls=controls,
        verdict=outcome,
        clauses=[{**c, "catalog_as_of": load_catalog()["as_of"]} for c in clauses_for(clause_ids)],
        adverse_action=adverse_action,
        internals=inside,
        robustness=robustness,
    )
    if render:
        stages.begin("report", "rendering report")
    files = audit_files(bundle, report=render)
    paths = write_outputs(out, files, stale=(*RENDERED_FILES, ATTESTATION_FILE))
    if junit is not None:
        write_atomically(Path(junit), files[JUNIT_FILE])
        paths["junit"] = Path(junit)
    return AuditResult(bundle=bundle, paths=paths)


def stage_names(suite: Suite, format_sensitivity: str, render: bool) -> list[str]:
    """The stages this run executes, in order: what the progress lines number (``[stage 2/8 scoring]``).

    Left out: prompt formats under ``--format-sensitivity off`` or for a suite that fixes its own prompt, reasons
    for a suite without legitimate factors, the report when nothing is rendered."""
    names = ["load model", "scoring", "statistics"]
    if format_sensitivity != "off" and format_variants(suite):
        names.append("prompt formats")
    names += ["internals", "attribution"]
    if suite.factors:
        names.append("reasons")
    if render:
        names.append("report")
    return names


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def suite_summary(suite: Suite, limit: int | None) -> dict[str, Any]:
    used = suite.scenarios if limit is None else suite.scenarios[:limit]
    return {
        "id": suite.id,
        "title": suite.title,
        "version": suite.version,
        "description": suite.description,
        "domain": suite.domain,
        "source": suite.source,
        "sha256": suite.sha256,
        "question": suite.question,
        "answer_prefix": suite.answer_prefix,
        "system_prompt": suite.system_prompt,
        "answers": {"favourable": list(suite.answers.favourable), "unfavourable": list(suite.answers.unfavourable)},
        "baseline": suite.baseline,
        "factors": list(suite.factors),
        "clauses": list(suite.clauses),
        "attributes": [
            {
                "name": a.name,
                "protected": list(a.protected),
                "description": a.description,
                "baseline": {"text": a.baseline.text, "groups": a.baseline.groups, "source": a.baseline.source},
                "values": [{"text": v.text, "groups": v.groups, "source": v.source} for v in a.values],
                "sources": list(a.sources),
            }
            for a in suite.attributes
        ],
        "scenarios": [{"id": s.id, "title": s.title, "template": s.template, "values": s.values} for s in used],
        "n_scenarios_total": len(suite.scenarios),
        "n_scenarios_used": len(used),
    }
