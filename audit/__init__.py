"""oss-model-audit: explainability and compliance audits of open-source transformer models.

``audit.run(...)`` is the whole audit as one call; the ``audit`` CLI is a thin
layer over it.
"""

import os

# No network at run time: huggingface_hub reads this when first imported, so it is set before anything imports
# it. A hub id is audited from the local cache only (fetch it first with `huggingface-cli download`).
os.environ["HF_HUB_OFFLINE"] = "1"

from audit.cpu_threads import size_torch_threads  # noqa: E402

size_torch_threads()  # before anything imports torch: as many threads as this process may run on

from audit.evidence.revision import TOOL_VERSION as __version__  # noqa: E402

__all__ = ["__version__", "run"]


def run(**flags):
    """Run an audit: the keyword arguments are the fields of ``audit.options.RunOptions`` (the flags of
    ``audit run``); see ``audit.pipeline.run``."""
    from audit.options import RunOptions
    from audit.pipeline import run as run_pipeline

    return run_pipeline(RunOptions(**flags))
