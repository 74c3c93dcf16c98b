"""The item-item components (EASE and RP3beta in closed form) and their blend with a model,
chosen on valid: hand-worked numbers."""

import dataclasses

import numpy as np
import pytest

from tfrec.config import config_from_dict
from tfrec.errors import TfrecError
from tfrec.evaluate.blend import Blend, choose_blend, normalize
from tfrec.evaluate.item_item import ease_weights, gram, history_scores, rp3beta_weights
from tfrec.evaluate.metrics import csr_from_pairs, full_ranking_metrics
from tfrec.train.blend import check_blend_size, fit_blend

# X (3 users x 3 items): u0 {i0, i1}, u1 {i1, i2}, u2 {i0, i1, i2}
X_PAIRS = ([0, 0, 1, 1, 2, 2, 2], [0, 1, 1, 2, 0, 1, 2])


def test_ease_on_three_items_by_hand():
    history = csr_from_pairs(*X_PAIRS, 3)
    g = gram(history, 3)
    # X^T X: i0 has 2 users, i1 3, i2 2; i0&i1: u0, u2; i0&i2: u2; i1&i2: u1, u2
    np.testing.assert_array_equal(g, [[2, 2, 1], [2, 3, 2], [1, 2, 2]])
    # reg 1: G = [[3,2,1],[2,4,2],[1,2,3]], det 16, adjugate [[8,-4,0],[-4,8,-4],[0,-4,8]]
    # P = G^-1 = [[.5,-.25,0],[-.25,.5,-.25],[0,-.25,.5]]; B[i,j] = -P[i,j] / P[j,j], B[j,j] = 0
    b = ease_weights(g, 1.0)
    np.testing.assert_allclose(b, [[0, .5, 0], [.5, 0, .5], [0, .5, 0]], atol=1e-6)
    assert b.dtype == np.float32
    # scores = history row x B: u0 (i0, i1) -> [.5, .5, .5]; u1 (i1, i2) -> [.5, .5, .5]...
    np.testing.assert_allclose(history_scores(b, history, np.array([0, 2])),
                               [[.5, .5, .5], [.5, 1, .5]], atol=1e-6)
    # ... and a user with i0 alone (another history) -> row 0 of B
    alone = csr_from_pairs([0], [0], 1)
    np.testing.assert_allclose(history_scores(b, alone, np.array([0])), [[0, .5, 0]], atol=1e-6)


def test_rp3beta_on_three_items_by_hand():
    # X as above plus an item i3 nobody trained on; d_u = [2, 2, 3], n_i = [2, 3, 2, 0]
    history = csr_from_pairs(*X_PAIRS, 3)
    # alpha 1, weights 1 / d_u: sum_u X[u, i] X[u, j] / d_u = i0&i1 1/2 + 1/3 = 5/6, i0&i2 1/3,
    # i1&i2 1/2 + 1/3 = 5/6; row i divided by n_i: beta 0 is the two-step walk i -> u -> j
    # (each full row, diagonal included, sums to 1: row 0 = [5/12, 5/12, 1/6])
    w = rp3beta_weights(history, 4, 1.0, 0.0)
    np.testing.assert_allclose(w, [[0, 5 / 12, 1 / 6, 0], [5 / 18, 0, 5 / 18, 0],
                                   [1 / 6, 5 / 12, 0, 0], [0, 0, 0, 0]], atol=1e-6)
    assert w.dtype == np.float32
    # beta 1: column j also divided by n_j (the popular i1 loses most)
    np.testing.assert_allclose(rp3beta_weights(history, 4, 1.0, 1.0),
                               [[0, 5 / 36, 1 / 12, 0], [5 / 36, 0, 5 / 36, 0],
                                [1 / 12, 5 / 36, 0, 0], [0, 0, 0, 0]], atol=1e-6)
    # alpha 0.5: i0 -> i1 = 2^-.5 * (2^-.5 + 3^-.5), beta 0
    w = rp3beta_weights(history, 4, 0.5, 0.0)
    assert w[0, 1] == pytest.approx(2 ** -.5 * (2 ** -.5 + 3 ** -.5), rel=1e-6)
    # scores: u0 (i0, i1) -> rows 0 + 1 of the beta-0 matrix
    np.testing.assert_allclose(
        history_scores(rp3beta_weights(history, 4, 1.0, 0.0), history, np.array([0])),
        [[5 / 18, 5 / 12, 1 / 6 + 5 / 18, 0]], atol=1e-6)


def test_a_larger_ridge_shrinks_b_towards_zero():
    g = gram(csr_from_pairs(*X_PAIRS, 3), 3)
    small, large = np.abs(ease_weights(g, 1.0)).sum(), np.abs(ease_weights(g, 100.0)).sum()
    assert 0 < large < small


