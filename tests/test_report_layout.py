"""Layout and wording of the report body: chart legends key only what is drawn, long labels wrap instead of squeezing
the plot, jargon is defined where the running text first uses it, shares are percentages beside percentages."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from audit.report import charts
from audit.report.charts import ELLIPSIS, LABEL_CHARS, LABEL_LINES, MIN_PLOT_SHARE, ShiftRow, fit_label

SVG = "{http://www.w3.org/2000/svg}"
LONG = "employment and public assistance (Social Security Disability Insurance)"
WIDE = "WWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWW MMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMM"  # the widest glyphs there are


def _tree(svg) -> ET.Element:
    return ET.fromstring(str(svg))


def _by_id(root: ET.Element, prefix: str) -> list[ET.Element]:
    return [e for e in root.iter() if (e.get("id") or "").startswith(prefix)]


def _texts(element: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in element.iter(f"{SVG}text")]


def _legend(svg, salt: str) -> list[str]:
    found = [e for e in _tree(svg).iter() if e.get("id") == f"{salt}-legend"]
    assert len(found) == 1, "the chart has one legend, marked with its id"
    return _texts(found[0])


def _plot_shares(svg) -> list[float]:
    """Width of every plot area (the axes' background patch) as a share of the figure's width."""
    root = _tree(svg)
    width = float(root.get("viewBox").split()[2])
    shares = []
    for axes in root.iter(f"{SVG}g"):
        if not re.fullmatch(r"axes_\d+", axes.get("id") or ""):
            continue
        patch = next(g for g in axes if (g.get("id") or "").startswith("patch_"))
        numbers = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", patch.find(f"{SVG}path").get("d"))]
        xs = numbers[0::2]
        shares.append((max(xs) - min(xs)) / width)
    assert shares, "the SVG has plot areas"
    return shares


# ---------------------------------------------------------------- labels


@pytest.mark.parametrize("text", [LONG, WIDE, "race x sex = white x female (vs white x male)", "x" * 200])
def test_a_long_label_wraps_at_the_width_and_is_cut_with_an_ellipsis(text):
    label = fit_label(text)
    lines = label.split("\n")
    assert len(lines) <= LABEL_LINES
    assert all(len(line) <= LABEL_CHARS for line in lines), lines
    fits = len(text) <= LABEL_CHARS or len(" ".join(lines)) == len(text)
    assert label.endswith(ELLIPSIS) != fits, label


def test_a_short_label_is_left_alone_and_a_two_line_one_wraps_without_a_cut():
    assert fit_label("white x female") == "white x female"
    wrapped = fit_label("race x sex = white x female (vs white x male)")
    assert wrapped == "race x sex = white x female (vs\nwhite x male)"


# ---------------------------------------------------------------- the fairness shift chart


def _rows(with_intervals: bool) -> list[ShiftRow]:
    def ci(low, high):
        return (low, high) if with_intervals else None

    return [
        ShiftRow("white", 0.01, ci(-0.02, 0.03), True),
        ShiftRow("black", 0.2, ci(0.1, 0.35), False),
        ShiftRow("asian", -0.05, ci(-0.1, 0.0), False),
        ShiftRow(LONG, 0.3, ci(0.28, 0.32), False),
    ]


def test_the_shift_chart_draws_and_keys_a_ci_bar_per_group_with_an_interval():
    svg = charts.shift_chart(_rows(True), 0.25, salt="t1")
    assert len(_by_id(_tree(svg), "t1-ci-")) == 4
    assert "95 % CI (bar)" in _legend(svg, "t1")
    assert not _by_id(_tree(svg), "t1-no-interval")


def test_the_shift_chart_keys_no_ci_bar_when_no_interval_could_be_estimated():
    svg = charts.shift_chart(_rows(False), 0.25, salt="t2")
    root = _tree(svg)
    assert not _by_id(root, "t2-ci-"), "no interval, no bar"
    assert not any("CI (bar)" in text for text in _legend(svg, "t2"))
    note = _by_id(root, "t2-no-interval")
    assert note and "no 95 % interval could be estimated" in " ".join(_texts(note[0]))
    assert "inconclusive: no CI" in _legend(svg, "t2"), "the amber dots are keyed for what they are"


def test_a_zero_width_interval_draws_no_bar_and_no_key():
    rows = [ShiftRow("white", 0.0, (0.0, 0.0), True), ShiftRow("black", 0.1, (0.1, 0.1), False)]
    svg = charts.shift_chart(rows, None, salt="t3")
    assert not _by_id(_tree(svg), "t3-ci-")
    assert not any("CI" in text and "bar" in text for text in _legend(svg, "t3"))


def test_every_key_of_the_shift_chart_is_a_mark_it_draws():
    rows = [ShiftRow("black", 0.1, None, False), ShiftRow("hispanic", None, None, False)]
    legend = _legend(charts.shift_chart(rows, None, salt="t4"), "t4")
    assert not any("policy limit" in text for text in legend), "no threshold, no band"
    assert not any("reference" in text for text in legend), "no reference row here"
    assert "no counterfactual case" in legend
    with_band = _legend(charts.shift_chart(rows[:1], 0.25, salt="t5"), "t5")
    assert "policy limit ±0.25" in with_band and "no counterfactual case" not in with_band


@pytest.mark.parametrize("label", [LONG, WIDE])
def test_long_group_labels_wrap_and_leave_the_plot_its_share_of_the_width(label):
    rows = [ShiftRow("white", 0.0, None, True), ShiftRow(label, 0.1, (0.0, 0.2), False)]
    svg = charts.shift_chart(rows, 0.25, salt="t6")
    assert min(_plot_shares(svg)) >= MIN_PLOT_SHARE
    ticks = _texts(_by_id(_tree(svg), "matplotlib.axis_2")[0])  # the y axis: one text per line of a label
    assert len(ticks) == 1 + LABEL_LINES and all(len(t) <= LABEL_CHARS for t in ticks), ticks
    assert any(t.endswith(ELLIPSIS) for t in ticks), "the label was cut where it did not fit"


def test_long_slot_names_leave_the_share_chart_its_plot():
    slots = [(WIDE, 0.3, "factor"), ("national origin", 0.1, "protected"), ("words outside any slot", 0.6, "other")]
    svg = charts.slot_share_chart(slots, salt="t7")
    assert min(_plot_shares(svg)) >= MIN_PLOT_SHARE
    assert _legend(svg, "t7") == ["credit factor / other slot", "protected characteristic", "words outside any slot"]


# ---------------------------------------------------------------- inside the model and the sanity check


def test_long_group_names_in_the_logit_lens_legend_do_not_narrow_the_plots():
    groups = [(f"public assistance = {LONG}", [0.0, 0.001, 0.002]), ("race = black", [0.0, -0.001, -0.002])]
    svg = charts.lens_chart([0.0, -0.1, -0.3], [None, None, None], groups, salt="t8")
    assert min(_plot_shares(svg)) >= 0.7, "the legend sits below the figure, not beside the plots"
    assert "95 % CI over scenarios" not in _legend(svg, "t8-top"), "no interval, no band, no key"
    banded = charts.lens_chart([0.0, -0.1, -0.3], [None, [-0.2, 0.0], [-0.4, -0.2]], groups, salt="t9")
    assert "95 % CI over scenarios" in _legend(banded, "t9-top") and _by_id(_tree(banded), "t9-band")


def test_the_patching_chart_keys_only_curves_that_have_values():
    layers = [-1, 0, 1]
    svg = charts.patching_chart(layers, [None, None, None], [None, None, None], [("a", [None, None, None])],
                                salt="t10")
    legend = _legend(svg, "t10")
    assert "one pair" not in legend and "mean over pairs" not in legend and "95 % CI over pairs" not in legend
    assert _by_id(_tree(svg), "t10-empty"), "the chart says why it is empty"
    drawn = charts.patching_chart(layers, [None, 0.5, 0.2], [None, [0.3, 0.7], [0.1, 0.3]],
                                  [("a", [None, 0.4, 0.1])], salt="t11")
    assert {"one pair", "mean over pairs", "95 % CI over pairs"} <= set(_legend(drawn, "t11"))


def test_the_sanity_chart_keys_each_method_once_with_a_style_of_its_own():
    names = [f"method-{i}" for i in range(11)]  # more methods than colours
    svg = charts.sanity_chart([1, 2], [(n, [0.5, 0.2]) for n in names], 0.5, salt="t12")
    legend = _by_id(_tree(svg), "t12-legend")[0]
    assert _texts(legend) == names
    keys = [p.get("style") for p in legend.iter(f"{SVG}path") if "stroke:" in (p.get("style") or "")]
    assert len(keys) == len(names) and len(set(keys)) == len(names), keys


# ---------------------------------------------------------------- the rendered report


@pytest.fixture(scope="module")
def report_text(tmp_path_factory, tiny_llama_dir) -> str:
    """The running text of the report of a one-scenario audit with two attribution methods (so the trust section is
    there), in reading order: the HTML the PDF is rendered from, without its charts and tags. (Text extracted from the
    PDF interleaves the charts' labels with the paragraphs around them, so phrases are read from the HTML.)"""
    import html

    import audit

    out = tmp_path_factory.mktemp("layout") / "out"
    audit.run(model=str(tiny_llama_dir), out=out, limit=1, ig_steps=2, methods="ig,saliency", quiet=True,
              format_sensitivity="off", patching_pairs=1)
    assert (out / "report.pdf").stat().st_size > 0
    page = re.sub(r"<svg.*?</svg>", " ", (out / "report.html").read_text(), flags=re.S)
    page = re.sub(r"<(style|head)\b.*?</\1>", " ", page, flags=re.S)
    page = re.sub(r"</?(em|strong|span|a|code|sub|sup|b|i)\b[^>]*>", "", page)  # inline: part of the sentence
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def _section(text: str, start: str, end: str) -> str:
    """The running text from ``start`` (a phrase of the section's lead) to ``end`` (the next section's)."""
    begin = text.index(start)
    return text[begin:text.index(end, begin)]


def _defined_at_first_use(section: str, term: str, definition: str) -> None:
    """The first time ``term`` appears in ``section`` is inside ``definition``, the phrase that explains it."""
    assert term in definition
    first = re.search(rf"(?<![A-Za-z]){re.escape(term)}(?![A-Za-z])", section)
    assert first, f"{term} is used in the section"
    where = section.find(definition)
    assert where >= 0, f"{term} is defined: {definition!r}"
    assert where <= first.start() < where + len(definition), (
        f"{term} is used before its definition: {section[first.start() - 80:first.start() + 120]!r}"
    )


TRUST = ("No single attribution method is accepted on faith", "Open weights let the audit")
INSIDE = ("Open weights let the audit", "Metric: decision log-odds")
DEFINITIONS = [  # (section of the report, term, the phrase that defines it where it is first used)
    (TRUST, "Comprehensiveness", "Comprehensiveness is how much the decision weakens"),
    (TRUST, "Sufficiency", "Sufficiency is how much it weakens"),
    (TRUST, "AOPC", "the AOPC (“area over the perturbation curve”"),
    (TRUST, "NAOPC", "NAOPC (normalised AOPC) rescales"),
    (TRUST, "Kendall's tau", "Kendall's tau, a rank correlation"),
    (INSIDE, "logit lens", "The logit lens reads the model's running state"),
    (INSIDE, "control task", "control task (Hewitt & Liang 2019): the same words given random"),
    (INSIDE, "Selectivity", "Selectivity is the probe's accuracy minus its control-task accuracy"),
    (INSIDE, "TE", "total effect (TE) of a pair is the whole change"),
    (INSIDE, "IE", "indirect effect (IE) of a layer is the part of that change"),
    (INSIDE, "NIE", "normalised indirect effect (NIE), is the share of the decision gap"),
]


@pytest.mark.parametrize("bounds, term, definition", DEFINITIONS, ids=[term for _, term, _ in DEFINITIONS])
def test_every_measure_is_defined_where_the_body_first_uses_it(report_text, bounds, term, definition):
    _defined_at_first_use(_section(report_text, *bounds), term, definition)


def test_probe_accuracies_are_percentages_and_selectivity_percentage_points(report_text):
    inside = _section(report_text, "Open weights let the audit", "Metric: decision log-odds")
    table = inside[inside.index("Characteristic Read at"):]
    assert table.startswith("Characteristic Read at Cases Majority class % of cases"), table[:120]
    assert "Selectivity percentage points" in table
