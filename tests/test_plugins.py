"""A third party's explainer and control, installed through entry points, run through `audit run` and verify.

The toy distribution lives in a temporary folder (a module and a ``*.dist-info`` with ``entry_points.txt``), on
``PYTHONPATH`` of the ``audit`` processes only, as ``pip install`` would put it on ``sys.path``: nothing of it is
inside ``audit`` or ``explainers``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TOY_MODULE = '''
"""A bank's own method and control, outside oss-model-audit."""

from audit.controls.base import ControlDefinition, Measurement
from explainers.base import BaseExplainer, counted, make_attribution
from explainers.region import Region


class EqualShares(BaseExplainer):
    """Known answer: every case-text token carries an equal share of the decision score, so the shares sum to
    the score (complete by construction) and no word stands out."""

    name = "bank-equal-shares"
    title = "Equal shares (the bank's baseline method)"
    descriptive = False
    signed = True
    stochastic = False

    def __init__(self, share_of_score: float = 1.0):
        self.share_of_score = share_of_score

    @counted
    def explain(self, adapter, encoded, region=None):
        start, end = encoded.region
        region = region or Region.of(adapter, encoded)  # a perturbed region is read
        score = float(region.forward(region.region)[0])
        share = self.share_of_score * score / (end - start)
        return make_attribution(self.name, self.params, encoded, [share] * (end - start), score=score)


def measure_explained_cases(evidence, params):
    methods = {m["name"]: m for m in evidence["attributions"]["comparison"]["methods"]}
    cases = methods["bank-equal-shares"]["cases"] if "bank-equal-shares" in methods else []
    share = len(cases) / 100  # a count, not an estimate: its interval is the value itself
    return [Measurement("comparison cases", share, (share, share), f"{len(cases)} cases explained")]


EXPLAINED = ControlDefinition(
    "bank-explained-cases", "Cases the bank's method explained", "Did the bank's own method explain the cases?",
    "comparison cases explained by bank-equal-shares / 100", "min", "share", ("nist-ai-rmf-measure-2.9",),
    measure_explained_cases, (0.0, None), summary="cases explained by the bank's method, in hundreds")
'''

ENTRY_POINTS = """\
[oss_model_audit.explainers]
bank-equal-shares = bank_audit_plugins:EqualShares

[oss_model_audit.controls]
bank-explained-cases = bank_audit_plugins:EXPLAINED
"""


@pytest.fixture
def plugin_path(tmp_path) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "bank_audit_plugins.py").write_text(TOY_MODULE)
    dist = folder / "bank_audit_plugins-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bank-audit-plugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    return folder


def audit_cli(*args, plugins: Path | None, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(plugins) if plugins else "", env.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-c", "from audit.cli import main; main()", *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True)


def test_a_third_party_explainer_and_control_run_through_audit_run_and_verify(plugin_path, tiny_llama_dir,
                                                                              tmp_path):
    policy = tmp_path / "bank-policy.yaml"
    policy.write_text(textwrap.dedent("""\
        id: bank
        extends: default
        controls:
          bank-explained-cases: {threshold: 0.01, blocking: true}
    """))
    out = tmp_path / "audit-out"
    ran = audit_cli("run", "--model", tiny_llama_dir, "--limit", "1", "--ig-steps", "2", "--methods",
                    "ig,bank-equal-shares", "--format-sensitivity", "off", "--patching-pairs", "1", "--policy", policy,
                    "--out", out, "--no-cache", plugins=plugin_path, cwd=tmp_path)
    assert ran.returncode in (0, 1, 4), ran.stderr
    bundle = json.loads((out / "bundle.json").read_text())
    methods = {m["name"]: m for m in bundle["attributions"]["comparison"]["methods"]}
    assert methods["bank-equal-shares"]["cases"], "the bank's method explained no case"
    for case in methods["bank-equal-shares"]["cases"]:
        assert sum(case["word_scores"]) == pytest.approx(case["score"], abs=1e-5)  # its known answer
    [control] = [c for c in bundle["controls"] if c["id"] == "bank-explained-cases"]
    assert control["status"] == "pass" and control["blocking"]
    assert "bank-explained-cases" in ran.stdout

    verified = audit_cli("verify", out, plugins=plugin_path, cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    without = audit_cli("verify", out, plugins=None, cwd=tmp_path)
    assert without.returncode == 2
    assert "bank-explained-cases" in without.stderr and len(without.stderr.strip().splitlines()) == 1


def test_the_third_party_explainer_passes_the_shipped_conformance_checks(plugin_path, adapters, monkeypatch):
    """What a bank runs on its own method before installing it: ``explainers.checks.check_explainer``."""
    from explainers.checks import check_explainer

    monkeypatch.syspath_prepend(str(plugin_path))
    import explainers

    assert "bank-equal-shares" in explainers.available()
    encoded = adapters["causal-lm"].encode(_first_case())
    check_explainer(explainers.REGISTRY["bank-equal-shares"], adapters["causal-lm"], encoded)
    sys.modules.pop("bank_audit_plugins", None)


def _first_case():
    from audit.suites import expand, load_suite

    return expand(load_suite("fair-lending"), 1)[0]
