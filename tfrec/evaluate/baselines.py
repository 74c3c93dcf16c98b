"""Score functions for `tfrec.evaluate.metrics.full_ranking_metrics`: item popularity (the
reference a real model must beat) and embedding dot products. ID-only matrix factorisation is
a model (`[model] kind = "mf"`: tfrec.model.recommender.resolved), trained like tfrec's GNN."""

import numpy as np

from tfrec.errors import TfrecError
from tfrec.evaluate.metrics import ScoreFn

__all__ = [
    "embedding_score_fn",
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


def embedding_score_fn(user_emb: np.ndarray, item_emb: np.ndarray,
                       item_bias: np.ndarray | None = None) -> ScoreFn:
    """Returns a score_fn: user_rows [B] -> user_emb[rows] @ item_emb.T (+ item_bias [I]),
    [B, I] float32."""
    user_emb = np.asarray(user_emb, dtype=np.float32)
    item_emb_t = np.ascontiguousarray(np.asarray(item_emb, dtype=np.float32).T)
    if item_bias is None:
        return lambda rows: user_emb[rows] @ item_emb_t
    bias = np.asarray(item_bias, dtype=np.float32)
    return lambda rows: user_emb[rows] @ item_emb_t + bias
