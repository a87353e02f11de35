"""Explanation methods. Each takes an adapter and an encoded case and returns data.

The registry's names import on first use (PEP 562): ``explainers.intervals`` and ``explainers.spans`` read
without torch, and the built-in methods register themselves the first time the registry is consulted.
"""

from importlib import import_module

BUILT_IN_MODULES = ("attention", "gradient", "perturbation")  # each registers its methods when imported
__all__ = ["REGISTRY", "Attribution", "Explainer", "available", "get", "register"]


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module 'explainers' has no attribute {name!r}")
    for module in BUILT_IN_MODULES:
        import_module(f"explainers.{module}")
    return getattr(import_module("explainers.base"), name)
