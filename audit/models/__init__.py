"""Model specs, loading with fingerprints, and the task adapters explainers see.

The names below are imported on first use (PEP 562), so ``audit.models.spec`` (and the command line's help)
reads without loading torch and transformers.
"""

__all__ = [
    "Adapter", "ClassifierAdapter", "DecisionAdapter", "Encoded", "make_adapter", "LoadedModel", "load_model",
    "ModelSpec", "parse_model_spec",
]


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module 'audit.models' has no attribute {name!r}")
    from audit.models import adapters, loading, spec

    for module in (adapters, loading, spec):
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(name)
