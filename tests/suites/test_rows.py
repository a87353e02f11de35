"""Own applications as scenarios: rows of a CSV or JSONL file rendered through a suite's one template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit.errors import SuiteError
from audit.suites import expand, load_suite
from audit.suites.rows import apply_rows

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rows"


@pytest.fixture
def template():
    return load_suite(str(EXAMPLE / "credit-line-template.yaml"))


def test_every_row_is_a_scenario_with_every_counterfactual(template):
    suite = apply_rows(template, str(EXAMPLE / "applications.csv"))
    assert [s.id for s in suite.scenarios] == [f"app-{n}" for n in range(1001, 1007)]
    cases = expand(suite)
    assert len(cases) == 6 * (1 + 3 + 2)
    bakery = next(c for c in cases if c.case_id == "app-1001/baseline")
    assert "owns a bakery trading for 9 years" in bakery.text and "$640,000" in bakery.text
    assert suite.sha256 != template.sha256 and suite.raw["rows"]["n_rows"] == 6


def test_jsonl_rows_without_ids_are_numbered_and_the_rows_file_changes_the_hash(template, tmp_path):
    rows = [{"business": "a bakery", "line": "$1", "revenue": "$2", "utilisation": "3%", "years trading": "4 years"}]
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text(json.dumps(rows[0]) + "\n")
    second.write_text(json.dumps({**rows[0], "revenue": "$9"}) + "\n")
    suite = apply_rows(template, str(first))
    assert [s.id for s in suite.scenarios] == ["row-1"]
    assert apply_rows(template, str(second)).sha256 != suite.sha256


@pytest.mark.parametrize(
    "content, message",
    [
        ("id,business,line,revenue,utilisation\nx,a,b,c,d\n", "apps.csv: column 'years trading' is missing"),
        ("id,business,line,revenue,utilisation,years trading\nx,a,b,,d,e\n",
         "apps.csv: row 1: column 'revenue' is empty"),
        ("id,business,line,revenue,utilisation,years trading\nx,a,b,c,d,e\nx,a,b,c,d,e\n",
         "apps.csv: row 2: id 'x' is not a unique identifier"),
        ("id,business\n", "apps.csv: has no rows"),
    ],
)
def test_bad_rows_name_the_file_row_and_column(template, tmp_path, content, message):
    path = tmp_path / "apps.csv"
    path.write_text(content)
    with pytest.raises(SuiteError, match=f"^{message}"):
        apply_rows(template, str(path))


def test_rows_need_an_existing_table_and_a_one_scenario_suite(template, tmp_path):
    with pytest.raises(SuiteError, match="--rows: file .* does not exist"):
        apply_rows(template, str(tmp_path / "none.csv"))
    (tmp_path / "apps.xlsx").write_text("x")
    with pytest.raises(SuiteError, match="--rows: apps.xlsx: must be a .csv or .jsonl file"):
        apply_rows(template, str(tmp_path / "apps.xlsx"))
    with pytest.raises(SuiteError, match="must have exactly one scenario.*has 12"):
        apply_rows(load_suite("fair-lending"), str(EXAMPLE / "applications.csv"))


def test_a_csv_saved_by_excel_with_a_byte_order_mark_keeps_its_id_column(template, tmp_path):
    """Excel's "CSV UTF-8" starts the file with U+FEFF; the first column must still be found by its name."""
    excel = tmp_path / "excel.csv"
    excel.write_bytes(b"\xef\xbb\xbf" + (EXAMPLE / "applications.csv").read_bytes().replace(b"\n", b"\r\n"))
    plain = apply_rows(template, str(EXAMPLE / "applications.csv"))
    assert [s.id for s in apply_rows(template, str(excel)).scenarios] == [s.id for s in plain.scenarios]
    assert [s.values for s in apply_rows(template, str(excel)).scenarios] == [s.values for s in plain.scenarios]


def test_names_in_persian_and_hindi_keep_their_zero_width_joiners(template, tmp_path):
    """ZWNJ and ZWJ spell words (Persian, Devanagari, emoji) and reorder nothing: they are not refused."""
    rows = tmp_path / "rows.csv"
    rows.write_text("id,business,line,revenue,utilisation,years trading\n"
                    "a-1,\u0645\u06cc\u200c\u062e\u0627\u0646\u0647 cafe,$1,$2,3%,4 years\n"
                    "a-2,\u0915\u094d\u200d\u0937 traders,$1,$2,3%,4 years\n", encoding="utf-8")
    suite = apply_rows(template, str(rows))
    assert "\u200c" in suite.scenarios[0].values["business"] and "\u200d" in suite.scenarios[1].values["business"]
