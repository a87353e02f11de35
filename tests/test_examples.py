"""Every example suite and policy shipped in examples/ is valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit.controls.policy import load_policy
from audit.suites import expand, load_suite

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(
    "path", sorted([*(EXAMPLES / "suites").glob("*.yaml"), *(EXAMPLES / "classifier").glob("*.yaml")]), ids=lambda p: p.name
)
def test_example_suite_is_valid(path):
    suite = load_suite(str(path))
    assert expand(suite)


@pytest.mark.parametrize("path", sorted((EXAMPLES / "policies").glob("*.yaml")), ids=lambda p: p.name)
def test_example_policy_is_valid(path):
    assert load_policy(str(path)).controls


def test_the_suite_guide_shows_the_example_suite_as_it_is():
    guide = (EXAMPLES.parent / "docs" / "suites.md").read_text()
    example = (EXAMPLES / "suites" / "credit-line-review.yaml").read_text()
    shown = guide.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert shown == example


def test_the_policy_guide_lists_every_control():
    from audit.controls.registry import CONTROLS

    guide = (EXAMPLES.parent / "docs" / "policies.md").read_text()
    assert all(f"`{cid}`" in guide for cid in CONTROLS)
