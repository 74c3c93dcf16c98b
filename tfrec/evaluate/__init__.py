"""Evaluation: full-ranking top-K metrics and the baselines a model must beat.

Importing this package does not import TensorFlow.
"""

from tfrec.evaluate.baselines import (
    embedding_score_fn,
    popularity_score_fn,
    popularity_scores,
)
from tfrec.evaluate.metrics import (
    cold_item_mask,
    csr_from_pairs,
    filter_targets,
    full_ranking_metrics,
    metric_names,
)

__all__ = [
    "cold_item_mask",
    "csr_from_pairs",
    "embedding_score_fn",
    "filter_targets",
    "full_ranking_metrics",
    "metric_names",
    "popularity_score_fn",
    "popularity_scores",
]
