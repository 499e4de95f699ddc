"""Plots (matplotlib, the optional `plot` extra): a check's per-leaf overview."""

from __future__ import annotations

import numpy as np

from .paths import leaf_paths


def pyplot(who: str):
    """matplotlib.pyplot, or an ImportError saying that `who` needs the plot extra."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError(f"{who} needs matplotlib: pip install 'jaxcheck[plot]'.") from e
    return plt


def result_overview(result, ax=None, per_leaf: int = 2000):
    """`CheckResult.plot`: each element's |g − D| per leaf, failures red, median resolution."""
    plt = pyplot("CheckResult.plot")
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6, 1 + 0.8 * len(result.leaves)), 3.5))
    flat = {
        name: {p: np.ravel(np.asarray(v)) for p, v in leaf_paths(getattr(result, name))}
        for name in ("analytic", "numeric", "resolution")
    }
    failing = {
        (e.path, int(np.ravel_multi_index(e.index, result.leaves[e.path].shape)))
        for e in result.failures
    }
    rng = np.random.default_rng(0)
    for x, path in enumerate(result.leaves):
        err = np.abs(flat["analytic"][path] - flat["numeric"][path])
        idx = np.flatnonzero(np.isfinite(err))
        if idx.size > per_leaf:
            idx = np.sort(rng.choice(idx, per_leaf, replace=False))
        bad = np.array([(path, int(i)) in failing for i in idx], bool)
        jitter = x + rng.uniform(-0.25, 0.25, idx.size)
        ax.scatter(jitter[~bad], err[idx][~bad], s=4, c="tab:green", alpha=0.5)
        ax.scatter(jitter[bad], err[idx][bad], s=10, c="tab:red")
        res = np.abs(flat["resolution"][path])
        res = res[np.isfinite(res)]
        if res.size:
            ax.hlines(np.median(res), x - 0.35, x + 0.35, colors="black")
    ax.set_yscale("log")
    ax.set_xticks(range(len(result.leaves)))
    ax.set_xticklabels(list(result.leaves), rotation=30, ha="right")
    ax.set_ylabel("|g − D| per element")
    ax.set_title(f"jaxcheck: {result._headline()}", fontsize="small")
    ax.legend(handles=_legend_handles(), fontsize="small", loc="best")
    return ax


# What the overview's marks mean; the same three entries on every plot, so the key never changes.
LEGEND_LABELS = (
    "element: not wrong",
    "element: wrong",
    "leaf's median resolution (finite-difference error estimate)",
)


def _legend_handles():
    from matplotlib.lines import Line2D

    ok, bad, res = LEGEND_LABELS
    return [
        Line2D([], [], ls="", marker="o", ms=3, color="tab:green", alpha=0.5, label=ok),
        Line2D([], [], ls="", marker="o", ms=4, color="tab:red", label=bad),
        Line2D([], [], color="black", label=res),
    ]
