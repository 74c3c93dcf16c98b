"""Training on the tiny graph: run folders, resume, NaN stop, TensorBoard, configs, conv types."""

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfrec.cli import main
from tfrec.config import Config, ModelConfig, TrainConfig, config_from_dict
from tfrec.data.splits import SplitConfig
from tfrec.errors import TfrecError
from tfrec.train import fit as fit_module
from tfrec.train.prepare import prepare
from tfrec.train.run import evaluate_run, train

TINY = str(Path(__file__).parent / "data" / "tiny" / "schema.pbtxt")
SPLIT = SplitConfig("temporal", (0.6, 0.2, 0.2))


def tiny_config(**train) -> Config:
    values = {"model": {"dim": 8, "layers": 2}, "text": {"mode": "off"},
              "train": {"epochs": 3, "batch_size": 4, "patience": 10, **train},
              "split": {"method": "temporal", "ratios": [0.6, 0.2, 0.2]}}
    return config_from_dict(values)


def scalar_tags(logdir: Path) -> set[str]:
    tags = set()
    for f in logdir.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(f)):
            tags |= {v.tag for v in event.summary.value}
    return tags


def test_train_writes_a_complete_run_folder(tmp_path):
    run = tmp_path / "run"
    result = train(TINY, tiny_config(), str(run), progress=False, log=lambda s: None)
    assert result.info["epochs_run"] == 3 and 1 <= result.info["best_epoch"] <= 3
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["test"]["num_users"] == 3 and set(saved) == {"valid", "test", "test_cold", "info"}
    for metric in ("recall@20", "ndcg@20", "precision@10", "hit@10", "mrr@20"):
        assert 0.0 <= saved["test"][metric] <= 1.0
    tags = scalar_tags(run / "logs")
    assert {"loss/retrieval", "loss/ranking", "loss/total", "learning_rate", "valid/ndcg@20",
            "valid/recall@10", "valid/mrr@20"} <= tags
    assert {"_hparams_/session_start_info", "final/valid/ndcg@20", "final/test/ndcg@20"} <= tags
    assert "item_embedding" in (run / "logs" / "projector_config.pbtxt").read_text()
    assert (run / "logs" / "metadata.tsv").read_text().splitlines()[:2] == [
        "item_id\ttitle", "i1\tRed Wool Sweater"]
    assert tf.train.latest_checkpoint(str(run / "checkpoints" / "best")) is not None
    # evaluate recomputes the same numbers from the best checkpoint
    again = evaluate_run(str(run))
    for split in ("valid", "test"):
        assert again[split]["ndcg@20"] == pytest.approx(saved[split]["ndcg@20"], abs=1e-6)


