"""The clause catalog: regulatory clauses that controls and suites cite, with their status."""

from audit.regulations.catalog import applies_in, clauses_for, has_force, load_catalog

__all__ = ["applies_in", "clauses_for", "has_force", "load_catalog"]
