"""Regulatory test sets: YAML schema, validation and counterfactual expansion."""

from audit.suites.expand import Case, expand
from audit.suites.schema import Suite, parse_suite
from audit.suites.loader import bundled_suite_names, load_suite

__all__ = ["Case", "expand", "Suite", "bundled_suite_names", "load_suite", "parse_suite"]
