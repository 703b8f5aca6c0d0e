"""The training curves of a run (``curves.png`` in the run directory): loss and accuracy per epoch, training and
validation, with the selected epoch marked."""
from __future__ import annotations

import json
from pathlib import Path

from eventsnn.util.files import atomic_path


def plot_curves(rundir, out=None) -> Path:
    """Draw ``rundir/metrics.jsonl`` (and the selected epoch and test accuracy of ``summary.json`` when there)
    into ``out`` (default ``rundir/curves.png``); return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rundir = Path(rundir)
    rows = [json.loads(line) for line in (rundir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    summary_f = rundir / "summary.json"
    summary = json.loads(summary_f.read_text()) if summary_f.exists() else {}
    ep = [r["epoch"] for r in rows]
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax_l.plot(ep, [r["train_loss"] for r in rows], label="training")
    ax_l.plot(ep, [r["val_loss"] for r in rows], label="validation")
    ax_l.set(xlabel="epoch", ylabel="loss (per sample)", title="loss")
    ax_a.plot(ep, [r["train_acc"] for r in rows], label="training")
    ax_a.plot(ep, [r["val_acc"] for r in rows], label="validation")
    ax_a.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1), title="accuracy")
    best = summary.get("best_epoch")
    for ax in (ax_l, ax_a):
        if best is not None:
            ax.axvline(best, color="0.5", ls=":", label=f"selected (epoch {best})")
        ax.grid(alpha=0.3)
    if summary.get("test_acc") is not None:
        ax_a.axhline(summary["test_acc"], color="C3", ls="--", lw=1, label=f"test {summary['test_acc']:.3f}")
    ax_a.legend(fontsize=8, loc="upper left")
    fig.suptitle(rundir.name, fontsize=9)
    fig.tight_layout()
    out = Path(out) if out is not None else rundir / "curves.png"
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return out
