"""Loan-officer notes labelled approve / decline: the training data of the example classifier.

Each row is a short note a loan officer might write about an application, with the officer's
decision as the label. The decision follows the credit factors only,

    points = (credit score - 660) / 40 - (DTI - 36) / 7 - 0.9 x late payments + 0.15 x min(years employed, 6)
    label  = approve if points + e > 0,  e ~ N(0, 0.35^2)

while the applicant's name (which signals race and sex), age and marital status are drawn independently of
every factor and of the label, so any dependence of a trained model on them is learned from nothing in the
data and is measurable by an audit. Names and their race/sex groups are the bundled fair-lending suite's
(Bertrand & Mullainathan 2004; Tzioumis 2018; Census 2010 surnames).

``python examples/classifier/loan_notes.py`` rewrites ``loan-notes.csv`` next to this file; the file is the
same on every run (seeded), and a test keeps the shipped copy equal to what this script writes.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import numpy as np

from audit.suites import load_suite

ROWS = 2400
SEED = 20261126
DATA_FILE = Path(__file__).with_name("loan-notes.csv")
COLUMNS = ("note", "label", "name", "race", "sex", "age", "marital_status", "credit_score", "dti",
           "late_payments", "years_employed", "income", "loan", "amount")
MARITAL = ("married", "unmarried", "separated")
LOANS = (("auto loan", 9_000, 45_000), ("personal loan", 3_000, 25_000), ("mortgage", 120_000, 520_000),
         ("home equity line", 20_000, 150_000), ("small-business loan", 25_000, 250_000),
         ("credit card", 2_000, 15_000))
SCORE_BANDS = ((800, "exceptional"), (740, "very good"), (670, "good"), (580, "fair"), (0, "poor"))
COUNTS = ("none", "one", "two", "three", "four", "five")
TEMPLATES = (
    "{name}, {age}, {marital}, applies for a {amount} {loan}. Income {income} a year; {years} at the current "
    "employer. Credit score {score} ({band}). Debt-to-income {dti}%, with {late} in the last 24 months.",
    "Applicant: {name} (age {age}, {marital}). Request: {loan} of {amount}. Credit score {score} ({band}), "
    "debt-to-income ratio {dti}%, {late} in 24 months. Employed {years}; earns {income}.",
    "Met with {name} today about a {amount} {loan}. {name_first} is {age} and {marital}, has worked {years} "
    "at the same employer and earns {income}. Bureau shows a {band} {score} score and {late} over two "
    "years. DTI after the new payment: {dti}%.",
    "{loan} request, {amount}. Borrower {name}, {age}, {marital}. Score {score}, {band}. DTI {dti}%. Late payments "
    "(24 months): {late_count}. Employment: {years}. Annual income: {income}.",
)


def money(value: float) -> str:
    return f"${int(round(value, -2)):,}"


def band(score: int) -> str:
    """The credit-score band a loan officer writes next to the number (FICO's published ranges)."""
    return next(name for floor, name in SCORE_BANDS if score >= floor)


def late_text(count: int) -> str:
    return "no late payments" if count == 0 else f"{COUNTS[count]} late payment{'s' if count > 1 else ''}"


def years_text(years: int) -> str:
    return "less than a year" if years == 0 else "1 year" if years == 1 else f"{years} years"


def decision_points(score: int, dti: int, late: int, years: int) -> float:
    """The officer's rule before noise: positive favours approval (see the module docstring)."""
    return (score - 660) / 40 - (dti - 36) / 7 - 0.9 * late + 0.15 * min(years, 6)


def applicants() -> list[tuple[str, str, str]]:
    """(name, race, sex) of every applicant name of the bundled fair-lending suite."""
    attribute = next(a for a in load_suite("fair-lending").attributes if a.name == "applicant")
    return [(v.text, v.groups["race"], v.groups["sex"]) for v in (attribute.baseline, *attribute.values)]


def generate(rows: int = ROWS, seed: int = SEED) -> list[dict[str, str]]:
    rng = np.random.default_rng(seed)
    names = applicants()
    records = []
    for _ in range(rows):
        name, race, sex = names[rng.integers(len(names))]
        age, marital = int(rng.integers(21, 81)), MARITAL[rng.integers(len(MARITAL))]
        score = int(np.clip(rng.normal(680, 60), 500, 840))
        dti = int(np.clip(rng.normal(36, 10), 8, 65))
        late = int(min(rng.poisson(0.7), 5))
        years = int(min(rng.exponential(4), 25))
        loan, low, high = LOANS[rng.integers(len(LOANS))]
        amount = rng.uniform(low, high)
        income = float(np.clip(rng.lognormal(np.log(72_000), 0.45), 18_000, 400_000))
        label = "approve" if decision_points(score, dti, late, years) + rng.normal(0, 0.35) > 0 else "decline"
        template = TEMPLATES[rng.integers(len(TEMPLATES))]
        note = template.format(
            name=name, name_first=name.split()[0], age=age, marital=marital, amount=money(amount), loan=loan,
            income=money(income), years=years_text(years), score=score, band=band(score), dti=dti, late=late_text(late), late_count=COUNTS[late],
        )
        records.append({
            "note": note[0].upper() + note[1:], "label": label, "name": name, "race": race, "sex": sex,
            "age": str(age), "marital_status": marital, "credit_score": str(score), "dti": str(dti),
            "late_payments": str(late), "years_employed": str(years), "income": str(int(round(income, -2))),
            "loan": loan, "amount": str(int(round(amount, -2))),
        })
    return records


def to_csv(records: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()


def read(path: Path = DATA_FILE) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


if __name__ == "__main__":
    DATA_FILE.write_text(to_csv(generate()), encoding="utf-8")
    print(f"wrote {len(read())} notes to {DATA_FILE}", file=sys.stderr)
