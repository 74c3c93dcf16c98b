"""Score functions for `tfrec.evaluate.metrics.full_ranking_metrics` from embedding tables.

A score function maps user rows [B] to scores [B, I] over every item (`metrics.ScoreFn`). Any
model whose score is a dot product (plus an item offset) is evaluated through this one.
"""

import numpy as np

from tfrec.evaluate.metrics import ScoreFn

__all__ = ["embedding_score_fn"]


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
