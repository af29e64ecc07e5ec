"""``report.png``: loss, learning rate, throughput and gradient norm against iterations."""

from __future__ import annotations

from pathlib import Path

from primus.report.run_report import RunMetrics, smooth, steady


def _axis(ax, title: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)


def draw(metrics: RunMetrics, out: Path) -> Path:
    import logging

    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    fig, axes = plt.subplots(2, 2, figsize=(12, 8), layout="constrained")
    (ax_loss, ax_lr), (ax_tp, ax_gn) = axes

    steps, losses = metrics.get("loss")
    ax_loss.plot(steps, losses, color="tab:blue", alpha=0.3, linewidth=1, label="per iteration")
    ax_loss.plot(steps, smooth(losses), color="tab:blue", linewidth=2, label="smoothed (EMA 0.9)")
    ax_loss.legend(loc="upper right")
    _axis(ax_loss, "Training loss (cross-entropy)", "loss (nats/token)")

    lr_steps, lrs = metrics.get("lr")
    if lrs:
        ax_lr.plot(lr_steps, lrs, color="tab:orange", linewidth=2)
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    _axis(ax_lr, "Learning rate (warm-up + decay schedule)", "learning rate")

    tp_steps, tps = steady(*metrics.get("tokens_per_second"))
    if tps:
        ax_tp.plot(tp_steps, tps, color="tab:green", alpha=0.3, linewidth=1, label="per iteration")
        ax_tp.plot(tp_steps, smooth(tps), color="tab:green", linewidth=2, label="smoothed (EMA 0.9)")
        ax_tp.set_ylim(bottom=0)
        ax_tp.yaxis.set_major_formatter(EngFormatter())
        ax_tp.legend(loc="lower right")
    _axis(ax_tp, "Throughput (first iteration excluded)", "tokens / second")

    gn_steps, gns = metrics.get("grad_norm")
    if gns:
        ax_gn.plot(gn_steps, gns, color="tab:red", linewidth=1)
        ax_gn.set_ylim(bottom=0)
    _axis(ax_gn, "Gradient norm (before clipping)", "L2 norm")

    for ax, values in ((ax_lr, lrs), (ax_tp, tps), (ax_gn, gns)):
        if not values:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)

    name = metrics.run_dir.resolve().name
    fig.suptitle(
        f"Primus run {name}: iterations {steps[0]}-{steps[-1]}, loss {losses[0]:.3f} -> {losses[-1]:.3f}",
        fontsize=13,
    )
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
