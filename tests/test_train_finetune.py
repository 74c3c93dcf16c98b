"""text.mode = "finetune": the MiniLM backbone is a layer of the trained model, its weights
change, the item text states follow it, and the export uses it."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfrec.config import config_from_dict
from tfrec.train.run import train

TINY = str(Path(__file__).parent / "data" / "tiny" / "schema.pbtxt")


def finetune_config(**text):
    return config_from_dict({
        "model": {"dim": 8, "layers": 1}, "text": {"mode": "finetune", "sequence_length": 8,
                                                   "finetune_items": 4, **text},
        "train": {"epochs": 1, "batch_size": 4, "patience": 5, "align_weight": 1.0},
        "split": {"method": "temporal", "ratios": [0.6, 0.2, 0.2]}})


def backbone_variables(path: str) -> list[str]:
    """Names of the BERT backbone's variables in a checkpoint (optimizer slots excluded)."""
    return [n for n in tf.train.load_checkpoint(path).get_variable_to_shape_map()
            if "sentence_encoder/backbone/" in n and "OPTIMIZER_SLOT" not in n]


@pytest.fixture(scope="module")
def restored(tmp_path_factory):
    """(run folder, prepared, trained model restored from its best checkpoint)."""
    from tfrec.train.fit import build, restore_best
    from tfrec.train.prepare import prepare
    from tfrec.train.run_dir import RunDir

    path = tmp_path_factory.mktemp("finetune") / "run"
    train(TINY, finetune_config(), str(path), progress=False, log=lambda s: None)
    schema, config = RunDir(path).schema_and_config()
    prepared = prepare(schema, config, progress=False)
    trained = build(prepared, config)
    restore_best(trained, RunDir(path))
    return path, prepared, trained


def test_finetuning_changes_the_backbone_in_the_checkpoint(restored):
    from tfrec.text import load_backbone_and_preprocessor

    run, _, trained = restored
    best = tf.train.latest_checkpoint(str(run / "checkpoints" / "best"))
    assert len(backbone_variables(best)) == 103  # every variable of the MiniLM backbone
    _, pretrained = load_backbone_and_preprocessor(8)
    tuned = trained.model.sentence_encoder.backbone.weights
    assert [w.name.split("/", 1)[1] for w in tuned] == \
        [w.name.split("/", 1)[1] for w in pretrained.weights]
    moved = [np.abs(a.numpy() - b.numpy()).max() for a, b in zip(tuned, pretrained.weights)]
    # Adam moves each weight by about the learning rate (3e-5) per step, here 2 steps: every
    # attention and feed-forward kernel moved; the pooler (unused: mean pooling) did not
    kernels = {w.name: m for m, w in zip(moved, tuned) if w.name.endswith("kernel:0")}
    pooler = {n: m for n, m in kernels.items() if "pooled" in n}
    assert list(pooler.values()) == [0.0]
    assert min(m for n, m in kernels.items() if n not in pooler) > 3e-5


def test_the_text_table_follows_the_backbone_and_the_export_uses_it(restored):
    from tfrec.export.from_run import load_artifacts

    run, prepared, trained = restored
    table = trained.model.encoders["item"].text_table.numpy()
    titles = prepared.graph.node_sets["item"]["title"]  # "Red Wool Sweater", ... (items.tsv)
    # the table = the restored backbone's embedding of each item title (refreshed each epoch)
    now = trained.model.sentence_encoder(titles).numpy()
    np.testing.assert_allclose(table, now, atol=2e-5)
    # ... which is no longer the pretrained (frozen) embedding
    frozen = prepared.model_graph.node_sets["item"]["text"].numpy()
    assert np.abs(table - frozen).max() > 1e-5
    # the exported item_text signature encodes with the fine-tuned backbone
    artifacts = load_artifacts(str(run))
    exported = artifacts.text_encoder.sentence_encoder(titles).numpy()
    np.testing.assert_allclose(exported, now, atol=2e-5)
