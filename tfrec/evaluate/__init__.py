"""Evaluation: full-ranking top-K metrics and the baselines a model must beat.

  metrics    full-ranking Recall / NDCG / Precision / Hit / MRR of a score function
  scoring    score functions from embedding tables (every dot-product model)
  harness    one model on valid, test and the cold-start slice of test
  baselines  popularity (MF is a model: tfrec.model.recommender)
  item_item  EASE and RP3beta in closed form: item-item models of the training interactions
  blend      a model's scores blended with the item-item ones, the blend chosen on valid
  report     metrics as a table or JSON
  commands   `tfrec evaluate` (CLI glue: it rebuilds a trained run through tfrec.train)

Importing this package does not import TensorFlow.
"""

from tfrec.evaluate.baselines import (
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
from tfrec.evaluate.scoring import embedding_score_fn

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
