"""The clause catalog: regulatory clauses that controls and suites cite, with their status."""

from audit.regulations.catalog import clauses_for, load_catalog

__all__ = ["clauses_for", "load_catalog"]
