"""Tables and plots of btune_wrap's results (plain text, JSON-ready data and PNG files).

Each stage keeps its functions together in its own section below. Plots are bare matplotlib
``Figure`` objects (no pyplot: no display needed, and no global backend switch that would turn
off a notebook's inline plots), written atomically as PNG; tables are pandas DataFrames, turned
into text with the ``format_*`` functions.
"""

from __future__ import annotations


def _figure(nrows: int = 1, ncols: int = 1, **kwargs):
    """A bare ``Figure`` (constrained layout) and its axes, as ``pyplot.subplots`` returns."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=kwargs.pop("figsize", None), layout="constrained")
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _save_png(fig, path, dpi: int = 110):
    """Write ``fig`` to ``path`` as PNG, atomically; returns the path."""
    from pathlib import Path

    from .atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


# -- evaluation (btune evaluate) -----------------------------------------------------------

#: Colours and markers of the evaluation methods, shared by the table's plots.
_EVAL_STYLE = {
    "oracle": ("#444444", "*"),
    "model": ("#d62728", "o"),
    "fixed_best": ("#1f77b4", "s"),
    "genetic": ("#2ca02c", "^"),
    "defaults": ("#ff7f0e", "D"),
}
#: Where each method's tradeoff labels go around its markers (points).
_EVAL_LABEL_OFFSETS = {
    "oracle": (0, 9),
    "model": (7, 5),
    "fixed_best": (-7, -6),
    "genetic": (-7, 6),
    "defaults": (7, -6),
}
_EVAL_LABELS = {
    "oracle": "oracle (best measured, per chunk)",
    "model": "model",
    "fixed_best": "fixed best (one category for all)",
    "genetic": "genetic Btune",
    "defaults": "blosc2 defaults",
}


def format_evaluation(evaluation) -> str:
    """The evaluation as text: a header, one line per (tradeoff, method), notes.

    ``evaluation`` is a :class:`btune_wrap.evaluate.Evaluation`. The best method of each
    tradeoff (lowest mean regret, oracle aside) is marked ``<- best``.
    """
    meta = evaluation.meta
    summary = evaluation.summary
    mode = evaluation.mode.name.lower()
    nchunks = sum(m["chunks"] for m in meta.get("measurements", []))
    ncats = len(meta.get("measured_categories") or [])
    lines = [
        f"Evaluation of {meta.get('title', '')}: {nchunks} chunks, {ncats} measured categories",
        f"J = t*log(cratio) + (1-t)*log({mode} speed); regret = 1 - exp(J - J_oracle) and",
        "gain = exp(J_oracle - J) - 1 (how much better the oracle is), both 0 for the best",
        "category measured on each chunk (the oracle); totals: sum nbytes / sum cbytes,"
        " sum nbytes / sum time",
        "",
    ]
    header = (
        f"{'tradeoff':>8}  {'method':<10}  {'mean regret':>11}  {'mean gain':>9}  "
        f"{'max regret':>10}  {'cratio':>7}  {'comp GB/s':>9}  {'decomp GB/s':>11}  choice"
    )
    lines += [header, "-" * (len(header) + 30)]
    previous = None
    for row in summary.itertuples(index=False):
        shown_t = f"{row.tradeoff:g}" if row.tradeoff != previous else ""
        if row.tradeoff != previous and previous is not None:
            lines.append("")
        previous = row.tradeoff
        mark = "  <- best" if row.best else ""
        lines.append(
            f"{shown_t:>8}  {row.method:<10}  {row.mean_regret:>11.3f}  {row.mean_gain:>9.1%}  "
            f"{row.max_regret:>10.3f}  {row.cratio:>7.2f}  {row.cspeed_gbs:>9.2f}  "
            f"{row.dspeed_gbs:>11.2f}  {row.choice}{mark}"
        )
    best = evaluation.best_methods()
    if best:
        lines += ["", "Best per tradeoff: " + ", ".join(f"{t:g} {m}" for t, m in best.items())]
    for column, oracle in (("mean_gain", ""), ("mean_gain_measured", " (vs best measured)")):
        gains = summary.groupby("method", sort=False)[column].mean()
        lines.append(
            f"Mean gain over the tradeoffs{oracle}: "
            + ", ".join(f"{m} {g:.1%}" for m, g in gains.items())
        )
    if len(meta.get("measurements", [])) > 1:
        from .evaluate import gain_table

        lines += ["", "Mean gain per dataset (its own fixed best category):"]
        lines.append(format_gain_table(gain_table(evaluation.choices)))
    for method, reason in evaluation.notes.items():
        lines.append(f"{method}: {reason}")
    return "\n".join(lines)


def format_gain_table(table) -> str:
    """A :func:`btune_wrap.evaluate.gain_table` as text, gains in percent."""
    return table.to_string(float_format=lambda v: f"{100 * v:.1f}%", na_rep="n/a")


def plot_evaluation_regret(summary, path, *, title: str = ""):
    """Mean regret against the oracle per tradeoff, one line per method; returns the path.

    ``summary`` is :attr:`Evaluation.summary`; the PNG is written atomically to ``path``.
    """
    from matplotlib.ticker import PercentFormatter

    fig, ax = _figure(figsize=(9, 5.2))
    for method in dict.fromkeys(summary["method"]):
        rows = summary[summary["method"] == method].sort_values("tradeoff")
        color, marker = _EVAL_STYLE.get(method, ("#7f7f7f", "x"))
        style = {"linestyle": "--", "linewidth": 1.2} if method == "oracle" else {"linewidth": 2}
        ax.plot(
            rows["tradeoff"],
            rows["mean_regret"] * 100,
            marker=marker,
            color=color,
            label=_EVAL_LABELS.get(method, method),
            markersize=6,
            **style,
        )
    tradeoffs = sorted(summary["tradeoff"].unique())
    ax.set_xticks(tradeoffs, [f"{t:g}" for t in tradeoffs])
    ax.set_xlabel("tradeoff (0 = fastest ... 1 = best ratio)")
    ax.set_ylabel("mean regret against the oracle")
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    ax.set_ylim(bottom=-1)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    ax.set_title(
        "How far each method falls short of the best category per chunk (lower is better)"
        + (f"\n{title}" if title else ""),
        fontsize=11,
    )
    return _save_png(fig, path)


def plot_evaluation_frontier(
    frontier, summary, path, *, mode: str = "comp", title: str = "", marked=(0.0, 0.5, 1.0)
):
    """The speed/ratio frontier: measured categories and each method's choice; returns the path.

    Every measured category is a grey point (dataset total ratio against total speed of the
    evaluation's mode); the Pareto-optimal ones are joined and named. Each method's result is
    marked at the tradeoffs ``marked`` that were evaluated (else the first, middle and last).
    When the model's points sit in a small part of the plot, a second panel zooms on them.
    ``mode`` (``"comp"`` or ``"decomp"``) names the speed on the x axis.
    """
    import math

    import numpy as np
    from matplotlib.patches import Rectangle

    tradeoffs = sorted(summary["tradeoff"].unique())
    shown = [t for t in tradeoffs if any(abs(t - m) < 1e-9 for m in marked)]
    if not shown:
        shown = sorted({tradeoffs[0], tradeoffs[len(tradeoffs) // 2], tradeoffs[-1]})
    marks = summary[summary["tradeoff"].isin(shown)]
    zoom = _frontier_zoom(frontier, marks)
    ncols = 2 if zoom is not None else 1
    fig, axes = _figure(1, ncols, figsize=(11 if ncols == 1 else 17, 7), squeeze=False)
    speed = "decompression" if mode == "decomp" else "compression"
    xs = np.log10(np.concatenate([frontier["speed_gbs"], marks["speed_gbs"]]))
    ys = np.concatenate([frontier["cratio"], marks["cratio"]])
    full = (float(np.ptp(xs)) or 1.0, float(np.ptp(ys)) or 1.0)
    for k, ax in enumerate(axes[0]):
        if k == 1 and zoom is not None:
            (x0, x1), (y0, y1) = zoom
            _draw_frontier(ax, frontier, marks, (math.log10(x1 / x0), y1 - y0))
        else:
            _draw_frontier(ax, frontier, marks, full)
        ax.set_xscale("log")
        ax.set_xlabel(f"total {speed} speed (GB/s, log scale)")
        ax.set_ylabel("total compression ratio (x)")
        ax.grid(alpha=0.3, which="both")
        if k == 1 and zoom is not None:
            (x0, x1), (y0, y1) = zoom
            ax.set_xlim(x0, x1)
            ax.set_ylim(y0, y1)
            ax.set_title("zoom on the model's results (dotted box on the left)", fontsize=10)
            axes[0][0].add_patch(
                Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="#888888", ls=":")
            )
    axes[0][0].legend(loc="best", fontsize=8)
    fig.suptitle(
        "Speed/ratio frontier: further up and right is better; methods at tradeoffs "
        + ", ".join(f"{t:g}" for t in shown)
        + (f"\n{title}" if title else ""),
        fontsize=11,
    )
    return _save_png(fig, path)


def _frontier_zoom(frontier, marks):
    """``((x0, x1), (y0, y1))`` around the model's points, or None when that box is most of the
    plot anyway."""
    import numpy as np

    focus = marks[marks["method"] == "model"]
    if focus.empty:
        return None
    xs = np.log10(np.concatenate([frontier["speed_gbs"], marks["speed_gbs"]]))
    ys = np.concatenate([frontier["cratio"], marks["cratio"]])
    fx, fy = np.log10(focus["speed_gbs"].to_numpy()), focus["cratio"].to_numpy()
    span_x, span_y = np.ptp(xs) or 1.0, np.ptp(ys) or 1.0
    pad_x = max(0.3 * np.ptp(fx), 0.06 * span_x)
    pad_y = max(0.3 * np.ptp(fy), 0.06 * span_y)
    x0, x1 = fx.min() - pad_x, fx.max() + pad_x
    y0, y1 = fy.min() - pad_y, fy.max() + pad_y
    if (x1 - x0) > 0.5 * span_x and (y1 - y0) > 0.5 * span_y:
        return None
    return (10**x0, 10**x1), (y0, y1)


def _draw_frontier(ax, frontier, marks, spans: tuple[float, float]) -> None:
    """Points, frontier and method marks on ``ax``; ``spans`` (log10 speed, ratio) is the
    extent shown, from which close labels are merged or left out so they do not overlap."""
    import math

    def near(a: tuple[float, float], b: tuple[float, float], wide: float = 0.03) -> bool:
        close_x = abs(math.log10(a[0] / b[0])) < wide * spans[0]
        return close_x and abs(a[1] - b[1]) < 0.03 * spans[1]

    ax.scatter(
        frontier["speed_gbs"],
        frontier["cratio"],
        s=22,
        color="#b0b0b0",
        zorder=1,
        label="measured categories (dataset totals)",
    )
    front = frontier[frontier["pareto"]].sort_values("speed_gbs")
    ax.plot(
        front["speed_gbs"],
        front["cratio"],
        color="#808080",
        linewidth=1,
        zorder=1,
        label="frontier (no category is both faster and smaller)",
    )
    named: list[tuple[float, float]] = []
    for row in front.itertuples(index=False):
        if any(near((row.speed_gbs, row.cratio), p, wide=0.25) for p in named):  # text width
            continue
        named.append((row.speed_gbs, row.cratio))
        ax.annotate(
            row.category,
            (row.speed_gbs, row.cratio),
            textcoords="offset points",
            xytext=(-3, 4),
            ha="right",
            fontsize=6.5,
            color="#707070",
        )
    for method in dict.fromkeys(marks["method"]):
        rows = marks[marks["method"] == method]
        color, marker = _EVAL_STYLE.get(method, ("#7f7f7f", "x"))
        ax.scatter(
            rows["speed_gbs"],
            rows["cratio"],
            s=90,
            marker=marker,
            color=color,
            edgecolor="black",
            linewidth=0.6,
            zorder=3,
            alpha=0.9,
            label=_EVAL_LABELS.get(method, method),
        )
        # One label per distinct point (a method may choose alike at several tradeoffs),
        # placed in a direction of its own so that methods close together stay readable.
        groups: list[tuple[float, float, list[float]]] = []
        for row in rows.itertuples(index=False):
            for x, y, ts in groups:
                if near((row.speed_gbs, row.cratio), (x, y)):
                    ts.append(row.tradeoff)
                    break
            else:
                groups.append((row.speed_gbs, row.cratio, [row.tradeoff]))
        dx, dy = _EVAL_LABEL_OFFSETS.get(method, (6, 5))
        for x, y, ts in groups:
            ax.annotate(
                "t=" + ",".join(f"{t:g}" for t in ts),
                (x, y),
                textcoords="offset points",
                xytext=(dx, dy),
                ha="left" if dx >= 0 else "right",
                va="bottom" if dy >= 0 else "top",
                fontsize=8,
                color=color,
                fontweight="bold",
            )


# -- training (btune_wrap.train) -----------------------------------------------------------


def format_predicted(predicted) -> str:
    """The tutorial's per-tradeoff table: 1st, 2nd and 3rd most predicted categories (with
    their share of the chunks), mean cratio and mean compression/decompression speed (GB/s).

    ``predicted`` is :attr:`btune_wrap.train.TrainedModel.predicted` (a DataFrame).
    """
    import pandas as pd

    table = pd.DataFrame(index=[f"{t:.1f}" for t in predicted["tradeoff"]])
    for key, title in (("first", "1st"), ("second", "2nd"), ("third", "3rd")):
        if key not in predicted:
            continue
        table[f"{title} most predicted"] = [
            name if name == "-" else f"{name} {share:.0%}"
            for name, share in zip(predicted[key], predicted[f"{key}_share"], strict=True)
        ]
    table["Mean cratio"] = predicted["cratio"].to_numpy()
    table["Mean cspeed (GB/s)"] = predicted["cspeed_gbs"].to_numpy()
    table["Mean dspeed (GB/s)"] = predicted["dspeed_gbs"].to_numpy()
    return table.to_string(float_format=lambda v: f"{v:.2f}")


def format_training_scores(scores, splits=("train", "test")) -> str:
    """Top-1/top-3 accuracy, mean regret of the model and of the best fixed category, per
    tradeoff, one column group per split in ``splits``; a last line with the means.

    ``scores`` is :attr:`btune_wrap.train.TrainedModel.scores` (a DataFrame).
    """
    import pandas as pd

    columns = (
        ("top1", "top-1", "{:.1%}"),
        ("top3", "top-3", "{:.1%}"),
        ("mean_regret", "regret", "{:.2%}"),
        ("fixed_regret", "fixed", "{:.2%}"),
    )
    parts = []
    for side in splits:
        rows = scores[scores["split"] == side].set_index("tradeoff")
        if rows.empty:
            continue
        group = f"{side} ({int(rows['chunks'].iloc[0])} chunks)"
        part = pd.DataFrame(
            {(group, title): rows[key].map(fmt.format) for key, title, fmt in columns}
        )
        part.index = [f"{t:.1f}" for t in part.index]
        part.loc["mean"] = [fmt.format(rows[key].mean()) for key, _, fmt in columns]
        parts.append(part)
    return pd.concat(parts, axis=1).to_string()


def format_legend(categories) -> str:
    """``index  name  [codec, filter, clevel, splitmode]`` per category, one a line."""
    width = max((len(c.name) for c in categories), default=0)
    return "\n".join(
        f"{i:>3}  {c.name:<{width}}  {list(c.to_plugin())}" for i, c in enumerate(categories)
    )


def plot_training_history(history, path, *, title: str = ""):
    """Save the training history (a dict of per-epoch lists) as a PNG; returns the path.

    Panels: loss, top-1 accuracy (training and validation) and validation mean regret.
    """
    import numpy as np

    fig, axes = _figure(1, 3, figsize=(14, 4))
    panels = [
        ("loss", ("loss", "val_loss")),
        ("top-1 accuracy", ("accuracy", "val_accuracy")),
        ("mean regret", ("val_regret",)),
    ]
    for ax, (label, keys) in zip(axes, panels, strict=True):
        for key in keys:
            values = history.get(key)
            if values:
                ax.plot(np.arange(1, len(values) + 1), values, label=key)
        ax.set_xlabel("epoch")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Training history {title}".strip())
    return _save_png(fig, path, dpi=100)


def plot_training_scores(scores, path, *, title: str = ""):
    """Save top-1/top-3 accuracy and mean regret per tradeoff (train, validation, test) as a
    PNG; returns the path. ``scores`` is :attr:`btune_wrap.train.TrainedModel.scores`."""
    fig, axes = _figure(1, 2, figsize=(12, 4.2))
    styles = {"train": "--", "validation": ":", "test": "-"}
    for side, style in styles.items():
        rows = scores[scores["split"] == side]
        if rows.empty:
            continue
        t = rows["tradeoff"].to_numpy()
        axes[0].plot(t, rows["top1"], style, marker="o", color="C0", label=f"top-1 {side}")
        axes[0].plot(t, rows["top3"], style, marker="s", color="C1", label=f"top-3 {side}")
        axes[1].plot(t, rows["mean_regret"], style, marker="o", color="C2", label=f"model {side}")
        if side == "test":
            axes[1].plot(t, rows["fixed_regret"], style, color="C7", label="fixed best, test")
    axes[0].set_ylim(0, 1.02)
    axes[0].set_title("accuracy")
    axes[1].set_title("mean regret (1 - exp(J - J_best))")
    axes[1].set_ylim(bottom=0)
    for ax in axes:
        ax.set_xlabel("tradeoff (0 = speed, 1 = ratio)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Scores per tradeoff {title}".strip())
    return _save_png(fig, path, dpi=100)
