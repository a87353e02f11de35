"""A third party's explainer, installed through the entry-point group ``oss_model_audit.explainers``, is found by
name and held to the same checks as the built-in methods; one that cannot be used is refused by name.

Each test writes a throwaway distribution (a module and a ``*.dist-info`` folder with ``METADATA`` and
``entry_points.txt``) into a temporary folder and puts that folder on ``sys.path``, as ``pip install`` would.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import explainers
from audit.suites import expand
from explainers.base import ENTRY_POINT_GROUP, EntryPointError
from explainers.checks import check_explainer

TOY_MODULE = '''
"""A toy method outside oss-model-audit: every case-text token gets an equal share of the decision score."""

import torch

from explainers.base import BaseExplainer, counted, make_attribution
from explainers.region import Region


class Toy(BaseExplainer):
    name = "toy"
    title = "Equal shares (third-party toy)"
    descriptive = False
    signed = True
    stochastic = False

    def __init__(self, scale: float = 1.0):
        self.scale = scale

    @counted
    def explain(self, adapter, encoded, region=None):
        with torch.no_grad():
            region = region or Region.of(adapter, encoded)  # a perturbed region is read
            score = float(region.forward(region.region)[0])
        n = len(encoded.tokens)
        return make_attribution(self.name, self.params, encoded, [self.scale * score / n] * n, score=score)


class Nameless:
    name = "nameless"

    def explain(self, adapter, encoded, region=None):
        raise NotImplementedError
'''


def install(folder: Path, module: str, entries: dict[str, str], monkeypatch) -> None:
    """A distribution in ``folder`` holding ``module`` (the toy source) and ``entries`` (name -> value) in the
    explainers' entry-point group, put on ``sys.path``; its module is forgotten again after the test."""
    folder.mkdir()
    (folder / f"{module}.py").write_text(TOY_MODULE)
    dist = folder / f"{module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entries.items())
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, module, raising=False)


def test_an_installed_explainer_is_found_by_name_and_passes_the_checks(adapters, tmp_path):
    adapter = adapters["causal-lm"]
    with pytest.MonkeyPatch.context() as patch:
        install(tmp_path / "site", "toy_explainers", {"toy": "toy_explainers:Toy"}, patch)
        toy = explainers.get("toy", scale=2.0)
        assert type(toy).__module__ == "toy_explainers" and toy.get_params() == {"scale": 2.0}
        assert "toy" in explainers.available() and "ig" in explainers.available()
        check_explainer(toy, adapter, adapter.encode(expand(adapter.suite, limit=1)[3]))
    assert "toy" not in explainers.available(), "gone once its folder has left sys.path"


@pytest.mark.parametrize(("name", "value", "message"), [
    ("toy", "missing_module:Toy", r"toy = missing_module:Toy .*cannot be loaded \(ModuleNotFoundError"),
    ("toy", "{module}:Absent", r"toy = {module}:Absent .*cannot be loaded \(AttributeError"),
    ("toy", "{module}:Nameless", r"toy = {module}:Nameless .*lacks the explainer protocol's title, descriptive"),
    ("not-toy", "{module}:Toy", r"not-toy = {module}:Toy .*the class is named 'toy'"),
], ids=["no-module", "no-class", "no-protocol", "other-name"])
def test_an_entry_point_that_cannot_be_used_is_refused_by_name(tmp_path, monkeypatch, request, name, value, message):
    module = f"broken_explainers_{request.node.callspec.id.replace('-', '_')}"
    install(tmp_path / "site", module, {name: value.format(module=module)}, monkeypatch)
    with pytest.raises(EntryPointError, match=message.format(module=module)):
        explainers.get("ig")
    with pytest.raises(EntryPointError, match=ENTRY_POINT_GROUP):
        explainers.available()
