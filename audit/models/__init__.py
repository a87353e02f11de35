"""Model specs, loading with fingerprints, and the task adapters explainers see."""

from audit.models.adapters import Adapter, ClassifierAdapter, DecisionAdapter, Encoded, make_adapter
from audit.models.loading import LoadedModel, load_model
from audit.models.spec import DEFAULT_MODEL, ModelSpec, parse_model_spec

__all__ = [
    "Adapter", "ClassifierAdapter", "DecisionAdapter", "Encoded", "make_adapter",
    "LoadedModel", "load_model", "DEFAULT_MODEL", "ModelSpec", "parse_model_spec",
]