def test_normalize_by_hand():
    s = np.array([[1.0, 3.0, 2.0, 2.0]])
    # mean 2, deviations [-1, 1, 0, 0], population std sqrt(2/4)
    np.testing.assert_allclose(normalize(s, "zscore"), [[-2 ** .5, 2 ** .5, 0, 0]], rtol=1e-6)
    # ascending stable order i0, i2, i3, i1 -> positions [0, 3, 1, 2] / 3
    np.testing.assert_allclose(normalize(s, "rank"), [[0, 1, 1 / 3, 2 / 3]], rtol=1e-6)
    # divided by the largest magnitude: 3 here, 4 in a row with a negative score
    np.testing.assert_allclose(normalize(s, "max"), [[1 / 3, 1, 2 / 3, 2 / 3]], rtol=1e-6)
    np.testing.assert_allclose(normalize(np.array([[-4.0, 2.0]]), "max"), [[-1, .5]])
    # an all-zero row (an empty history) stays 0: the other model alone ranks
    for method in ("zscore", "max"):
        np.testing.assert_array_equal(normalize(np.zeros((1, 3)), method), [[0, 0, 0]])


# A planted case (4 items, rank scale, ndcg@1): u0 trained on i0, its valid target is i2; u1
# trained on i1, target i3. Ranks over all 4 items, positions / 3 (best 1):
#   model     u0 [0, 3, 2, 1] -> [0, 1, 2/3, 1/3]: best candidate i1 (miss)
#             u1 [1, 3, 2, 2.5] -> [0, 1, 1/3, 2/3]: best candidate i3 (hit)      ndcg@1 0.5
#   item-item u0 = B[0] = [.5, 0, 1, .7] -> [1/3, 0, 1, 2/3]: best i2 (hit)
#             u1 = B[1] = [1, 0, .2, .8] -> [1, 0, 1/3, 2/3]: best i0 (miss)     ndcg@1 0.5
#   weight .5 u0: i1 .5, i2 5/6, i3 .5 -> i2 (hit); u1: i0 .5, i2 1/3, i3 2/3 -> i3 (hit): 1.0
#   weight .9 u0: i1 .1, i2 .967 -> hit; u1: i0 .9, i3 .667 -> miss: 0.5
MODEL = np.array([[0, 3, 2, 1], [1, 3, 2, 2.5]], np.float32)
B_PLANTED = np.array([[.5, 0, 1, .7], [1, 0, .2, .8], [0] * 4, [0] * 4], np.float32)
HISTORY = csr_from_pairs([0, 1], [0, 1], 2)
VALID = csr_from_pairs([0, 1], [2, 3], 2)


def _ndcg1(score_fn):
    return full_ranking_metrics(score_fn, HISTORY, VALID, ks=(1,))["ndcg@1"]


def test_valid_chooses_the_planted_blend():
    fit = {"model": "ease", "reg": 7.0}
    blend, report = choose_blend(lambda rows: MODEL[rows], HISTORY, lambda fit: B_PLANTED,
                                 [fit], np.array([0, 1]), [0.5, 0.9, 1.0], ["rank"], _ndcg1)
    assert (blend.weight, blend.method, blend.fit) == (0.5, "rank", fit)
    assert report["valid_model_alone"] == 0.5
    assert report["grid"] == [[fit, "rank", 0.5, 1.0], [fit, "rank", 0.9, 0.5],
                              [fit, "rank", 1.0, 0.5]]
    # the blended score function is what was chosen: u1 at weight .5 (hand-worked above)
    np.testing.assert_allclose(blend.score_fn(lambda rows: MODEL[rows])(np.array([1])),
                               [[.5, .5, 1 / 3, 2 / 3]], atol=1e-6)
    assert _ndcg1(blend.score_fn(lambda rows: MODEL[rows])) == 1.0


def test_the_model_alone_when_no_blend_beats_it_on_valid():
    blend, report = choose_blend(lambda rows: MODEL[rows], HISTORY, lambda fit: B_PLANTED,
                                 [{"model": "ease", "reg": 7.0}], np.array([0, 1]), [0.9, 1.0],
                                 ["rank", "zscore"], _ndcg1)
    assert blend is None and report["chosen"] is None and len(report["grid"]) == 4


def test_blend_files_round_trip(tmp_path):
    fit = {"model": "rp3beta", "alpha": 0.8, "beta": 0.6}
    blend = Blend(B_PLANTED, HISTORY, 0.5, "zscore", fit)
    blend.save(tmp_path)
    back = Blend.load(tmp_path, HISTORY)
    assert (back.weight, back.method, back.fit) == (0.5, "zscore", fit)
    np.testing.assert_array_equal(back.item_item, B_PLANTED)
    # a blend.json written before RP3beta (EASE's reg alone) still loads
    (tmp_path / "blend.json").write_text('{"weight": 0.3, "method": "max", "reg": 100.0}')
    assert Blend.load(tmp_path, HISTORY).fit == {"model": "ease", "reg": 100.0}
    (tmp_path / "item_item.npy").write_bytes(b"cut")
    with pytest.raises(TfrecError, match="damaged or incomplete"):
        Blend.load(tmp_path, HISTORY)


