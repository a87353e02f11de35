"""The one place that orders the stages of an audit.

    validate inputs -> load model -> expand suite -> score every case
    -> counterfactual statistics -> prompt formats -> internals (probes, logit lens, patching)
    -> attributions -> adverse-action reasons -> controls -> bundle -> report

Every input is checked before the model is loaded (``audit.options.RunOptions`` checks the flags, ``prepare``
what needs the file system), and nothing is written until the bundle and its report exist in memory, so bad
input or a crash leaves no partial output. The one exception is the per-case results cache
(``audit.evidence.results_cache``), written as results finish, so an interrupted run resumes and a re-run costs
nothing.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from audit.controls.policy import Policy, evaluate, load_policy, verdict
from audit.evidence.bundle import SCHEMA_VERSION, EvidenceBundle, utc_now
from audit.evidence.environment import environment, peak_memory_bytes, reset_peak_memory
from audit.evidence.files import check_output_dir, check_output_file, write_atomically, write_outputs
from audit.evidence.results_cache import ResultsCache, open_cache
from audit.evidence.revision import TOOL_NAME, TOOL_VERSION, tool_revision
from audit.models import load_model, make_adapter, parse_model_spec
from audit.models.loading import check_runtime, check_weights
from audit.models.spec import ModelSpec
from audit.options import RunOptions
from audit.progress import Progress, Stages, cache_counter
from audit.regulations import clauses_for, load_catalog
from audit.report.folder import ATTESTATION_FILE, RENDERED_FILES
from audit.report.artifacts import audit_files
from audit.report.junit import JUNIT_FILE
from audit.stages.attribution import parse_methods, run_explainers
from audit.stages.bias_audit import DEFINITIONS as BIAS_AUDIT_DEFINITIONS
from audit.stages.bias_audit import bias_audit_tables
from audit.stages.counterfactual import case_records, counterfactual_statistics
from audit.stages.discrimination_score import mixed_effects_discrimination
from audit.stages.internals import internals
from audit.stages.prompt_formats import sensitivity
from audit.stages.prompt_formats import variants as format_variants
from audit.stages.reasons import adverse_action_reasons
from audit.stages.scoring import score_cases
from audit.suites import expand, load_suite
from audit.suites.rows import apply_rows
from audit.suites.schema import Suite
from audit.wording import plural
from explainers.base import seed_everything
from explainers.generation import Meter
from explainers.hidden import HiddenStateRecorder, answer_and_slot_positions


@dataclass
class AuditResult:
    bundle: EvidenceBundle
    paths: dict[str, Path]

    @property
    def exit_code(self) -> int:
        return self.bundle.verdict["exit_code"]


@dataclass(frozen=True)
class Plan:
    """What the options name, read and checked before the model loads."""

    spec: ModelSpec
    suite: Suite
    policy: Policy
    methods: list[str]
    cache: ResultsCache


def prepare(options: RunOptions) -> Plan:
    """The device, the output paths, the model spec, the suite (with the bank's rows), the policy, the methods
    and the results cache, each checked in turn: the first bad one is the error, before anything loads."""
    check_runtime(options.device, options.dtype)
    check_output_dir(options.out)
    if options.junit is not None:
        check_output_file(Path(options.junit), "--junit")
    spec = parse_model_spec(options.model, options.base_model)
    check_weights(spec, options.allow_pickle)
    suite = load_suite(options.suite)
    if options.rows is not None:
        suite = apply_rows(suite, options.rows)
    return Plan(spec=spec, suite=suite, policy=load_policy(options.policy, suite_id=suite.id),
                methods=parse_methods(options.methods), cache=open_cache(options.cache, options.cache_dir,
                                                                         quiet=options.quiet))


def run(options: RunOptions) -> AuditResult:
    """Audit ``options.model`` on ``options.suite`` under ``options.policy`` and write the evidence to
    ``options.out`` (``audit.run(**flags)`` builds the options from keyword arguments)."""
    reset_peak_memory()
    started_at, started = utc_now(), time.monotonic()
    plan = prepare(options)
    seed_everything(options.seed)
    audit = Audit(options, plan)
    with Stages(stage_names(plan.suite, options.format_sensitivity, options.render), quiet=options.quiet,
                cache_counts=cache_counter(plan.cache)) as audit.stages:
        audit.load_model()
        recorder = audit.score()
        audit.statistics()
        audit.prompt_formats()
        audit.read_internals(recorder)
        del recorder  # the hidden states are summarised: free them before attribution
        audit.attribute()
        audit.give_reasons()
    audit.timings["total"] = time.monotonic() - started
    bundle = audit.bundle(started_at)
    if options.render:
        audit.stages.begin("report", "rendering report")
    files = audit_files(bundle, report=options.render)
    paths = write_outputs(options.out, files, stale=(*RENDERED_FILES, ATTESTATION_FILE))
    if options.junit is not None:
        write_atomically(Path(options.junit), files[JUNIT_FILE])
        paths["junit"] = Path(options.junit)
    return AuditResult(bundle=bundle, paths=paths)


@dataclass
class Audit:
    """One audit in progress: each method is one stage and stores what the later stages and the bundle read."""

    options: RunOptions
    plan: Plan
    stages: Stages | None = None
    timings: dict[str, float] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)

    work: dict[str, dict[str, int]] = field(default_factory=dict)

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """The stage's wall time and, once the model is loaded, the token positions its forward passes computed
        (``explainers.generation.Meter``), with and without gradients: what ``benchmarks/run.py`` converts to
        seconds at the machine's forward rate to state each stage's efficiency."""
        start = time.monotonic()
        adapter = getattr(self, "adapter", None)
        with Meter(adapter.model) if adapter is not None else contextlib.nullcontext() as meter:
            yield
        self.timings[name] = time.monotonic() - start
        if meter is not None:
            self.work[name] = {"tokens": meter.tokens, "gradient_tokens": meter.gradient_tokens}

    def load_model(self) -> None:
        spec, options = self.plan.spec, self.options
        with self.timed("load_model"):
            self.stages.begin("load model", f"loading model {spec.text} ({spec.kind})")
            self.loaded = load_model(
                spec, device=options.device, dtype=options.dtype, device_map=options.device_map,
                allow_pickle=options.allow_pickle, trust_remote_code=options.trust_remote_code, log=self.stages.note,
            )
            self.adapter = make_adapter(self.loaded, self.plan.suite)

    def score(self) -> HiddenStateRecorder:
        """Score every case, recording the hidden states the internals stage reads."""
        with self.timed("score_cases"):
            self.cases = expand(self.plan.suite, self.options.limit)
            self.encoded = [self.adapter.encode(case) for case in self.cases]
            self.stages.begin("scoring", f"scoring {plural(len(self.encoded), 'case')}")
            progress = Progress("scoring", len(self.encoded), quiet=self.options.quiet)
            recorder = HiddenStateRecorder(self.adapter, answer_and_slot_positions(self.adapter, slots=set()))
            scores, masses = score_cases(self.adapter, self.encoded, self.plan.cache, progress=progress,
                                         recorder=recorder)
            progress.close()
            self.records = case_records(self.encoded, scores, masses)
            self.by_id = {e.case.case_id: e for e in self.encoded}
        return recorder

    def statistics(self) -> None:
        suite, seed = self.plan.suite, self.options.seed
        with self.timed("statistics"):
            self.stages.begin("statistics", "counterfactual statistics with bootstrap confidence intervals")
            fairness = counterfactual_statistics(suite, self.records, seed=seed, mass_floor=self.mass_floor)
            fairness["bias_audit"] = {"definitions": BIAS_AUDIT_DEFINITIONS,
                                      "tables": bias_audit_tables(suite, self.records, seed=seed)}
            if suite.raw.get("format") == "discrim-eval":
                fairness["mixed_effects"] = mixed_effects_discrimination(self.records)
            self.evidence["fairness"] = fairness

    @property
    def mass_floor(self) -> float:
        return self.plan.policy.option("answer-reliability", "mass_floor")

    def prompt_formats(self) -> None:
        options, suite = self.options, self.plan.suite
        with self.timed("prompt_formats"):
            if "prompt formats" in self.stages.names:
                formats = format_variants(suite, reads_prompt=self.loaded.family != "classifier")
                n_cases = (len(self.cases) if options.format_sensitivity == "full"
                           else sum(c.is_baseline for c in self.cases))
                self.stages.begin("prompt formats", f"scoring {plural(n_cases, 'case')} in each of {len(formats)} "
                                  "prompt formats" if len(formats) > 1 else
                                  "no other prompt format applies to this model",
                                  parts=[(n_cases, "cases")] * len(formats))
            self.evidence["robustness"] = sensitivity(
                self.loaded, suite, mode=options.format_sensitivity, limit=options.limit, seed=options.seed,
                make_adapter=make_adapter, mass_floor=self.mass_floor, cache=self.plan.cache,
                progress_factory=lambda label, n: Progress(label.removeprefix("prompt format "), n,
                                                           quiet=options.quiet),
            )

    def read_internals(self, recorder: HiddenStateRecorder) -> None:
        options = self.options
        with self.timed("internals"):
            self.stages.begin("internals", "reading the logit lens, probing hidden states and patching activations",
                              parts=[(None, "cases"), (None, "probe layers"), (None, "pairs")])
            self.evidence["internals"] = internals(
                self.adapter, recorder.states, self.records, self.plan.suite, self.by_id, seed=options.seed,
                patching_pairs=options.patching_pairs, quiet=options.quiet, cache=self.plan.cache)

    def attribute(self) -> None:
        methods = self.plan.methods
        with self.timed("attribution"):
            self.stages.begin("attribution", f"attributing decisions to words ({', '.join(methods)}), then "
                              "checking how far the attributions can be trusted",
                              parts=[(None, "method x case runs"), (None, "steps")])
            self.evidence["attributions"] = run_explainers(
                self.adapter, self.by_id, self.records, methods, ig_options=self.options.ig_options,
                seed=self.options.seed, quiet=self.options.quiet, cache=self.plan.cache)

    def give_reasons(self) -> None:
        """Principal reasons of every declined case; a test set without legitimate factors (an imported
        benchmark) has no reasons to give."""
        suite, policy, options = self.plan.suite, self.plan.policy, self.options
        with self.timed("reasons"):
            self.evidence["adverse_action"] = None
            if suite.factors:
                self.stages.begin("reasons", "principal reasons of every declined case")
                self.evidence["adverse_action"] = adverse_action_reasons(
                    self.adapter, self.by_id, self.records, self.plan.methods, list(suite.factors),
                    self.evidence["attributions"], ig_options=options.ig_options, seed=options.seed,
                    stability_floor=policy.option("adverse-action-reasons", "stability_floor"),
                    protected_floor=policy.option("adverse-action-reasons", "protected_floor"),
                    quiet=options.quiet, cache=self.plan.cache,
                )

    def bundle(self, started_at: str) -> EvidenceBundle:
        """The evidence bundle: the controls judged under the policy, the verdict, and every record of the run."""
        options, plan, evidence = self.options, self.plan, self.evidence
        evidence = {key: evidence[key] for key in ("fairness", "attributions", "adverse_action", "internals",
                                                   "robustness")}
        controls = evaluate(plan.policy, evidence, evidence["fairness"]["params"])
        clause_ids = [*plan.suite.clauses, *(c for control in controls for c in control["clauses"])]
        return EvidenceBundle(
            schema_version=SCHEMA_VERSION,
            tool={"name": TOOL_NAME, "version": TOOL_VERSION, "revision": tool_revision()},
            run=self.run_record(started_at),
            model=self.loaded.fingerprint,
            suite=suite_summary(plan.suite, options.limit),
            policy=plan.policy.to_dict(),
            decision={**self.adapter.describe(), "example_prompt": self.encoded[0].prompt},
            cases=self.records,
            controls=controls,
            verdict=verdict(plan.policy, controls),
            clauses=[{**c, "catalog_as_of": load_catalog()["as_of"]} for c in clauses_for(clause_ids)],
            **evidence,
        )

    def run_record(self, started_at: str) -> dict[str, Any]:
        """When and how the audit ran: durations, limit, jurisdiction, cache, loading, placement, environment."""
        options = self.options
        return {
            "started_at": started_at,
            "finished_at": utc_now(),
            "durations_s": {k: round(v, 3) for k, v in self.timings.items()},
            "work": self.work,
            "limit": options.limit,
            "jurisdiction": options.jurisdiction or self.plan.policy.jurisdiction,
            "result_cache": self.plan.cache.summary(),
            "loading": {"allow_pickle": options.allow_pickle, "trust_remote_code": options.trust_remote_code,
                        "hub_offline": os.environ.get("HF_HUB_OFFLINE") == "1"},
            "placement": {"device": options.device, "device_map": options.device_map, "dtype": options.dtype,
                          "scores": "float32 log-softmax of the model's logits, whatever the weights' dtype",
                          "out_of_memory_splits": list(self.loaded.budget.splits)},
            "environment": environment(seed=options.seed, device=options.device, dtype=options.dtype,
                                       command_line=options.command_line),
            "peak_memory_bytes": peak_memory_bytes(),
        }


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
        "prompt_template": suite.prompt_template,
        "prompt_harness": suite.raw.get("harness"),
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
