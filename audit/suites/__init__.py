"""Regulatory test sets: the YAML schema and its validation (``schema``), where a suite comes from (``loader``:
bundled, a file, or a discrim-eval JSONL through ``discrim_eval``), the bank's own rows (``rows``) and the
counterfactual expansion into cases (``expand``)."""

from audit.suites.expand import Case, expand
from audit.suites.schema import Suite, parse_suite
from audit.suites.loader import bundled_suite_names, load_suite

__all__ = ["Case", "expand", "Suite", "bundled_suite_names", "load_suite", "parse_suite"]
