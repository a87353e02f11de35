"""Bundled audit policies (YAML)."""
