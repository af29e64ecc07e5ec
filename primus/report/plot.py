"""``report.png``: loss (training and validation), learning rate, throughput and gradient norm
against iterations; a dashed vertical line marks each iteration a resumed run started from."""

from __future__ import annotations

from pathlib import Path

from primus.report.run_report import RunMetrics, end_span, smooth, smoothed_ends, steady


def _axis(ax, title: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)


def _mark_resumes(axes, resumes: list[int]) -> None:
    for ax in axes:
        for n, iteration in enumerate(resumes):
            ax.axvline(
                iteration,
                color="tab:gray",
                linestyle="--",
                linewidth=1,
                label="resumed from checkpoint" if n == 0 else None,
            )


def draw(metrics: RunMetrics, out: Path) -> Path:
    import logging

    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    fig, axes = plt.subplots(2, 2, figsize=(12, 8), layout="constrained")
    (ax_loss, ax_lr), (ax_tp, ax_gn) = axes
    _mark_resumes(axes.flat, metrics.resumes)

    steps, losses = metrics.get("loss")
    span = end_span(len(losses))
    smoothed = smooth(losses, 1.0 - 1.0 / span)  # the same smoothing as the title's two ends
    ax_loss.plot(steps, losses, color="tab:blue", alpha=0.3, linewidth=1, label="training, per iteration")
    ax_loss.plot(
        steps,
        smoothed,
        color="tab:blue",
        linewidth=2,
        label=f"training, smoothed (EMA over ~{span} iterations)",
    )
    v_steps, v_losses = metrics.get("validation_loss")
    if v_losses:
        ax_loss.plot(
            v_steps, v_losses, color="tab:purple", marker="o", markersize=4, linewidth=2, label="validation"
        )
    ax_loss.legend(loc="upper right")
    _axis(ax_loss, "Loss (cross-entropy)", "loss (nats/token)")

    lr_steps, lrs = metrics.get("lr")
    if lrs:
        ax_lr.plot(lr_steps, lrs, color="tab:orange", linewidth=2)
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    _axis(ax_lr, "Learning rate (warm-up + decay schedule)", "learning rate")

    tp_steps, tps = steady(*metrics.get("tokens_per_second"), metrics.resumes)
    if tps:
        ax_tp.plot(tp_steps, tps, color="tab:green", alpha=0.3, linewidth=1, label="per iteration")
        ax_tp.plot(tp_steps, smooth(tps), color="tab:green", linewidth=2, label="smoothed (EMA 0.9)")
        ax_tp.set_ylim(bottom=0)
        ax_tp.yaxis.set_major_formatter(EngFormatter())
        ax_tp.legend(loc="lower right")
    _axis(ax_tp, "Throughput (first iteration of each run excluded)", "tokens / second")

    gn_steps, gns = metrics.get("grad_norm")
    if gns:
        ax_gn.plot(gn_steps, gns, color="tab:red", linewidth=1)
        ax_gn.set_ylim(bottom=0)
    _axis(ax_gn, "Gradient norm (before clipping)", "L2 norm")

    for ax, values in ((ax_lr, lrs), (ax_tp, tps), (ax_gn, gns)):
        if not values:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)

    name = metrics.run_dir.resolve().name
    title = (
        f"Primus run {name}: iterations {steps[0]}-{steps[-1]}, loss {{:.3f}} -> {{:.3f}} (smoothed)".format(
            *smoothed_ends(losses)
        )
    )
    if v_losses:
        title += f", validation {v_losses[-1]:.3f}"
    if metrics.resumes:
        title += f", resumed {len(metrics.resumes)}x"
    fig.suptitle(title, fontsize=13)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
