"""The example classifier's training data: reproducible, labelled by the credit factors, blind to protected ones."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import chi2_contingency, mannwhitneyu

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples" / "classifier"))
import loan_notes  # noqa: E402


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    return loan_notes.read()


def test_the_shipped_file_is_what_the_generator_writes(rows):
    assert loan_notes.DATA_FILE.read_text(encoding="utf-8") == loan_notes.to_csv(loan_notes.generate())
    assert len(rows) == loan_notes.ROWS


@pytest.mark.parametrize("column", ["race", "sex", "marital_status", "name"])
def test_protected_columns_are_independent_of_the_label(rows, column):
    values = sorted({r[column] for r in rows})
    table = np.array([[sum(r[column] == v and r["label"] == label for r in rows) for label in ("approve", "decline")]
                      for v in values])
    assert chi2_contingency(table).pvalue > 0.01


def test_age_is_independent_of_the_label(rows):
    approved = [int(r["age"]) for r in rows if r["label"] == "approve"]
    declined = [int(r["age"]) for r in rows if r["label"] == "decline"]
    assert mannwhitneyu(approved, declined).pvalue > 0.01


def test_the_label_follows_the_credit_factors(rows):
    agree = [
        (loan_notes.decision_points(int(r["credit_score"]), int(r["dti"]), int(r["late_payments"]),
                                    int(r["years_employed"])) > 0) == (r["label"] == "approve")
        for r in rows
    ]
    assert np.mean(agree) > 0.9


def test_every_note_states_its_factors_and_its_applicant(rows):
    for r in rows[:200]:
        assert r["name"] in r["note"] and r["credit_score"] in r["note"] and f"{r['dti']}%" in r["note"]
