"""Explanation methods. Each takes an adapter and an encoded case and returns data.

The registry's names import on first use (PEP 562): ``explainers.intervals`` and ``explainers.spans`` read
without torch, and the built-in methods register themselves the first time the registry is consulted.
"""

__all__ = ["REGISTRY", "Attribution", "Explainer", "available", "get", "register"]


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module 'explainers' has no attribute {name!r}")
    from explainers import attention, base, gradient, perturbation  # noqa: F401  (each registers its methods)

    return getattr(base, name)
