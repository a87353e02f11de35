"""The evidence bundle and its files: the bundle's dataclasses and JSON Schema checks, atomic writes,
the manifest, the environment record, the tool's source revision and the per-case results cache.
"""
