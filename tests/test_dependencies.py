"""The declared dependency floors are the tested ones: the environment the suite runs in meets each."""
import importlib.metadata
import re
import tomllib

from packaging.requirements import Requirement
from packaging.version import Version

from conftest import REPO


def declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]


def test_every_floor_is_met_by_the_installed_version():
    reqs = declared()
    assert {"torch", "transformers", "datasets", "pandas"} <= {r.name for r in reqs}
    for r in reqs:
        installed = Version(importlib.metadata.version(r.name))
        assert r.specifier.contains(installed, prereleases=True), f"{r.name} {installed} does not meet {r}"
        floors = [Version(s.version) for s in r.specifier if s.operator == ">="]
        assert floors or any(s.operator == "==" for s in r.specifier), f"{r} declares no floor"


def test_transformers_floor_is_a_5x_release_with_what_the_code_calls():
    """4.x lacks from_pretrained(dtype=) and GELUTanh; the fused path would quietly switch off."""
    import inspect

    from transformers import GPT2LMHeadModel, activations
    (tf,) = [r for r in declared() if r.name == "transformers"]
    (floor,) = [Version(s.version) for s in tf.specifier if s.operator == ">="]
    assert floor.major >= 5
    assert "logits_to_keep" in inspect.signature(GPT2LMHeadModel.forward).parameters
    assert hasattr(activations, "GELUTanh")
    assert re.fullmatch(r">=3\.\d+", tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"])
