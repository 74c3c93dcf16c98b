"""Baselines: popularity counts, and MF that recovers a planted block structure."""

import numpy as np
import pytest

import tfrec  # noqa: F401
from tfrec.errors import TfrecError
from tfrec.evaluate.baselines import (
    MFConfig,
    popularity_score_fn,
    popularity_scores,
    train_mf,
)
from tfrec.evaluate.metrics import csr_from_pairs, full_ranking_metrics
from tfrec.evaluate.scoring import embedding_score_fn

# Small and quick: the 400 training pairs form one batch (every positive competes with all of
# them). Across 3 planted datasets x 3 seeds this reaches recall@10 = 1 and AUC = 1 each time.
TINY = MFConfig(dim=4, epochs=20, batch_size=400, learning_rate=0.05, l2=0.01, temperature=0.5)


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


def planted_blocks(seed=0, users_per_group=20, items_per_group=20, per_user=12, held_out=2):
    """2 user groups x 2 item groups: each user only touches random items of its own group.

    Returns (train_users, train_items, test_users, test_items, U, I).
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for user in range(2 * users_per_group):
        group = user // users_per_group
        chosen = group * items_per_group + rng.choice(items_per_group, per_user, replace=False)
        test += [(user, i) for i in chosen[:held_out]]
        train += [(user, i) for i in chosen[held_out:]]
    train, test = np.array(train), np.array(test)
    n = 2 * users_per_group
    return train[:, 0], train[:, 1], test[:, 0], test[:, 1], n, 2 * items_per_group


def test_mf_recovers_planted_blocks_where_popularity_is_chance():
    tr_u, tr_i, te_u, te_i, num_users, num_items = planted_blocks()
    exclude = csr_from_pairs(tr_u, tr_i, num_users)
    targets = csr_from_pairs(te_u, te_i, num_users)
    # After excluding the 10 training items, 30 candidates remain: the other 10 of the user's own
    # group (both held-out items among them) and 20 of the other group. A model that learnt the
    # groups puts all 10 in-group items in its top 10: recall@10 = 1. Ranking blind to groups
    # finds each target in the top 10 with probability about 10/30: recall@10 ~ 0.33.
    user_emb, item_emb = train_mf(tr_u, tr_i, num_users, num_items, TINY)
    assert user_emb.shape == (num_users, 4) and item_emb.shape == (num_items, 4)
    assert user_emb.dtype == np.float32
    mf = full_ranking_metrics(embedding_score_fn(user_emb, item_emb), exclude, targets, ks=(10,))
    pop = full_ranking_metrics(
        popularity_score_fn(popularity_scores(tr_i, num_items)), exclude, targets, ks=(10,)
    )
    assert mf["recall@10"] >= 0.95, mf
    assert pop["recall@10"] <= 0.6, pop
    # AUC: a held-out item outscores the user's out-of-group items (chance 0.5, perfect 1).
    scores = user_emb @ item_emb.T
    out_group = np.arange(num_items)[None, :] // 20 != np.arange(num_users)[:, None] // 20
    auc = np.mean([(scores[u, i] > scores[u, out_group[u]]).mean() for u, i in zip(te_u, te_i)])
    assert auc >= 0.97, auc


def test_mf_is_deterministic_given_the_seed():
    tr_u, tr_i, _, _, num_users, num_items = planted_blocks()
    config = MFConfig(dim=4, epochs=2, batch_size=64, seed=3)
    a = train_mf(tr_u, tr_i, num_users, num_items, config)
    b = train_mf(tr_u, tr_i, num_users, num_items, config)
    c = train_mf(tr_u, tr_i, num_users, num_items, MFConfig(dim=4, epochs=2, batch_size=64, seed=4))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_mf_early_stopping_returns_the_best_epoch():
    tr_u, tr_i, _, _, num_users, num_items = planted_blocks()
    seen = []

    def eval_fn(epoch, user_emb, item_emb):
        seen.append((epoch, item_emb.copy()))
        return [0.1, 0.5, 0.4, 0.3, 0.9][epoch]  # best at epoch 1, then 2 worse evaluations

    config = MFConfig(dim=4, epochs=5, batch_size=64, patience=2)
    _, item_emb = train_mf(tr_u, tr_i, num_users, num_items, config, eval_fn=eval_fn)
    assert [epoch for epoch, _ in seen] == [0, 1, 2, 3]  # stopped before epoch 4
    np.testing.assert_array_equal(item_emb, seen[1][1])


@pytest.mark.parametrize(
    "kwargs, fragment",
    [({"dim": 0}, "dim"), ({"learning_rate": 0.0}, "learning_rate"), ({"l2": -1.0}, "l2")],
)
def test_mf_config_rejects_bad_values(kwargs, fragment):
    with pytest.raises(TfrecError, match=fragment):
        MFConfig(**kwargs)


def test_mf_rejects_out_of_range_rows():
    with pytest.raises(TfrecError, match="user row"):
        train_mf(np.array([0, 5]), np.array([0, 1]), 2, 2, MFConfig(epochs=1))
    with pytest.raises(TfrecError, match="item row"):
        train_mf(np.array([0, 1]), np.array([0, 2]), 2, 2, MFConfig(epochs=1))
