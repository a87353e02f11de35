"""examples/ci/github-actions.yml: valid YAML, and every `audit` command in it parses with today's CLI."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from audit.cli import main

WORKFLOW = Path(__file__).parents[1] / "examples" / "ci" / "github-actions.yml"


def audit_commands(script: str) -> list[str]:
    """The `audit ...` command lines of a step's shell script, continuation lines joined."""
    joined = script.replace("\\\n", " ")
    return [line.strip()[len("audit "):] for line in joined.splitlines() if line.strip().startswith("audit ")]


def shell_words(arguments: str, env: dict[str, str]) -> list[str]:
    """The words bash makes of ``arguments`` under ``env`` (quotes, ${VAR:+...} and all)."""
    script = f"printf '%s\\0' {arguments}"
    found = subprocess.run(["bash", "-c", script], env={**os.environ, **env}, capture_output=True, check=True)
    return found.stdout.decode().split("\0")[:-1]


def test_every_audit_command_of_the_workflow_parses():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    job = workflow["jobs"]["audit"]
    env = {**workflow["env"], "POLICY": "policy.yaml", "RUNNER_TEMP": "/tmp", "GITHUB_REPOSITORY": "bank/model",
           "GITHUB_SHA": "0123456789abcdef"}
    env = {key: str(value) for key, value in env.items()}
    commands = [words for step in job["steps"] if "run" in step
                for line in audit_commands(step["run"]) for words in [shell_words(line, env)]]
    assert {words[0] for words in commands} >= {"run", "sign", "verify"}
    for words in commands:
        context = main.make_context("audit", list(words), resilient_parsing=False)
        name, command, rest = main.resolve_command(context, list(words))
        command.make_context(name, rest, parent=context)  # raises click.UsageError on a flag the CLI lacks
    run = next(words for words in commands if words[0] == "run")
    assert "--policy" in run and "--junit" in run
