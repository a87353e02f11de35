"""Report charts: matplotlib figures rendered to inline SVG markup.

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot, no
global backend), inside an ``rc_context`` so the caller's matplotlib settings
are untouched. Output is deterministic: the SVG hash salt is fixed per chart
(which also keeps element ids distinct between the charts of one HTML page)
and the date metadata is dropped. Text stays text (``svg.fonttype: none``),
which WeasyPrint renders with the same DejaVu fonts as the report body, so
chart labels are selectable in the PDF. Matplotlib escapes the text it
writes into the SVG, so the markup is safe to inline.
"""

from __future__ import annotations

import io
import math
import textwrap
from dataclasses import dataclass

import matplotlib
import numpy as np
from markupsafe import Markup
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, PercentFormatter

WIDTH_IN = 6.5  # fits the A4 text block (174 mm) at 1:1 scale
LABEL_CHARS = 34  # widest line of a category label (about 2 in at 7.5 pt): longer labels wrap
LABEL_LINES = 2  # a category label wraps onto at most this many lines; the rest is cut with an ellipsis
LEGEND_LABEL_CHARS = 44  # widest line of a legend entry
ELLIPSIS = "…"
MIN_PLOT_SHARE = 0.55  # the plot area keeps at least this share of the figure's width, whatever the labels
INK = "#1f2933"
MUTED = "#7b8794"
BAND = "#e3efe6"
COLOURS = {
    "within": "#1f5f99",
    "uncertain": "#b26a00",
    "beyond": "#c62828",
    "reference": "#7b8794",
    "protected": "#c2571a",
    "factor": "#5b7fa6",
    "other": "#b8c2cc",
}
STYLE = {
    "svg.fonttype": "none",
    "svg.image_inline": True,
    "font.family": "DejaVu Sans",
    "font.size": 7.5,
    "axes.edgecolor": MUTED,
    "axes.labelcolor": INK,
    "axes.linewidth": 0.6,
    "xtick.color": INK,
    "ytick.color": INK,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "legend.frameon": False,
    "legend.fontsize": 7,
}


@dataclass(frozen=True)
class ShiftRow:
    """One group of a counterfactual-shift chart."""

    label: str
    mean: float | None
    ci: tuple[float, float] | None
    is_reference: bool


def _literal(text: str) -> str:
    """``text`` with its dollar signs escaped, so matplotlib never reads it as mathtext."""
    return text.replace("$", r"\$")


def fit_label(text: str, width: int = LABEL_CHARS, lines: int = LABEL_LINES) -> str:
    """``text`` wrapped at ``width`` characters onto at most ``lines`` lines; what does not fit is cut and the
    last line ends in an ellipsis. Runs of white space become one space (a label's line breaks are its own)."""
    wrapped = textwrap.wrap(" ".join(text.split()), width=max(width, 2)) or [""]
    if len(wrapped) <= lines:
        return "\n".join(wrapped)
    last = " ".join(wrapped[lines - 1:])[: max(width, 2) - 1].rstrip()
    return "\n".join([*wrapped[: lines - 1], last + ELLIPSIS])


def _label_lines(labels: list[str]) -> int:
    """The lines of text that ``labels`` take (a wrapped label takes several)."""
    return sum(label.count("\n") + 1 for label in labels)


def _has_interval(ci) -> bool:
    """Whether ``ci`` is an interval that can be drawn: both ends known and the upper above the lower."""
    return ci is not None and None not in ci and ci[1] > ci[0]


def _fit_y_labels(fig: Figure, ax, labels: list[str], width: int = LABEL_CHARS) -> None:
    """Set ``labels`` as y tick labels, wrapped at ``width``; narrower again while they would squeeze the plot
    area below ``MIN_PLOT_SHARE`` of the figure's width (wide glyphs, many lines)."""
    for _ in range(4):
        ax.set_yticks(range(len(labels)), [_literal(fit_label(label, width)) for label in labels])
        fig.draw_without_rendering()
        if ax.get_position().width >= MIN_PLOT_SHARE or width <= 12:
            return
        width = max(12, int(width * 0.75))