@dataclasses.dataclass
class _Split:
    pairs_of: dict

    def pairs(self, name):
        if name == "test":
            raise AssertionError("the blend choice read the test split")
        return self.pairs_of[name]


class _Prepared:
    """What fit_blend reads of a Prepared; reading the test split fails the test."""

    def __init__(self, pairs, num_users, num_items):
        self.split, self.num_users, self.num_items = _Split(pairs), num_users, num_items

    def csr(self, *splits):
        users = np.concatenate([self.split.pairs(s)[0] for s in splits])
        items = np.concatenate([self.split.pairs(s)[1] for s in splits])
        return csr_from_pairs(users, items, self.num_users)


def test_fit_blend_chooses_on_valid_and_never_reads_test():
    # 4 users, 5 items: valid targets follow the training co-occurrences (i0 <-> i1, i2 <-> i3)
    # that EASE learns, while the planted "model" prefers i4 for everyone
    train = ([0, 1, 1, 2, 3, 3], [0, 0, 1, 2, 2, 3])
    valid = ([0, 2], [1, 3])
    prepared = _Prepared({"train": tuple(map(np.array, train)),
                          "valid": tuple(map(np.array, valid))}, 4, 5)
    model = np.tile(np.array([0, 0, 0, 0, 1], np.float32), (4, 1))
    config = config_from_dict({"eval": {"ks": [1], "early_stop": "ndcg@1"},
                               "blend": {"item_item": "ease", "regs": [1.0],
                                         "weights": [0.5, 1.0], "methods": ["zscore"]}})
    blend, info = fit_blend(prepared, config, lambda rows: model[rows])
    # model alone: i4 first for u0 and u2 (ndcg@1 0); the item-item part alone ranks the
    # co-occurring item first (u0: B[0, 1] > 0 is its only positive score): ndcg@1 1
    assert info["valid_model_alone"] == 0.0
    fit = {"model": "ease", "reg": 1.0}
    assert info["grid"] == [[fit, "zscore", 0.5, 1.0], [fit, "zscore", 1.0, 1.0]]
    assert blend.weight == 0.5 and info["chosen"]["valid"] == 1.0  # the first best
    assert info["metric"] == "ndcg@1" and info["item_item"] == "ease"
    # RP3beta on the same data: the walk from i0 reaches i1 (u1), from i2 reaches i3 (u3); u0's
    # item-item row [0, 1/4, 0, 0, 0] and the model's [0, 0, 0, 0, 1] both z-score to 2 on their
    # item, -1/2 elsewhere: at weight .6, i1 .4 * -.5 + .6 * 2 = 1 beats i4 .4 * 2 - .6 * .5 = .5
    config = config_from_dict({"eval": {"ks": [1], "early_stop": "ndcg@1"},
                               "blend": {"item_item": "rp3beta", "alphas": [1.0],
                                         "betas": [0.0, 0.5], "weights": [0.6],
                                         "methods": ["zscore"]}})
    blend, info = fit_blend(prepared, config, lambda rows: model[rows])
    assert [row[0] for row in info["grid"]] == [
        {"model": "rp3beta", "alpha": 1.0, "beta": 0.0},
        {"model": "rp3beta", "alpha": 1.0, "beta": 0.5}]
    assert info["chosen"]["valid"] == 1.0 and blend.fit["model"] == "rp3beta"
    np.testing.assert_array_equal(blend.item_item, rp3beta_weights(prepared.csr("train"), 5,
                                                                   1.0, 0.0))


def test_a_catalogue_above_max_items_is_refused_in_one_sentence():
    class Big:
        num_items = 11

        class data:
            class schema:
                path = "schemas/big.pbtxt"

    config = config_from_dict({"blend": {"item_item": "ease", "max_items": 10}})
    with pytest.raises(TfrecError, match=r"has 11 items \(blend.max_items = 10\)"):
        check_blend_size(Big, config)
    check_blend_size(Big, config_from_dict({"blend": {"max_items": 10}}))  # off: no matrix


def test_blend_config_is_validated():
    for bad, match in (({"weights": [1.5]}, "blend.weights"), ({"methods": ["mean"]}, "mean"),
                       ({"regs": []}, "one or more"), ({"item_item": "slim"}, "item_item"),
                       ({"alphas": [0.0]}, "blend.alphas"), ({"betas": []}, "one or more")):
        with pytest.raises(TfrecError, match=match):
            config_from_dict({"blend": bad})
