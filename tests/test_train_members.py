"""[model] members = K: K trainings scored as one (tfrec.train.members). The combination is the
mean of the members' scores (hand-checked); on the tiny graph, training writes the second
member under members/1/, and the run's metrics, `tfrec evaluate` and the exported SavedModel
(blend included) all rank with the combined scores."""

import json
from pathlib import Path

import numpy as np
import pytest
from test_export_fixtures import assert_serves_top_k, tf

from tfrec.config import config_from_dict
from tfrec.errors import TfrecError
from tfrec.evaluate.scoring import embedding_score_fn
from tfrec.export.from_run import load_artifacts
from tfrec.export.versions import export_model
from tfrec.train.fit import build, embeddings, restore_best
from tfrec.train.members import combine, member_config
from tfrec.train.prepare import prepare
from tfrec.train.run import evaluate_run, train
from tfrec.train.run_dir import RunDir

TINY = str(Path(__file__).parent / "data" / "tiny" / "schema.pbtxt")


def test_combined_tables_score_the_mean_of_the_members():
    # member 1: user [1, 0], items [1, 2] and [3, 4], bias [0.5, -0.5] -> scores [1.5, 2.5]
    # member 2: user [0, 2], items [1, 1] and [0, 1], bias [0.5, 0.5]  -> scores [2.5, 2.5]
    one = (np.array([[1.0, 0.0]]), np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([0.5, -0.5]))
    two = (np.array([[0.0, 2.0]]), np.array([[1.0, 1.0], [0.0, 1.0]]), np.array([0.5, 0.5]))
    user, item, bias = combine([one, two])
    np.testing.assert_allclose(user, [[0.5, 0.0, 0.0, 1.0]])
    np.testing.assert_allclose(item, [[1.0, 2.0, 1.0, 1.0], [3.0, 4.0, 0.0, 1.0]])
    np.testing.assert_allclose(bias, [0.5, 0.0])
    np.testing.assert_allclose(user @ item.T + bias, [[2.0, 2.5]])  # (1.5 + 2.5) / 2, 2.5
    assert combine([one])[0] is one[0]  # one member is the model itself
    assert combine([one[:2] + (None,), two[:2] + (None,)])[2] is None


def _config(**model):
    return config_from_dict({"model": {"dim": 8, "layers": 2, **model},
                             "train": {"epochs": 2, "batch_size": 4, "seed": 3},
                             "split": {"method": "temporal", "ratios": [0.6, 0.2, 0.2]},
                             "blend": {"item_item": "ease", "regs": [0.1, 1.0, 10.0]}})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("members") / "run"
    result = train(TINY, _config(members=2), str(path), progress=False, log=lambda s: None)
    return path, result


def test_training_writes_each_member_and_reports_them(run):
    path, result = run
    assert RunDir(path / "members" / "1").best_checkpoint()
    assert [m["best_epoch"] > 0 for m in result.info["members"]] == [True, True]
    assert member_config(_config(members=2), 1).train.seed == 4
    assert json.loads((path / "run.json").read_text())["config"]["model"]["members"] == 2


def test_the_run_scores_the_mean_of_its_members(run):
    path, _ = run
    config = _config(members=2)
    prepared = prepare(TINY, config, progress=False)
    scores = []
    for k, folder in enumerate((path, path / "members" / "1")):
        trained = build(prepared, member_config(config, k))
        restore_best(trained, RunDir(folder))
        user, item, bias = embeddings(trained)
        scores.append(user @ item.T + bias)
    assert not np.allclose(scores[0], scores[1])  # other seeds: other models
    art = load_artifacts(str(path))
    assert art.user_embeddings.shape[1] == art.item_embeddings.shape[1] == 16
    np.testing.assert_allclose(art.user_embeddings @ art.item_embeddings.T + art.item_bias,
                               (scores[0] + scores[1]) / 2, rtol=1e-5, atol=1e-6)


def test_evaluate_and_export_rank_as_the_run(run, tmp_path):
    path, result = run
    again = evaluate_run(str(path))
    for split in ("valid", "test"):
        assert again[split]["ndcg@20"] == pytest.approx(result.metrics[split]["ndcg@20"],
                                                        abs=1e-6)
    art = load_artifacts(str(path))
    assert art.scorer is None  # `score` answers with the ensemble's own (blended) score
    model = tf.saved_model.load(str(export_model(art, tmp_path)))
    score_fn = embedding_score_fn(art.user_embeddings, art.item_embeddings, art.item_bias)
    if art.blend is not None:
        score_fn = art.blend.score_fn(score_fn)
    assert_serves_top_k(model, art, ["u1", "u2", "u3", "u4"], 2, score_fn)
    text = model.signatures["item_text"](text=tf.constant(["Blue Wool Sweater"]))["embedding"]
    assert text.shape == (1, 16)  # both members' text embeddings, side by side


def test_members_refuse_a_warm_start(tmp_path):
    with pytest.raises(TfrecError, match="warm-start a run with members = 1"):
        train(TINY, _config(members=2), str(tmp_path / "new"), progress=False,
              log=lambda s: None, warm_start=str(tmp_path / "old"))


@pytest.mark.parametrize("values, message", [
    ({"model": {"kind": "popularity", "members": 2}}, "has nothing to train"),
    ({"model": {"members": 0}}, "model.members"),
])
def test_config_refuses_members_it_cannot_train(values, message):
    with pytest.raises(TfrecError, match=message):
        config_from_dict(values)


@pytest.mark.parametrize("values, message", [
    ({"train": {"strategy": "mirrored"}}, "one after another on one device"),
    ({"text": {"mode": "finetune"}}, "fine-tune one shared text encoder"),
])
def test_members_refuse_a_distributed_or_finetuned_training(values, message):
    from tfrec.train.members import check_members

    check_members(config_from_dict(values), None)  # one member: anything goes
    with pytest.raises(TfrecError, match=message):
        check_members(config_from_dict({**values, "model": {"members": 3}}), None)


def test_search_trials_train_one_member_and_best_toml_keeps_the_base_members(tmp_path):
    from types import SimpleNamespace

    from keras_tuner.engine.trial import TrialStatus

    from tfrec.search.leaderboard import best_config, write_best
    from tfrec.search.space import trial_config

    base = config_from_dict({"model": {"members": 3}})
    assert trial_config(base, {"dim": 32}).model.members == 1
    trial = SimpleNamespace(trial_id="07", status=TrialStatus.COMPLETED,
                            hyperparameters=SimpleNamespace(values={"dim": 32}))
    oracle = SimpleNamespace(get_best_trials=lambda n: [trial])
    trial_id, best = best_config(base, oracle)
    assert (trial_id, best.model.dim, best.model.members) == ("07", 32, 3)
    write_best(tmp_path / "best.toml", trial_id, best, 0.3, "ndcg@20")
    assert "model.members = 3" in (tmp_path / "best.toml").read_text()
