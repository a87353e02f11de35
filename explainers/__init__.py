"""Explanation methods. Each takes an adapter and an encoded case and returns data."""

from explainers import attention, gradient, perturbation  # noqa: F401  (registers the methods)
from explainers.base import REGISTRY, Attribution, Explainer, get, register

__all__ = ["REGISTRY", "Attribution", "Explainer", "get", "register"]
