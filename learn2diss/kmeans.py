"""k-means: the one fit and the one assignment of the package (pretraining's frame and utterance targets, the
purity metrics of the evaluations).

- :func:`fit_kmeans`: Lloyd's algorithm with ``faiss.Kmeans`` on every row given (or on ``max_points`` random
  ones), returning the centroids and the inertia. Its one contract: fewer rows than clusters, or a NaN/inf
  row, is an :class:`~learn2diss.errors.InputError` naming the counts, never a silent cap. A caller whose
  number of clusters follows the data (speaker purity's Q) caps it itself and says so.
- :func:`assign`: the nearest centroid of each row, with torch on the rows' own device (a GPU labels 960 h of
  frames in minutes; faiss-cpu would take hours).

>>> import numpy as np
>>> x = np.array([[0.0], [0.1], [5.0], [5.1]], dtype=np.float32)
>>> centroids, inertia = fit_kmeans(x, 2, iterations=10, seed=0)
>>> sorted(assign(x, centroids).tolist()) == [0, 0, 1, 1], round(inertia, 3)
(True, 0.01)
"""

from __future__ import annotations

import numpy as np
import torch

from learn2diss.errors import InputError

__all__ = ["fit_kmeans", "assign"]


def fit_kmeans(x: np.ndarray, k: int, iterations: int, seed: int,
               max_points: int | None = None) -> tuple[np.ndarray, float]:
    """Lloyd k-means with faiss on ``x`` (N, D); returns ``(centroids (k, D) float32, inertia)``.

    Args:
        max_points: fit on this many random rows of ``x`` (drawn with ``seed``) when it has more; the inertia
            is that of the rows fitted.

    Raises:
        InputError: fewer rows than clusters, or NaN/inf values.
    """
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise InputError("features contain NaN or infinite values; cannot run k-means")
    if max_points is not None and len(x) > max_points:
        x = x[np.random.default_rng(seed).choice(len(x), size=max_points, replace=False)]
    if len(x) < k:
        raise InputError(f"k-means with {k} clusters needs at least {k} points, got {len(x)}")
    # max_points_per_centroid: use every row given (faiss would silently subsample to 256 per centroid)
    kmeans = faiss.Kmeans(x.shape[1], k, niter=iterations, seed=seed, max_points_per_centroid=len(x) // k + 1,
                          verbose=False)
    kmeans.train(x)
    distances, _ = kmeans.index.search(x, 1)
    return np.array(kmeans.centroids), float(distances.sum())


def assign(x: torch.Tensor | np.ndarray, centroids: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Nearest centroid (squared Euclidean) of each row of ``x`` (N, D); (N,) int64 on ``x``'s device."""
    x = torch.as_tensor(x).float()
    c = torch.as_tensor(centroids).to(x.device, torch.float32)
    scores = x @ c.T - 0.5 * c.pow(2).sum(dim=1)  # argmax of x.c - |c|^2 / 2 = argmin |x - c|^2
    return scores.argmax(dim=1)
