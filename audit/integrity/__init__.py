"""Is this audit folder the evidence the tool wrote? ``verify`` re-derives and re-renders it,
``attestation`` states what a folder holds and checks a statement, ``signing`` signs it (and depends on ``verify``, never the reverse), ``diff`` compares two bundles.
Nothing here imports torch or loads a model.
"""
