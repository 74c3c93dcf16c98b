"""A trained tiny run -> `tfrec evaluate --json` and `tfrec export` -> a SavedModel that plain
TensorFlow (+ tensorflow_text) loads and that answers like the run's embeddings."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfrec.cli import main
from tfrec.config import config_from_dict
from tfrec.export.from_run import load_artifacts
from tfrec.train.run import train

TINY = str(Path(__file__).parent / "data" / "tiny" / "schema.pbtxt")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "tiny"
    config = config_from_dict({"model": {"dim": 8, "layers": 2},
                               "train": {"epochs": 2, "batch_size": 4},
                               "split": {"method": "temporal", "ratios": [0.6, 0.2, 0.2]}})
    train(TINY, config, str(path), progress=False, log=lambda s: None)
    return path


def test_evaluate_json_matches_the_run(run, capsys):
    assert main(["evaluate", "--run-dir", str(run), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((run / "metrics.json").read_text())
    assert set(printed) == {"valid", "test", "test_cold"}
    assert set(printed["test"]) >= {f"{m}@{k}" for m in ("recall", "ndcg", "precision", "hit",
                                                         "mrr") for k in (10, 20)}
    for split in printed:
        assert printed[split]["ndcg@20"] == pytest.approx(saved[split]["ndcg@20"], abs=1e-6)


def test_evaluate_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["evaluate", "--run-dir", str(tmp_path)]) == 2
    assert "is not a tfrec run folder" in capsys.readouterr().err


def test_export_answers_like_the_embeddings(run, tmp_path, capsys):
    base = tmp_path / "models" / "tiny"
    assert main(["export", "--run-dir", str(run), "--model-base", str(base)]) == 0
    capsys.readouterr()
    art = load_artifacts(str(run))
    # u1 (row 0) has seen i1..i5 in every split, so only i6 can be recommended to it
    expected = art.item_embeddings @ art.user_embeddings[0] + art.item_bias
    probe = f"""
import json, sys, tensorflow as tf, tensorflow_text  # noqa
m = tf.saved_model.load({str(base / "1")!r})
r = m.signatures["serving_default"](user_id=tf.constant(["u1"]), k=tf.constant(2))
t = m.signatures["item_text"](text=tf.constant(["Blue Wool Sweater"]))["embedding"]
print(json.dumps({{"ids": [x.decode() for x in r["item_ids"].numpy()[0]],
                  "score": float(r["scores"].numpy()[0, 0]), "text_dim": int(t.shape[1]),
                  "modules": sorted(m for m in sys.modules if m.split(".")[0] in
                                    ("tfrec", "keras_nlp", "keras"))}}))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    # TensorFlow may revive tf_keras by itself; what matters is that no tfrec or keras-nlp code
    # (nor Keras 3) is needed to load and answer.
    assert got["ids"] == ["i6", ""] and got["modules"] == []
    assert got["score"] == pytest.approx(float(expected[5]), abs=1e-5)
    assert got["text_dim"] == 8
    meta = json.loads((base / "1" / "assets.extra" / "tfrec_metadata.json").read_text())
    assert meta["config"]["model"]["dim"] == 8 and "valid" in meta["metrics"]
    assert np.allclose(np.linalg.norm(art.item_embeddings, axis=1), 1.0, atol=1e-5)
