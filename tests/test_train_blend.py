"""[blend] end to end on the tiny graph: a trained run refits only its blend when trained again
with [blend] changed; the run's metrics, `tfrec evaluate` and the exported SavedModel all rank
with the blend chosen on valid."""

import json
import shutil
from pathlib import Path

import pytest
from test_export_fixtures import assert_serves_top_k, tf

from tfrec.config import config_from_dict
from tfrec.evaluate.scoring import embedding_score_fn
from tfrec.export.from_run import load_artifacts
from tfrec.export.versions import export_model
from tfrec.train.run import evaluate_run, train
from tfrec.train.run_dir import RunDir

TINY = str(Path(__file__).parent / "data" / "tiny" / "schema.pbtxt")


def _config(blend):
    return config_from_dict({"model": {"dim": 8, "layers": 2}, "text": {"mode": "off"},
                             "train": {"epochs": 2, "batch_size": 4},
                             "split": {"method": "temporal", "ratios": [0.6, 0.2, 0.2]},
                             "blend": blend})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    path = tmp_path_factory.mktemp("blend") / "run"
    alone = train(TINY, _config({}), str(path), progress=False, log=lambda s: None)
    checkpoint = RunDir(path).best_checkpoint()
    blended = train(TINY, _config({"item_item": "ease", "regs": [0.1, 1.0, 10.0]}), str(path),
                    progress=False, log=lambda s: None)
    return path, alone, blended, checkpoint


def test_training_again_with_a_blend_refits_the_blend_only(runs):
    path, alone, blended, checkpoint = runs
    info = blended.info
    assert info["epochs_run"] == alone.info["epochs_run"]  # the training's own figures
    assert RunDir(path).best_checkpoint() == checkpoint
    assert RunDir(path).latest_checkpoint().endswith(f"ckpt-{info['epochs_run']}")
    assert info["blend"]["model_alone"]["test"] == alone.metrics["test"]
    chosen = info["blend"]["chosen"]  # the tiny run's valid prefers a blend
    assert blended.metrics["valid"]["ndcg@20"] == pytest.approx(chosen["valid"], abs=1e-6)
    assert chosen["valid"] > info["blend"]["valid_model_alone"]
    assert json.loads((path / "run.json").read_text())["config"]["blend"]["item_item"] == "ease"
    assert (path / "blend" / "item_item.npy").is_file()


def test_evaluate_ranks_with_the_blend(runs):
    path, _, blended, _ = runs
    again = evaluate_run(str(path))
    for split in ("valid", "test"):
        assert again[split]["ndcg@20"] == pytest.approx(blended.metrics[split]["ndcg@20"],
                                                        abs=1e-6)


def test_exported_top_k_is_the_evaluation_blended_top_k(runs, tmp_path):
    _assert_export_ranks_as_evaluation(runs[0], tmp_path)


def test_an_rp3beta_blend_is_refitted_evaluated_and_exported_alike(runs, tmp_path):
    path, alone, _, _ = runs
    copy = tmp_path / "run"
    shutil.copytree(path, copy)
    again = train(TINY, _config({"item_item": "rp3beta", "alphas": [0.5, 1.0],
                                 "betas": [0.0, 0.5]}), str(copy), progress=False,
                  log=lambda s: None)
    chosen = again.info["blend"]["chosen"]  # the tiny run's valid prefers a blend here too
    assert chosen["item_item"]["model"] == "rp3beta"
    assert again.info["blend"]["model_alone"]["test"] == alone.metrics["test"]
    assert evaluate_run(str(copy))["test"] == again.metrics["test"]
    _assert_export_ranks_as_evaluation(copy, tmp_path / "export")


def _assert_export_ranks_as_evaluation(path, out):
    art = load_artifacts(str(path))
    assert art.blend is not None
    model = tf.saved_model.load(str(export_model(art, out)))
    # evaluation's score function (tfrec.train.run.evaluate_run), seen items excluded as served
    score_fn = art.blend.score_fn(embedding_score_fn(art.user_embeddings, art.item_embeddings,
                                                     art.item_bias))
    assert_serves_top_k(model, art, ["u1", "u2", "u3", "u4"], 2, score_fn)


def test_training_again_with_the_blend_off_removes_it(runs, tmp_path):
    path, alone, _, _ = runs
    copy = tmp_path / "run"
    shutil.copytree(path, copy)
    again = train(TINY, _config({}), str(copy), progress=False, log=lambda s: None)
    assert not (copy / "blend").exists() and "blend" not in again.info
    assert again.metrics["test"] == alone.metrics["test"]