def test_interrupted_run_resumes_from_its_last_checkpoint(tmp_path):
    run = tmp_path / "run"

    def stop_after_first_epoch(line):
        if line.startswith("epoch   1"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(TINY, tiny_config(), str(run), progress=False, log=stop_after_first_epoch)
    lines = []
    result = train(TINY, tiny_config(), str(run), progress=False, log=lines.append)
    assert lines[0].startswith(f"resuming {run} after epoch 1")
    assert result.info["resumed_from"] == 1 and result.info["epochs_run"] == 3
    assert [line.split()[1] for line in lines[1:] if line.startswith("epoch")] == ["2", "3"]


def test_an_early_stopped_run_is_not_trained_further(tmp_path):
    run, config = tmp_path / "run", tiny_config(epochs=50, patience=1)
    first = train(TINY, config, str(run), progress=False, log=lambda s: None)
    assert first.info["epochs_run"] < 50
    lines = []
    again = train(TINY, config, str(run), progress=False, log=lines.append)
    assert not [line for line in lines if line.startswith("epoch")]
    assert again.metrics["test"] == first.metrics["test"]
    # its training figures (epoch time, training time, peak memory) are kept, not those of the
    # re-run that trained nothing
    assert again.info == first.info
    assert json.loads((run / "metrics.json").read_text())["info"] == first.info


def test_run_folder_of_another_config_or_schema_is_refused(tmp_path):
    run = tmp_path / "run"
    train(TINY, tiny_config(epochs=1), str(run), progress=False, log=lambda s: None)
    with pytest.raises(TfrecError, match="another config .*train.epochs"):
        train(TINY, tiny_config(epochs=2), str(run), progress=False)
    with pytest.raises(TfrecError, match="another schema"):
        train("schemas/ecommerce.pbtxt", tiny_config(epochs=1), str(run), progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(TfrecError, match="not empty and is not a tfrec run"):
        train(TINY, tiny_config(), str(tmp_path / "other"), progress=False)


def test_nan_loss_stops_with_exit_3_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    poison = tf.Variable(1.0)

    class Poisoned(fit_module.RetrievalHead):
        def call(self, *args):
            return super().call(*args) * poison

    def log(line):
        if line.startswith("epoch   1"):
            poison.assign(float("nan"))

    monkeypatch.setattr(fit_module, "RetrievalHead", Poisoned)
    run = tmp_path / "run"
    with pytest.raises(fit_module.TrainingDiverged) as e:
        train(TINY, tiny_config(), str(run), progress=False, log=log)
    assert e.value.exit_code == 3
    assert "became nan at epoch 2" in str(e.value) and "epoch 1" in str(e.value)
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-1")


@pytest.mark.parametrize("conv", ["lightgcn", "sage", "gatv2", "mt_albis"])
def test_every_conv_type_trains(tmp_path, conv):
    config = tiny_config(epochs=1)
    config = Config(ModelConfig(dim=8, layers=2, conv=conv, hidden=8, heads=2), config.text,
                    config.train, config.split)
    result = train(TINY, config, str(tmp_path / conv), progress=False, log=lambda s: None)
    assert np.isfinite(result.metrics["valid"]["ndcg@20"])


def test_message_passing_sees_training_pairs_only():
    prepared = prepare(TINY, tiny_config())
    rates = prepared.inputs.edges["rates"]
    train_pairs = set(zip(*prepared.split.pairs("train")))
    assert set(zip(rates.source.tolist(), rates.target.tolist())) == train_pairs
    held_out = set(zip(*prepared.split.pairs("valid"))) | set(zip(*prepared.split.pairs("test")))
    assert not held_out & train_pairs


def test_knowledge_graph_leaves_are_left_out():
    about = prepare(TINY, tiny_config()).inputs.edges["about"]
    # wool (i1 only), cotton (i2 only) and kitchen (i3 only) are leaves; clothing has i1 and i2
    assert list(zip(about.source.tolist(), about.target.tolist())) == [(0, 2), (1, 2)]


def test_items_without_training_pairs_get_no_id_embedding_and_no_bias():
    config = tiny_config()
    config = Config(config.model, config.text, config.train,
                    SplitConfig("temporal", (0.6, 0.2, 0.2), cold_items=0.5))
    prepared = prepare(TINY, config)
    cold = [2, 4, 5]  # i3, i5, i6: every pair held out (tests/test_data_build.py)
    assert prepared.inputs.nodes["item"].id_mask.tolist() == [1, 1, 0, 1, 0, 0]
    model = fit_module.build(prepared, config).model
    model.item_bias.assign(np.arange(1.0, 7.0))
    before = model.embed()
    ids = model.encoders["item"].ids.embeddings
    ids.assign(ids + 1.0)
    after = model.embed()
    moved = np.abs(after.item_h0.numpy() - before.item_h0.numpy()).max(axis=1)
    assert (moved[cold] == 0).all() and (moved[[0, 1, 3]] > 0.5).all()
    assert after.item_bias.numpy().tolist() == [1, 2, 0, 4, 0, 0]
    # scores are u.i + b_i: the scoring tables carry the bias as one more column
    user, item = after.scoring()
    expected = after.user.numpy() @ after.item.numpy().T + after.item_bias.numpy()
    np.testing.assert_allclose((user @ tf.transpose(item)).numpy(), expected, rtol=1e-5)


def test_mixed_precision_policy_keeps_outputs_float32():
    config = Config(ModelConfig(dim=8, layers=1), tiny_config().text,
                    TrainConfig(mixed_precision=True), SPLIT)
    prepared = prepare(TINY, config)
    try:
        trained = fit_module.build(prepared, config)
        assert tf.keras.mixed_precision.global_policy().name == "mixed_float16"
        h0, _ = trained.model.encoders["item"](None)
        assert h0.dtype == tf.float16  # computed in float16 ...
        e = trained.model.embed()
        assert e.user.dtype == tf.float32
        assert trained.model.encoders["item"].ids.embeddings.dtype == tf.float32  # float32 weights
        user, item, bias = fit_module.embeddings(trained.model)
        assert user.dtype == item.dtype == bias.dtype == np.float32  # ... served in float32
        scores = trained.ranking.scorer((e.user[:2], e.item[:2]))
        assert scores.dtype == tf.float32
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")


def test_popularity_baseline_by_config(tmp_path):
    config = config_from_dict({"model": {"kind": "popularity"},
                               "split": {"method": "temporal", "ratios": [0.6, 0.2, 0.2]}})
    result = train(TINY, config, str(tmp_path / "pop"), progress=False)
    # Training pairs (temporal split): u1 i1 i2 i3, u2 i6 i3, u3 i4, u4 i1 i2 -> counts
    # i1 2, i2 2, i3 2, i4 1, i5 0, i6 1. Test targets: u1 i5, u2 i1, u3 i6; valid excluded.
    # u1 (seen i1-i4): ranks i6 (1) then i5 (0): i5 at rank 2 -> ndcg 1/log2(3) = 0.6309.
    # u2 (seen i6 i3 i2): i1 first -> 1.  u3 (seen i4 i5): i1, i2, i3 (count 2) then i6 -> rank 4
    # -> 1/log2(5) = 0.4307. Mean ndcg@10 = (0.6309 + 1 + 0.4307) / 3 = 0.6872.
    assert result.metrics["test"]["ndcg@10"] == pytest.approx(0.6872, abs=1e-4)
    assert result.metrics["test"]["mrr@10"] == pytest.approx((0.5 + 1 + 0.25) / 3, abs=1e-6)


BAD_CONFIGS = [
    ("[model]\nconvv = 'sage'\n", "unknown config key model.convv"),
    ("[model]\nlayers = -1\n", "model.layers is -1, but it must be between 0 and 8"),
    ("[model]\nconv = 'gcn9'\n", "model.conv is 'gcn9', but it must be one of"),
    ("[train]\nlearning_rate = 'fast'\n", "train.learning_rate must be a number"),
    ("[optimiser]\n", "unknown config section [optimiser]"),
    ("[train\n", "is not valid TOML"),
]


@pytest.mark.parametrize("text,message", BAD_CONFIGS)
def test_bad_config_fails_before_training(tmp_path, capsys, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    run = tmp_path / "run"
    code = main(["train", "--schema", TINY, "--config", str(path), "--run-dir", str(run)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and str(path) in err and "Traceback" not in err
    assert not run.exists()


def test_print_config_round_trips(capsys, tmp_path):
    assert main(["train", "--schema", TINY, "--print-config"]) == 0
    text = capsys.readouterr().out
    (tmp_path / "c.toml").write_text(text)
    import tomllib

    assert config_from_dict(tomllib.loads(text)) == Config()


def test_movielens_config_uses_text_for_cold_items_only(capsys):
    path = Path(__file__).parent.parent / "configs" / "movielens.toml"
    assert main(["train", "--schema", TINY, "--config", str(path), "--cold-items", "0.5",
                 "--print-config"]) == 0
    text = capsys.readouterr().out
    assert 'text_input = "cold"' in text and 'align_mode = "text"' in text
    assert "cold_items = 0.5" in text and 'method = "random"' in text


def test_metrics_table_explains_an_empty_cold_slice():
    from tfrec.train.run import format_metrics

    test = {"num_users": 3, **{f"{m}@{k}": 0.25 for m in ("recall", "ndcg", "precision", "hit",
                                                         "mrr") for k in (10, 20)}}
    lines = format_metrics({"test": test, "test_cold": {"num_users": 0}}).splitlines()
    assert lines[1].split() == ["test", "3"] + ["0.2500"] * 10
    assert lines[2].split()[:2] == ["test_cold", "0"] and "--cold-items" in lines[2]
