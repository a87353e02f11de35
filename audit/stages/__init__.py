"""The audit's stages, in the order ``audit.pipeline`` runs them: scoring, counterfactual statistics,
bias-audit tables, the discrimination score, prompt-format sensitivity, internals, attribution, trust and
adverse-action reasons. Each stage computes evidence from an adapter and the suite's cases; none renders.
"""
