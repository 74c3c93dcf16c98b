"""Baseline score functions: popularity counts and embedding dot products."""

import numpy as np
import pytest

import tfrec  # noqa: F401
from tfrec.errors import TfrecError
from tfrec.evaluate.baselines import (
    popularity_score_fn,
    popularity_scores,
)
from tfrec.evaluate.scoring import embedding_score_fn


def test_popularity_scores_count_training_interactions():
    # Items 0, 2, 2, 3, 2 over 5 items -> counts [1, 0, 3, 1, 0].
    pop = popularity_scores(np.array([0, 2, 2, 3, 2]), num_items=5)
    assert pop.dtype == np.float32 and pop.tolist() == [1, 0, 3, 1, 0]
    scores = popularity_score_fn(pop)(np.array([4, 1]))
    assert scores.shape == (2, 5) and (scores == pop).all()
    with pytest.raises(TfrecError, match="outside"):
        popularity_scores(np.array([5]), num_items=5)


def test_embedding_score_fn_is_dot_product():
    # user 1 = [1, 2]; items [1, 0], [0, 1], [1, 1] -> [1, 2, 3].
    users = np.array([[0.0, 0.0], [1.0, 2.0]], np.float32)
    items = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
    assert embedding_score_fn(users, items)(np.array([1])).tolist() == [[1.0, 2.0, 3.0]]
    with_bias = embedding_score_fn(users, items, np.array([0.5, -1.0, 0.0]))
    assert with_bias(np.array([1])).tolist() == [[1.5, 1.0, 3.0]]