def _percent_axis(axis, whole: float) -> None:
    """Tick ``axis`` as percentages, ``whole`` being 100 %, written like the report's tables ("25 %")."""
    axis.set_major_formatter(PercentFormatter(whole, decimals=0, symbol="\u00a0%"))


def _legend_handle(kind: str, colour: str, hollow: bool = False) -> Line2D:
    """A legend key drawn like the chart's own mark: a dot, a diamond, a bar or a dashed line."""
    if kind == "bar":
        return Line2D([], [], color=colour, linewidth=1.6, solid_capstyle="butt")
    if kind == "dashed":
        return Line2D([], [], color=colour, linewidth=0.8, linestyle=(0, (3, 2)))
    marker, size = ("D", 4) if kind == "diamond" else ("o", 4.5)
    return Line2D([], [], linestyle="none", marker=marker, markersize=size, color=colour,
                  markeredgecolor=colour, markerfacecolor="white" if hollow else colour)


def _to_svg(fig: Figure, salt: str) -> Markup:
    """Serialise ``fig`` as an SVG element without the XML prolog and doctype."""
    buffer = io.StringIO()
    with matplotlib.rc_context({**STYLE, "svg.hashsalt": f"oss-model-audit:{salt}"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    return Markup(text[text.index("<svg"):])


def _new_figure(height_in: float) -> Figure:
    """A figure as wide as the text block, laid out by matplotlib's constrained layout."""
    return Figure(figsize=(WIDTH_IN, height_in), layout="constrained")


def _row_colour(row: ShiftRow, threshold: float | None) -> str:
    """Colour a group by where it stands against the policy band (the policy rule, drawn)."""
    if row.is_reference or threshold is None:
        return COLOURS["reference"] if row.is_reference else COLOURS["within"]
    if abs(row.mean) > threshold:
        return COLOURS["beyond"]
    if row.ci is None or max(abs(row.ci[0]), abs(row.ci[1])) > threshold:
        return COLOURS["uncertain"]
    return COLOURS["within"]


def _x_limit(rows: list[ShiftRow], threshold: float | None) -> float:
    """Half-width of a symmetric x axis that shows every interval and the band."""
    reach = [abs(v) for r in rows for v in ([r.mean] if r.mean is not None else []) + list(r.ci or ())]
    if threshold is not None:
        reach.append(threshold)
    top = max(reach, default=0.0)
    return 1.15 * top if top > 0 else 1.0


def shift_chart(rows: list[ShiftRow], threshold: float | None, salt: str) -> Markup:
    """Dot-and-whisker chart of the mean log-odds shift per group with its CI.

    The policy's ±threshold band is shaded, zero is a dashed line; the
    reference group (the baseline's own group) is drawn hollow and grey.
    The legend names only the marks drawn: a CI bar is drawn for a group
    whose interval has a width, and when no group has one the chart says
    so instead of keying a bar that is not there. Long group labels wrap
    (``fit_label``), so the plot area keeps its share of the width.
    Drawn marks carry SVG ids ``{salt}-ci-{row}``, ``{salt}-mean-{row}``,
    ``{salt}-legend`` and ``{salt}-no-interval``.
    """
    texts = [f"{r.label} (reference)" if r.is_reference else r.label for r in rows]
    lines = _label_lines([fit_label(t) for t in texts])
    keys: dict[str, Line2D | Patch] = {}
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(0.95 + 0.11 * len(rows) + 0.13 * lines)
        ax = fig.add_subplot()
        limit = _x_limit(rows, threshold)
        if threshold is not None:
            ax.axvspan(-threshold, threshold, color=BAND, zorder=0)
            keys[f"policy limit ±{threshold:g}"] = Patch(color=BAND)
        ax.axvline(0, color=MUTED, linewidth=0.8, linestyle=(0, (3, 2)), zorder=1)
        keys["no change"] = _legend_handle("dashed", MUTED)
        uncertain = {"with": False, "without": False}
        for y, row in enumerate(rows):
            if row.mean is None:
                ax.plot(0, y, marker="D", markersize=4, markerfacecolor="white", markeredgecolor=MUTED, zorder=3,
                        gid=f"{salt}-none-{y}")
                keys.setdefault("no counterfactual case", _legend_handle("diamond", MUTED, hollow=True))
                continue
            colour = _row_colour(row, threshold)
            if _has_interval(row.ci):
                ax.plot(row.ci, (y, y), color=colour, linewidth=1.6, solid_capstyle="butt", zorder=2,
                        gid=f"{salt}-ci-{y}")
            ax.plot(
                row.mean, y, marker="o", markersize=4.5, zorder=3, color=colour,
                markerfacecolor="white" if row.is_reference else colour, gid=f"{salt}-mean-{y}",
            )
            if row.is_reference:
                keys.setdefault("reference group (hollow)", _legend_handle("dot", colour, hollow=True))
            elif colour == COLOURS["uncertain"]:
                uncertain["with" if _has_interval(row.ci) else "without"] = True
            elif colour == COLOURS["beyond"]:
                keys.setdefault("mean beyond the limit", _legend_handle("dot", colour))
            else:
                label = "mean within the limit" if threshold is not None else "mean change"
                keys.setdefault(label, _legend_handle("dot", colour))
        if any(uncertain.values()):
            why = {(True, False): "CI crosses the limit", (False, True): "no CI",
                   (True, True): "CI crosses the limit or is missing"}[(uncertain["with"], uncertain["without"])]
            keys[f"inconclusive: {why}"] = _legend_handle("dot", COLOURS["uncertain"])
        bars = [row for row in rows if row.mean is not None and _has_interval(row.ci)]
        if bars:
            keys["95 % CI (bar)"] = _legend_handle("bar", INK)
        elif any(row.mean is not None for row in rows):
            note = ax.set_title("no 95 % interval could be estimated, so no CI bars are drawn", loc="left",
                                fontsize=6.5, color=MUTED)
            note.set_gid(f"{salt}-no-interval")
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_xlim(-limit, limit)
        ax.set_xlabel("mean change in log-odds of approval vs the reference group")
        ax.grid(axis="x", color="#eef1f4", linewidth=0.5, zorder=0)
        ax.set_axisbelow(True)
        ax.spines[["top", "right"]].set_visible(False)
        legend = fig.legend(list(keys.values()), list(keys), loc="outside upper right", ncols=min(len(keys), 4),
                            borderaxespad=0.2, columnspacing=1.2, handlelength=1.6)
        legend.set_gid(f"{salt}-legend")
        _fit_y_labels(fig, ax, texts)
        return _to_svg(fig, salt)


def slot_share_chart(slots: list[tuple[str, float, str]], salt: str) -> Markup:
    """Horizontal bars of the mean attribution share per slot.

    ``slots`` holds (label, share in 0..1, kind) with kind ``protected``,
    ``factor`` or ``other``; bars are drawn in the order given, top first.
    """
    kinds = {
        "protected": "protected characteristic",
        "factor": "credit factor / other slot",
        "other": "words outside any slot",
    }
    labels = [label for label, _, _ in slots]
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(0.75 + 0.1 * len(slots) + 0.1 * _label_lines([fit_label(t) for t in labels]))
        ax = fig.add_subplot()
        shares = [100 * share for _, share, _ in slots]
        colours = [COLOURS[kind] for _, _, kind in slots]
        ax.barh(range(len(slots)), shares, color=colours, height=0.66, zorder=2, gid=f"{salt}-bars")
        top = max(shares, default=0.0)
        for y, share in enumerate(shares):
            ax.text(share + top * 0.01, y, f"{share:.1f} %", va="center", ha="left", fontsize=6.5, color=INK)
        ax.set_ylim(len(slots) - 0.5, -0.5)
        ax.set_xlim(0, max(math.ceil(top * 1.15), 1))
        _percent_axis(ax.xaxis, 100)
        ax.set_xlabel("mean share of |attribution| over the attributed cases")
        ax.grid(axis="x", color="#eef1f4", linewidth=0.5, zorder=0)
        ax.spines[["top", "right"]].set_visible(False)
        present = dict.fromkeys(kind for _, _, kind in slots)
        handles = [Patch(color=COLOURS[kind], label=kinds[kind]) for kind in present]
        legend = fig.legend(handles=handles, loc="outside upper right", ncols=len(handles), borderaxespad=0.2)
        legend.set_gid(f"{salt}-legend")
        _fit_y_labels(fig, ax, labels)
        for tick, (_, _, kind) in zip(ax.get_yticklabels(), slots):
            if kind == "protected":
                tick.set_color(COLOURS["protected"])
                tick.set_fontweight("bold")
        return _to_svg(fig, salt)


def agreement_chart(labels: list[str], matrix: list[list[float | None]], salt: str) -> Markup:
    """Heatmap of the mean Kendall tau between every pair of methods, values printed in the cells."""
    n = len(labels)
    values = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(1.0 + 0.32 * n)
        ax = fig.add_subplot()
        # pcolormesh stays vector in SVG (imshow would embed a raster image the PDF renderer may not load)
        ax.pcolormesh(values, cmap="RdBu", vmin=-1, vmax=1, edgecolors="#ffffff", linewidth=0.5)
        ax.set_aspect("equal")
        ax.invert_yaxis()
        for i in range(n):
            for j in range(n):
                if np.isfinite(values[i, j]):
                    ax.text(j + 0.5, i + 0.5, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=6.5,
                            color="#ffffff" if abs(values[i, j]) > 0.6 else INK)
        ticks = np.arange(n) + 0.5
        names = [_literal(fit_label(label, 24, 1)) for label in labels]
        ax.set_xticks(ticks, names, rotation=30, ha="right")
        ax.set_yticks(ticks, names)
        return _to_svg(fig, salt)


def sanity_chart(layer_counts: list[int], curves: list[tuple[str, list[float | None]]], limit: float,
                 salt: str) -> Markup:
    """Cascading randomisation: per method, the |score| rank correlation with the trained maps against the
    number of top layers re-initialised (0 layers = the trained model, correlation 1); the dashed line is the
    pass limit."""
    palette = ["#1f5f99", "#c2571a", "#2e7d32", "#6a1b9a", "#b26a00", "#00838f", "#7b8794", "#ad1457"]
    markers = ["o", "s", "^", "D"]  # past the palette, curves differ by marker and dash too: one key, one curve
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(max(2.3, 0.9 + 0.15 * len(curves)))
        ax = fig.add_subplot()
        xs = [0, *layer_counts]
        for index, (label, values) in enumerate(curves):
            ys = [1.0, *[np.nan if v is None else v for v in values]]
            round_ = index // len(palette)
            ax.plot(xs, ys, marker=markers[round_ % len(markers)], markersize=3, linewidth=1.1,
                    color=palette[index % len(palette)], linestyle="-" if round_ == 0 else (0, (4, 1.5)),
                    label=_literal(fit_label(label, 24, 1)))
        ax.axhline(limit, color=COLOURS["beyond"], linestyle="--", linewidth=0.8)
        ax.text(xs[0] + 0.02 * (xs[-1] - xs[0]), limit - 0.03, f"pass limit {limit:g}", va="top", ha="left",
                fontsize=6.5, color=COLOURS["beyond"])
        ax.set_xticks(xs)
        ax.set_xlabel("top layers re-initialised")
        ax.set_ylabel("Spearman rho of |word scores|\nwith the trained model")
        ax.set_ylim(-0.3, 1.05)
        ax.grid(axis="y", color="#eef1f4", linewidth=0.5)
        ax.spines[["top", "right"]].set_visible(False)
        fig.legend(loc="outside right upper").set_gid(f"{salt}-legend")
        return _to_svg(fig, salt)


def lens_chart(baseline_mean: list[float], baseline_ci: list, groups: list[tuple[str, list[float]]],
               salt: str) -> Markup:
    """Top: the baselines' decision log-odds read at every depth (logit lens), mean and 95 % band.
    Bottom: the per-depth shift of the groups with the largest final gaps against their baselines."""
    depths = np.arange(len(baseline_mean))
    palette = ["#1f5f99", "#c2571a", "#2e7d32", "#6a1b9a", "#b26a00", "#00838f"]
    names = [_literal(fit_label(label, LEGEND_LABEL_CHARS)) for label, _ in groups]
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(4.1 + 0.1 * _label_lines(names[1::2] if len(names) > 1 else names))
        top, bottom = fig.subplots(2, 1, sharex=True)
        top.plot(depths, baseline_mean, color=INK, linewidth=1.2, label="baseline applicants, mean")
        bands = [(d, ci) for d, ci in zip(depths, baseline_ci) if _has_interval(ci)]
        if bands:  # only a band that has a width is drawn, and only a drawn band is keyed
            top.fill_between([d for d, _ in bands], [ci[0] for _, ci in bands], [ci[1] for _, ci in bands],
                             color=BAND, label="95 % CI over scenarios", gid=f"{salt}-band")
        top.axhline(0, color=MUTED, linewidth=0.6)
        top.set_ylabel("decision log-odds\n(+ favourable)")
        top.legend(loc="best").set_gid(f"{salt}-top-legend")
        for index, (name, (_, curve)) in enumerate(zip(names, groups)):
            bottom.plot(depths, curve, color=palette[index % len(palette)], linewidth=1.1, label=name)
        bottom.axhline(0, color=MUTED, linewidth=0.6)
        bottom.set_ylabel("shift vs baseline\n(log-odds)")
        bottom.set_xlabel("depth (0 = embeddings, then after each layer)")
        bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
        if groups:
            # below the figure, as wide as it: the group names never narrow the plots
            fig.legend(*bottom.get_legend_handles_labels(), loc="outside lower center", ncols=min(2, len(groups)),
                       fontsize=6, title="bottom panel: groups with the largest final gaps",
                       title_fontsize=6).set_gid(f"{salt}-legend")
        for ax in (top, bottom):
            ax.grid(axis="y", color="#eef1f4", linewidth=0.5)
            ax.spines[["top", "right"]].set_visible(False)
        return _to_svg(fig, salt)


def probe_chart(panels: list[tuple[str, list[float], list[float], float]], salt: str) -> Markup:
    """Small multiples, one per probed property: probe accuracy (solid), control-task accuracy (dashed) and the
    majority-class share (dotted) at every depth."""
    columns = 2
    rows = max(1, math.ceil(len(panels) / columns))
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(0.6 + 1.35 * rows)
        axes = np.atleast_1d(fig.subplots(rows, columns, sharex=True, sharey=True)).ravel()
        for ax, (label, accuracy, control, majority) in zip(axes, panels):
            depths = np.arange(len(accuracy))
            ax.plot(depths, accuracy, color=COLOURS["within"], linewidth=1.1, label="probe")
            ax.plot(depths, control, color=COLOURS["protected"], linewidth=1.0, linestyle="--",
                    label="control task (random labels)")
            ax.axhline(majority, color=MUTED, linewidth=0.8, linestyle=":", label="majority-class share")
            ax.set_title(_literal(fit_label(label, LEGEND_LABEL_CHARS, 1)), fontsize=7.5, loc="left")
            ax.set_ylim(0, 1.02)
            _percent_axis(ax.yaxis, 1)
            ax.grid(axis="y", color="#eef1f4", linewidth=0.5)
            ax.spines[["top", "right"]].set_visible(False)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        # above the panels, not inside one where it would cover the curves
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper right", ncols=3,
                   fontsize=6.5).set_gid(f"{salt}-legend")
        axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
        fig.supxlabel("depth (0 = embeddings)", fontsize=7)
        fig.supylabel("out-of-fold accuracy", fontsize=7)
        return _to_svg(fig, salt)


def patching_chart(layers: list[int], means: list[float | None], cis: list, pairs: list[tuple[str, list]],
                   salt: str) -> Markup:
    """Normalised indirect effect of patching the attribute span per layer (-1 = input embeddings): each pair
    (thin) and the mean with its 95 % band (thick). Only what has a value is drawn and keyed: a pair whose total
    effect was too small has no share at any layer, and when no pair has one the chart says so."""
    def finite(values):
        return [np.nan if v is None else v for v in values]

    with matplotlib.rc_context(STYLE):
        fig = _new_figure(2.6)
        ax = fig.add_subplot()
        keyed = False
        for label, values in pairs:
            if all(v is None for v in values):
                continue
            ax.plot(layers, finite(values), color="#b8c2cc", linewidth=0.7, marker=".", markersize=1.5,
                    label=None if keyed else "one pair")
            keyed = True
        bands = [(x, ci) for x, ci in zip(layers, cis) if _has_interval(ci)]
        if bands:  # only a band that has a width is drawn, and only a drawn band is keyed
            ax.fill_between([x for x, _ in bands], [ci[0] for _, ci in bands], [ci[1] for _, ci in bands],
                            color=BAND, label="95 % CI over pairs", gid=f"{salt}-band")
        if any(m is not None for m in means):
            ax.plot(layers, finite(means), color=COLOURS["within"], linewidth=1.4, marker="o", markersize=2.5,
                    label="mean over pairs")
        else:
            ax.text(0.5, 0.5, "no pair moved the decision enough for a share to be defined", ha="center",
                    va="center", transform=ax.transAxes, fontsize=7, color=MUTED, gid=f"{salt}-empty")
        ax.axhline(0, color=MUTED, linewidth=0.6)
        ax.axhline(1, color=MUTED, linewidth=0.6, linestyle=":", label="100 % = the whole gap")
        if layers:
            ax.set_xlim(min(layers) - 0.3, max(layers) + 0.3)
        ax.set_xlabel("layer whose output is patched at the attribute's tokens (-1 = input embeddings)")
        ax.set_ylabel("share of the gap carried\n(IE / TE)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _percent_axis(ax.yaxis, 1)
        ax.grid(axis="y", color="#eef1f4", linewidth=0.5)
        ax.spines[["top", "right"]].set_visible(False)
        fig.legend(*ax.get_legend_handles_labels(), loc="outside upper right", ncols=4).set_gid(f"{salt}-legend")
        return _to_svg(fig, salt)


# ---------------------------------------------------------------- audit explain: the attribution map

EXPLAIN_FONT_PT = 7.0  # every label of the explanation's map, at print size (the captions' size)
EXPLAIN_ROW_IN = 0.13  # row pitch: a 7 pt label with air above and below (48 rows and a caption fill a page)
EXPLAIN_COLUMN_IN = 0.13  # least column pitch: rotated 7 pt labels side by side without touching
EXPLAIN_WIDE_COLUMN_IN = 0.32  # widest column: a map of few columns stays compact instead of stretching
EXPLAIN_MIN_AXES_IN = 1.1  # least height of the cells, so a map of one to six rows keeps a legible colour bar


def explain_heatmap_figure(matrix: list[list[float | None]], rows: list[str], columns: list[str],
                           parts: list[tuple[str, int]], limit: float) -> Figure:
    """The figure of ``explain_heatmap`` (tests measure its labels).

    ``matrix[r][c]``: attribution of row r's token to column c, None where it cannot reach it (drawn grey);
    ``parts``: (caption, number of columns) of consecutive column groups, written above them and separated by
    a line. The figure is sized so every label keeps ``EXPLAIN_FONT_PT``: rows ``EXPLAIN_ROW_IN`` apart,
    columns at least ``EXPLAIN_COLUMN_IN`` (the caller splits a map that needs more columns than fit).
    """
    values = np.ma.masked_invalid(np.array([[np.nan if v is None else v for v in row] for row in matrix], float))
    cells_h = max(EXPLAIN_MIN_AXES_IN, EXPLAIN_ROW_IN * len(rows))
    cells_w = EXPLAIN_WIDE_COLUMN_IN * len(columns)
    sizes = {"font.size": EXPLAIN_FONT_PT, "xtick.labelsize": EXPLAIN_FONT_PT, "ytick.labelsize": EXPLAIN_FONT_PT,
             "axes.labelsize": EXPLAIN_FONT_PT}
    with matplotlib.rc_context({**STYLE, **sizes}):
        fig = Figure(figsize=(WIDTH_IN, cells_h + 1.6), layout="constrained")
        ax = fig.add_subplot()
        ax.set_facecolor("#d4d4d4")  # masked cells are not drawn: the background shows through
        mesh = ax.pcolormesh(values, cmap="RdBu", vmin=-limit, vmax=limit, edgecolors="#ffffff", linewidth=0.3)
        ax.set_xlim(0, len(columns))
        ax.set_ylim(len(rows), 0)
        ax.set_xticks(np.arange(len(columns)) + 0.5, [_literal(c) for c in columns], rotation=90)
        ax.set_yticks(np.arange(len(rows)) + 0.5, [_literal(r) for r in rows])
        ax.tick_params(length=0, pad=2)
        start = 0
        for index, (caption, count) in enumerate(parts):
            if index:
                ax.axvline(start, color=INK, linewidth=0.9)
            # a narrow group at either end is labelled from its outer edge inwards, so the label stays over the map
            narrow = count < 0.25 * len(columns)
            anchor, align = ((start, "left") if narrow and index == 0 else
                             (start + count, "right") if narrow and index == len(parts) - 1 else
                             (start + count / 2, "center"))
            ax.annotate(_literal(caption), xy=(anchor, 1), xycoords=("data", "axes fraction"),
                        xytext=(0, 3), textcoords="offset points", ha=align, va="bottom",
                        fontsize=EXPLAIN_FONT_PT, color=INK)
            start += count
        ax.set_ylabel("generated token")
        bar = fig.colorbar(mesh, ax=ax, extend="both", pad=0.015, fraction=0.05,
                           aspect=max(8.0, cells_h / 0.11), shrink=1.0)
        bar.solids.set_rasterized(False)  # a raster image would be an embedded file the PDF renderer does not load
        bar.solids.set_edgecolor("face")  # no hairline seams between the bar's colour steps
        bar.set_label("attribution (nats)", fontsize=EXPLAIN_FONT_PT)
        bar.ax.tick_params(labelsize=EXPLAIN_FONT_PT)
        # constrained layout places the labels; resize until the cells have their pitch (or the text block's width)
        for _ in range(4):
            fig.draw_without_rendering()
            width, height = fig.get_size_inches()
            box = ax.get_position()
            wanted = (min(WIDTH_IN, width + cells_w - box.width * width), height + cells_h - box.height * height)
            if abs(wanted[0] - width) < 0.01 and abs(wanted[1] - height) < 0.01:
                break
            fig.set_size_inches(*wanted)
        return fig


def explain_heatmap(matrix: list[list[float | None]], rows: list[str], columns: list[str],
                    parts: list[tuple[str, int]], limit: float, salt: str) -> Markup:
    """Attribution of each generated token (row) to each attributed token or word (column) of ``audit explain``,
    red-white-blue centred at 0 and saturating at ±``limit``, labels at print size (``explain_heatmap_figure``)."""
    return _to_svg(explain_heatmap_figure(matrix, rows, columns, parts, limit), salt)
