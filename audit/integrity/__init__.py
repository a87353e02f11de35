"""Is this audit folder the evidence the tool wrote? ``verify`` re-derives and re-renders it,
``signing`` attests it (and depends on ``verify``, never the reverse), ``diff`` compares two bundles.
Nothing here imports torch or loads a model.
"""
