"""Model specs, loading with fingerprints, and the task adapters explainers see.

The names below are imported on first use (PEP 562), so ``audit.models.spec`` (and the command line's help)
reads without loading torch and transformers.
"""

from importlib import import_module

_EXPORTS = {
    "Adapter": "adapters", "ClassifierAdapter": "adapters", "DecisionAdapter": "adapters", "Encoded": "adapters",
    "make_adapter": "adapters", "LoadedModel": "loading", "load_model": "loading",
    "ModelSpec": "spec", "parse_model_spec": "spec",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'audit.models' has no attribute {name!r}")
    return getattr(import_module(f"audit.models.{_EXPORTS[name]}"), name)
