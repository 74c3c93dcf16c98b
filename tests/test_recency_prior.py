"""The recency prior of a warm run ([fresh], tfrec.train.recency_prior): its arithmetic and its
choice on valid by hand, the added pairs of a warm run of the tiny tables by hand, and the
exported SavedModel ranking exactly as evaluation does with the prior."""

import json
import shutil

import numpy as np
import pytest
from test_export_fixtures import assert_serves_top_k, tf
from test_warm_start import CONFIG, old_run, tables  # noqa: F401  (fixtures)

from tfrec.config import config_from_dict
from tfrec.evaluate.scoring import embedding_score_fn
from tfrec.export.from_run import load_artifacts
from tfrec.export.versions import export_model
from tfrec.train.recency_prior import added_counts, choose_prior, prior_vector
from tfrec.train.run import evaluate_run, train
from tfrec.train.run_dir import RunDir


def test_added_counts_and_the_prior_by_hand():
    # old pairs: (u1, i1) (u2, i1) (u1, i2); now also (u3, i2) (u3, i3) (u1, i3) (u2, i4);
    # (u2, i2) is gone. Rows: i4 i1 i2 i3 i5.
    n, new = added_counts(["u1", "u2", "u1", "u2"], ["i1", "i1", "i2", "i2"],
                          ["u1", "u2", "u1", "u3", "u3", "u1", "u2"],
                          ["i1", "i1", "i2", "i2", "i3", "i3", "i4"],
                          np.array(["i4", "i1", "i2", "i3", "i5"], object))
    assert n.tolist() == [1, 0, 1, 2, 0]  # i2: (u3, i2) only; i3: both pairs are new
    assert new.tolist() == [True, False, False, True, False]  # i5: no pairs at all
    # w log(1 + n) + v new, w 2, v 1: 2 ln 2 + 1, 0, 2 ln 2, 2 ln 3 + 1, 0
    np.testing.assert_allclose(prior_vector(n, new, 2.0, 1.0),
                               [2.386294, 0.0, 1.386294, 3.197225, 0.0], rtol=1e-6)


def _top1_metric(targets):
    """valid_metric: the share of users whose target item alone has the highest score."""
    def metric(score_fn):
        scores = score_fn(np.arange(len(targets)))
        return float(np.mean([s[t] > np.delete(s, t).max() for s, t in zip(scores, targets)]))
    return metric


def test_the_prior_is_chosen_on_valid_by_hand():
    # user 0 wants item 2, user 1 item 1; item 2 has 1 added pair (log 2 = 0.693), item 1 is
    # first trained. Alone: both miss (0). Prior [0, v, w ln 2]:
    #   w 1, v 0.5: u0 [1, .5, 1.19] hit, u1 [1, 1, .69] a tie, miss        -> 0.5
    #   w 1, v 1:   u0 [1, 1, 1.19] hit,  u1 [1, 1.5, .69] hit              -> 1.0 (chosen)
    #   w 2, v 0.5: u0 hit, u1 [1, 1, 1.39] miss                              -> 0.5
    #   w 2, v 1:   u0 hit, u1 [1, 1.5, 1.39] hit                             -> 1.0 (a tie:
    #   the first best is kept)
    base = np.array([[1.0, 0.0, 0.5], [1.0, 0.5, 0.0]], np.float32)
    n, new = np.array([0, 0, 1]), np.array([False, True, False])
    (w, v), report = choose_prior(lambda rows: base[rows], 2, np.arange(2), n, new,
                                  [1.0, 2.0], [0.5, 1.0], _top1_metric([2, 1]))
    assert (w, v) == (1.0, 1.0)
    assert report["valid_model_alone"] == 0.0
    assert [g[2] for g in report["grid"]] == [0.5, 1.0, 0.5, 1.0]
    assert report["chosen"] == {"recency": 1.0, "newness": 1.0, "valid": 1.0}
    # nothing beats the model alone: no prior
    (w, v), report = choose_prior(lambda rows: base[rows], 2, np.arange(2), n, new,
                                  [1.0, 0.0], [0.0], _top1_metric([0, 0]))
    assert (w, v) == (0.0, 0.0) and [g[:2] for g in report["grid"]] == [[1.0, 0.0]]


@pytest.fixture(scope="module")
def warm_run(old_run, tables, tmp_path_factory):  # noqa: F811
    path = tmp_path_factory.mktemp("warm") / "run"
    result = train(str(tables / "schema.pbtxt"), config_from_dict(CONFIG), str(path),
                   progress=False, log=lambda s: None, warm_start=str(old_run))
    return path, result


def test_a_warm_run_counts_the_pairs_the_update_added(warm_run):
    # per user, the oldest pairs train, round(0.2 n) valid, round(0.2 n) test; fewer than 3
    # pairs: all train. Old training pairs: u1 i1 i2 i3, u2 i6 i3, u3 i4, u4 i1 i2; new (i6
    # removed, u5 added, u1 i7): u1 i1 i2 i3 i4, u2 i3, u3 i4 i5 (2 pairs left), u4 i1 i2,
    # u5 i1. Added: (u1, i4) (u3, i5) (u5, i1); first trained: i5 (i7 is u5's valid pair).
    path, result = warm_run
    fresh = result.info["fresh"]
    assert (fresh["added_pairs"], fresh["items_with_added_pairs"],
            fresh["first_trained"]) == (3, 3, 1)
    assert len(fresh["grid"]) == 30  # 6 x 5 default points besides (0, 0)
    chosen = fresh["chosen"]
    assert result.metrics["valid"]["ndcg@20"] == pytest.approx(chosen["valid"], abs=1e-6)
    has_prior = (chosen["recency"], chosen["newness"]) != (0.0, 0.0)
    assert RunDir(path).prior_file.is_file() == has_prior
    assert json.loads((path / "metrics.json").read_text())["info"]["fresh"] == fresh


def test_exported_top_k_is_the_evaluation_top_k_with_the_prior(warm_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(warm_run[0], copy)
    prior = np.array([0.0, 3.0, 0.0, 1.0, 0.0, 0.5], np.float32)  # rows i7 i1 i2 i3 i4 i5
    RunDir(copy).write_item_prior(prior)
    art = load_artifacts(str(copy))
    from tfrec.export.from_run import restore_run
    from tfrec.train.fit import embeddings

    user, item, bias = embeddings(restore_run(str(copy)).trained)
    np.testing.assert_allclose(art.item_bias, bias + prior, rtol=1e-6)
    evaluated = evaluate_run(str(copy))
    model = tf.saved_model.load(str(export_model(art, tmp_path / "models")))
    score_fn = embedding_score_fn(user, item, bias + prior)  # evaluation's, seen excluded
    assert_serves_top_k(model, art, ["u1", "u2", "u3", "u4", "u5"], 3, score_fn)
    # tfrec evaluate ranks with the prior: item i1 (+3) moves, so the figures are its own
    from tfrec.evaluate.harness import evaluate
    from tfrec.train.prepare import prepare

    schema, config = RunDir(copy).schema_and_config()
    again = evaluate(score_fn, prepare(schema, config, False), config.eval.ks)
    assert evaluated["valid"] == again["valid"] and evaluated["test"] == again["test"]
