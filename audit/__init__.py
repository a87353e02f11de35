"""oss-model-audit: explainability and compliance audits of open-source transformer models.

``audit.run(...)`` is the whole audit as one call; the ``audit`` CLI is a thin
layer over it.
"""

__version__ = "0.1.0"


def run(**kwargs):
    """Run an audit; see ``audit.pipeline.run`` for the parameters."""
    from audit.pipeline import run as run_pipeline

    return run_pipeline(**kwargs)
