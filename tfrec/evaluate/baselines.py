"""The reference a real model must beat: item popularity, as a score function for
`tfrec.evaluate.metrics.full_ranking_metrics`. ID-only matrix factorisation is a model
(`[model] kind = "mf"`: tfrec.model.recommender.resolved), trained like tfrec's GNN and scored
by `tfrec.evaluate.scoring.embedding_score_fn`."""

import numpy as np

from tfrec.errors import TfrecError
from tfrec.evaluate.metrics import ScoreFn

__all__ = [
    "popularity_score_fn",
    "popularity_scores",
]


def popularity_scores(train_items: np.ndarray, num_items: int) -> np.ndarray:
    """Returns [I] float32: the number of training interactions of each item."""
    train_items = np.asarray(train_items, dtype=np.int64).reshape(-1)
    if train_items.size and (train_items.min() < 0 or train_items.max() >= num_items):
        raise TfrecError(f"a training item row is outside [0, {num_items}).")
    return np.bincount(train_items, minlength=num_items).astype(np.float32)


def popularity_score_fn(popularity: np.ndarray) -> ScoreFn:
    """Returns a score_fn: user_rows [B] -> [B, I] float32, the same popularity row for everyone."""
    popularity = np.asarray(popularity, dtype=np.float32).reshape(-1)
    return lambda rows: np.broadcast_to(popularity, (len(rows), popularity.size))
