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
from dataclasses import dataclass

import matplotlib
import numpy as np
from markupsafe import Markup
from matplotlib.figure import Figure
from matplotlib.patches import Patch

WIDTH_IN = 6.5  # fits the A4 text block (174 mm) at 1:1 scale
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
    """
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(0.75 + 0.24 * len(rows))
        ax = fig.add_subplot()
        limit = _x_limit(rows, threshold)
        if threshold is not None:
            ax.axvspan(-threshold, threshold, color=BAND, zorder=0, label=f"policy limit ±{threshold:g}")
        ax.axvline(0, color=MUTED, linewidth=0.8, linestyle=(0, (3, 2)), zorder=1)
        for y, row in enumerate(rows):
            if row.mean is None:
                ax.plot(0, y, marker="D", markersize=4, markerfacecolor="white", markeredgecolor=MUTED, zorder=3)
                continue
            colour = _row_colour(row, threshold)
            if row.ci is not None:
                ax.plot(row.ci, (y, y), color=colour, linewidth=1.6, solid_capstyle="butt", zorder=2)
            ax.plot(
                row.mean, y, marker="o", markersize=4.5, zorder=3, color=colour,
                markerfacecolor="white" if row.is_reference else colour,
            )
        ax.set_yticks(
            range(len(rows)), [_literal(f"{r.label} (reference)" if r.is_reference else r.label) for r in rows]
        )
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_xlim(-limit, limit)
        ax.set_xlabel("mean change in log-odds of approval vs the reference group (dot) with 95 % CI (bar)")
        ax.grid(axis="x", color="#eef1f4", linewidth=0.5, zorder=0)
        ax.set_axisbelow(True)
        ax.spines[["top", "right"]].set_visible(False)
        if threshold is not None:
            ax.legend(loc="lower right", bbox_to_anchor=(1, 1), ncols=1, borderaxespad=0.2)
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
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(0.6 + 0.2 * len(slots))
        ax = fig.add_subplot()
        labels = [_literal(label) for label, _, _ in slots]
        shares = [100 * share for _, share, _ in slots]
        colours = [COLOURS[kind] for _, _, kind in slots]
        ax.barh(range(len(slots)), shares, color=colours, height=0.66, zorder=2)
        top = max(shares, default=0.0)
        for y, share in enumerate(shares):
            ax.text(share + top * 0.01, y, f"{share:.1f} %", va="center", ha="left", fontsize=6.5, color=INK)
        ax.set_yticks(range(len(slots)), labels)
        for tick, (_, _, kind) in zip(ax.get_yticklabels(), slots):
            if kind == "protected":
                tick.set_color(COLOURS["protected"])
                tick.set_fontweight("bold")
        ax.set_ylim(len(slots) - 0.5, -0.5)
        ax.set_xlim(0, max(math.ceil(top * 1.15), 1))
        ax.set_xlabel("mean share of |attribution| over the attributed cases (%)")
        ax.grid(axis="x", color="#eef1f4", linewidth=0.5, zorder=0)
        ax.spines[["top", "right"]].set_visible(False)
        present = dict.fromkeys(kind for _, _, kind in slots)
        handles = [Patch(color=COLOURS[kind], label=kinds[kind]) for kind in present]
        ax.legend(handles=handles, loc="lower right", bbox_to_anchor=(1, 1), ncols=len(handles), borderaxespad=0.2)
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
        ax.set_xticks(ticks, [_literal(label) for label in labels], rotation=30, ha="right")
        ax.set_yticks(ticks, [_literal(label) for label in labels])
        return _to_svg(fig, salt)


def sanity_chart(layer_counts: list[int], curves: list[tuple[str, list[float | None]]], limit: float,
                 salt: str) -> Markup:
    """Cascading randomisation: per method, the |score| rank correlation with the trained maps against the
    number of top layers re-initialised (0 layers = the trained model, correlation 1); the dashed line is the
    pass limit."""
    palette = ["#1f5f99", "#c2571a", "#2e7d32", "#6a1b9a", "#b26a00", "#00838f", "#7b8794", "#ad1457"]
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(2.3)
        ax = fig.add_subplot()
        xs = [0, *layer_counts]
        for index, (label, values) in enumerate(curves):
            ys = [1.0, *[np.nan if v is None else v for v in values]]
            ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.1, color=palette[index % len(palette)],
                    label=_literal(label))
        ax.axhline(limit, color=COLOURS["beyond"], linestyle="--", linewidth=0.8)
        ax.text(xs[0] + 0.02 * (xs[-1] - xs[0]), limit - 0.03, f"pass limit {limit:g}", va="top", ha="left",
                fontsize=6.5, color=COLOURS["beyond"])
        ax.set_xticks(xs)
        ax.set_xlabel("top layers re-initialised")
        ax.set_ylabel("Spearman rho of |word scores|\nwith the trained model")
        ax.set_ylim(-0.3, 1.05)
        ax.grid(axis="y", color="#eef1f4", linewidth=0.5)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
        return _to_svg(fig, salt)


def lens_chart(baseline_mean: list[float], baseline_ci: list, groups: list[tuple[str, list[float]]],
               salt: str) -> Markup:
    """Top: the baselines' decision log-odds read at every depth (logit lens), mean and 95 % band.
    Bottom: the per-depth shift of the groups with the largest final gaps against their baselines."""
    depths = np.arange(len(baseline_mean))
    palette = ["#1f5f99", "#c2571a", "#2e7d32", "#6a1b9a", "#b26a00", "#00838f"]
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(4.4)
        top, bottom = fig.subplots(2, 1, sharex=True)
        top.plot(depths, baseline_mean, color=INK, linewidth=1.2, label="baseline applicants, mean")
        bands = [(d, ci) for d, ci in zip(depths, baseline_ci) if ci]
        if bands:
            top.fill_between([d for d, _ in bands], [ci[0] for _, ci in bands], [ci[1] for _, ci in bands],
                             color=BAND, label="95 % CI over scenarios")
        top.axhline(0, color=MUTED, linewidth=0.6)
        top.set_ylabel("decision log-odds\n(+ favourable)")
        top.legend(loc="lower right")
        for index, (label, curve) in enumerate(groups):
            bottom.plot(depths, curve, color=palette[index % len(palette)], linewidth=1.1, label=_literal(label))
        bottom.axhline(0, color=MUTED, linewidth=0.6)
        bottom.set_ylabel("shift vs baseline\n(log-odds)")
        bottom.set_xlabel("depth (0 = embeddings, then after each layer)")
        bottom.legend(loc="upper left", bbox_to_anchor=(0.0, -0.32), ncols=2, fontsize=6)
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
        fig = _new_figure(0.4 + 1.35 * rows)
        axes = np.atleast_1d(fig.subplots(rows, columns, sharex=True, sharey=True)).ravel()
        for ax, (label, accuracy, control, majority) in zip(axes, panels):
            depths = np.arange(len(accuracy))
            ax.plot(depths, accuracy, color=COLOURS["within"], linewidth=1.1, label="probe")
            ax.plot(depths, control, color=COLOURS["protected"], linewidth=1.0, linestyle="--", label="control task")
            ax.axhline(majority, color=MUTED, linewidth=0.8, linestyle=":", label="majority class")
            ax.set_title(_literal(label), fontsize=7.5, loc="left")
            ax.set_ylim(0, 1.02)
            ax.grid(axis="y", color="#eef1f4", linewidth=0.5)
            ax.spines[["top", "right"]].set_visible(False)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        axes[0].legend(loc="lower right", fontsize=6)
        fig.supxlabel("depth (0 = embeddings)", fontsize=7)
        fig.supylabel("out-of-fold accuracy", fontsize=7)
        return _to_svg(fig, salt)


def patching_chart(layers: list[int], means: list[float | None], cis: list, pairs: list[tuple[str, list]],
                   salt: str) -> Markup:
    """Normalised indirect effect of patching the attribute span per layer (-1 = input embeddings): each pair
    (thin) and the mean with its 95 % band (thick)."""
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(2.4)
        ax = fig.add_subplot()
        for label, values in pairs:
            ax.plot(layers, [np.nan if v is None else v for v in values], color="#b8c2cc", linewidth=0.7)
        bands = [(x, ci) for x, ci in zip(layers, cis) if ci]
        if bands:
            ax.fill_between([x for x, _ in bands], [ci[0] for _, ci in bands], [ci[1] for _, ci in bands],
                            color=BAND, label="95 % CI over pairs")
        ax.plot(layers, [np.nan if m is None else m for m in means], color=COLOURS["within"], linewidth=1.4,
                marker="o", markersize=2.5, label="mean over pairs")
        ax.axhline(0, color=MUTED, linewidth=0.6)
        ax.axhline(1, color=MUTED, linewidth=0.6, linestyle=":")
        ax.set_xlabel("layer whose output is patched at the attribute's tokens (-1 = input embeddings)")
        ax.set_ylabel("share of the gap carried\n(IE / TE)")
        ax.grid(axis="y", color="#eef1f4", linewidth=0.5)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(loc="upper right")
        return _to_svg(fig, salt)


def generation_heatmap(matrix: list[list[float | None]], rows: list[str], columns: list[str], prompt_columns: int,
                       limit: float, salt: str) -> Markup:
    """Attribution of each generated token (row) to each source (column), red-white-blue centred at 0.

    Cells are None where the source cannot reach the token (a later generated token): drawn light grey.
    Colours saturate at ±``limit``; a vertical line separates the prompt's columns from the answer's.
    """
    values = np.ma.masked_invalid(np.array([[np.nan if v is None else v for v in row] for row in matrix], float))
    few_rows = len(rows) <= 24
    height = 1.35 + (0.14 if few_rows else 0.115) * len(rows)
    sizes = {"xtick.labelsize": 7 if len(columns) <= 24 else 5.5, "ytick.labelsize": 7 if few_rows else 5.5}
    with matplotlib.rc_context({**STYLE, **sizes}):
        fig = _new_figure(height)
        ax = fig.add_subplot()
        ax.set_facecolor("#d4d4d4")  # masked cells are not drawn: the background shows through
        mesh = ax.pcolormesh(values, cmap="RdBu", vmin=-limit, vmax=limit, edgecolors="#ffffff", linewidth=0.15)
        ax.invert_yaxis()
        ax.set_xticks(np.arange(len(columns)) + 0.5, [_literal(c) for c in columns], rotation=90)
        ax.set_yticks(np.arange(len(rows)) + 0.5, [_literal(r) for r in rows])
        ax.tick_params(length=0, pad=1.5)
        parts = {prompt_columns / 2: "prompt (user's text)"}
        if prompt_columns < len(columns):
            ax.axvline(prompt_columns, color=INK, linewidth=0.8)
            parts[(prompt_columns + len(columns)) / 2] = "answer so far"
        top = ax.secondary_xaxis("top")
        top.set_xticks(list(parts), list(parts.values()))
        top.tick_params(length=0, labelsize=6.5)
        ax.set_ylabel("generated token (explained)")
        bar = fig.colorbar(mesh, ax=ax, extend="both", shrink=min(1.0, 3.0 / height), pad=0.01, aspect=30)
        bar.solids.set_rasterized(False)  # a raster image would be an embedded file the PDF renderer does not load
        bar.solids.set_edgecolor("face")  # no hairline seams between the bar's colour steps
        bar.set_label("attribution to log p(token)", fontsize=6.5)
        bar.ax.tick_params(labelsize=6)
        return _to_svg(fig, salt)
