"""The demo's figures (matplotlib, Agg): utterance embeddings in 2-D coloured by speaker, training curves.

* ``embeddings_<model>.png``: t-SNE (scikit-learn, PCA initialisation, fixed seed) of the test
  utterances, left the utterance encoder's pooled embedding z^L, right the frame encoder's last layer
  mean-pooled over each utterance; one colour per (unseen) test speaker. A disentangled model shows
  speaker clusters on the left and mixed speakers on the right.
* ``training_curves.png``: every loss term of the parent run, the SimCLR stage and the two joint
  runs, read from their ``metrics.jsonl``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from learn2diss.io import parse_json, read_text, save_figure


def project_2d(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """t-SNE of the standardised rows of ``x`` (n, d) -> (n, 2); perplexity capped for small n."""
    from sklearn.manifold import TSNE

    x = np.asarray(x, dtype=np.float64)
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-8)
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def plot_embeddings(panels: Mapping[str, np.ndarray], speakers: Sequence[str], title: str, path: Path) -> Path:
    """One scatter panel per representation (``panels``: name -> (n, d)), coloured by ``speakers``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(set(speakers))
    colours = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False)
    for ax, (name, x) in zip(axes[0], panels.items(), strict=True):
        xy = project_2d(x)
        for i, spk in enumerate(names):
            keep = np.array([s == spk for s in speakers])
            ax.scatter(xy[keep, 0], xy[keep, 1], s=12, color=colours(i % colours.N), label=spk)
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(title="speaker", fontsize=7, title_fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    out = save_figure(path, fig, dpi=110)
    plt.close(fig)
    return out


def read_metrics(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``metrics.jsonl`` of a training stage -> {key: (steps, values)}."""
    records = [parse_json(line, path) for line in read_text(path, "metrics log").splitlines() if line.strip()]
    keys = sorted({k for r in records for k in r if k != "step"})
    out = {}
    for key in keys:
        pairs = [(r["step"], r[key]) for r in records if key in r]
        out[key] = (np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs], dtype=np.float64))
    return out


def plot_training_curves(parent: Path, simclr: Path, joints: Mapping[str, Path], path: Path) -> Path:
    """Loss curves: the parent's masked prediction (when this run trained it), SimCLR of h, and each loss term of
    the joint runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("parent: HuBERT it. 1 CE (L_CE)", {"parent": (parent, "loss/frame_ce")}),
              ("h alone: SimCLR InfoNCE (eq. 5)", {"utt-simclr": (simclr, "loss/infonce")})]
    for key, title in (("loss/frame_ce", "L_CE^g (eq. 3)"), ("loss/pseudo_con", "L_PC^g (eq. 3)"),
                       ("loss/infonce", "L_InfoNCE^h (eq. 5)"), ("loss/utt_ce", "L_CE^h (eq. 6)"),
                       ("loss/mi_club", "CLUB estimate L_MI (eq. 8)"), ("loss/total", "L_total (eq. 10)")):
        panels.append((f"joint: {title}", {name: (p, key) for name, p in joints.items()}))
    fig, axes = plt.subplots(2, 4, figsize=(17, 7.5))
    for ax, (title, curves) in zip(axes.flat, panels, strict=True):
        for label, (file, key) in curves.items():
            metrics = read_metrics(file) if file.is_file() else {}
            if key in metrics:
                ax.plot(*metrics[key], label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        if ax.lines:
            ax.legend(fontsize=8)
        else:  # e.g. the shipped parent: not trained in this run
            ax.text(0.5, 0.5, "not trained in this run", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    out = save_figure(path, fig, dpi=110)
    plt.close(fig)
    return out
