"""t-SNE maps of final representations, coloured by class (the paper's Fig. 3, computed).

`embed` runs scikit-learn's Barnes-Hut t-SNE on (by default L2-normalised) features; `separation` scores a
map by the silhouette of the true classes in it (about 1: tight, separate clusters; about 0: classes overlap);
`figure` draws one panel per model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from sklearn.manifold import TSNE
from sklearn.metrics import silhouette_score

from cl_features import workdir


def embed(
    features, *, perplexity: float = 30.0, seed: int = 0, normalise: bool = True, max_iter: int = 1000
) -> np.ndarray:
    """features: [N, d] -> [N, 2] float64 t-SNE map (PCA init, learning rate 'auto', Euclidean metric).

    normalise: divide each row by its L2 norm first (contrastive features are compared by cosine), rows of
    norm 0 are left at 0. Same inputs and seed, same map. perplexity must be below N - 1.
    """
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or x.shape[0] < 4 or x.shape[1] < 1:
        raise ValueError(f"features must be [N >= 4, d >= 1]; got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features must be finite")
    if not (np.isfinite(perplexity) and 0 < perplexity < x.shape[0] - 1):
        raise ValueError(f"perplexity must be in (0, N - 1 = {x.shape[0] - 1}); got {perplexity}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 250:
        raise ValueError(f"max_iter must be an int >= 250 (scikit-learn's minimum); got {max_iter!r}")
    if normalise:
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms > 0, norms, 1.0)
    tsne = TSNE(
        n_components=2,
        perplexity=float(perplexity),
        init="pca",
        learning_rate="auto",
        max_iter=int(max_iter),
        random_state=int(seed),
    )
    return np.asarray(tsne.fit_transform(x), np.float64)


def separation(embedding, labels) -> float:
    """Silhouette score (Euclidean) of the classes `labels: [N]` in `embedding: [N, k]`; NaN for < 2 classes."""
    e = np.asarray(embedding, np.float64)
    y = np.asarray(labels)
    if e.ndim != 2 or y.shape != (e.shape[0],):
        raise ValueError(f"embedding must be [N, k] and labels [N]; got {e.shape} and {y.shape}")
    n_classes = len(np.unique(y))
    if n_classes < 2 or n_classes >= e.shape[0]:
        return float("nan")
    return float(silhouette_score(e, y, metric="euclidean"))


def figure(
    embeddings: Mapping[str, np.ndarray],
    labels,
    path: str,
    *,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> None:
    """One scatter panel per model, four to a row (embeddings: {name: [N, 2]}, same rows and labels: [N]); PNG."""
    if not embeddings:
        raise ValueError("embeddings must hold at least one {name: [N, 2]} map")
    y = np.asarray(labels)
    classes = np.unique(y)
    names = list(class_names) if class_names is not None else [str(c) for c in classes]
    cmap = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
    n = len(embeddings)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig = Figure(figsize=(3.4 * cols + 1.6, 3.4 * rows + 0.4))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (model, emb) in zip(axes.flat, embeddings.items()):
        emb = np.asarray(emb)
        if emb.shape != (y.shape[0], 2):
            raise ValueError(f"embeddings[{model!r}] must be [N={y.shape[0]}, 2]; got {emb.shape}")
        for i, c in enumerate(classes):
            sel = y == c
            label = names[int(c)] if np.issubdtype(type(c), np.integer) and int(c) < len(names) else str(c)
            ax.scatter(emb[sel, 0], emb[sel, 1], s=5, color=cmap(i % cmap.N), label=label, alpha=0.8, linewidths=0)
        ax.set(title=model, xticks=[], yticks=[])
    axes[0, cols - 1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, markerscale=2, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    workdir.savefig(fig, path, dpi=110)
