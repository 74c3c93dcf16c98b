"""Training on the tiny graph: run folders, resume, NaN stop, TensorBoard, configs, conv types."""

import itertools
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


def assert_tiny_test_metrics(test: dict) -> None:
    """The test metrics of any model on the tiny graph's temporal 0.6/0.2/0.2 split, worked out.

    Test holds one pair each of u1, u2 and u3 (u4 has 2 pairs: all train). Their candidates,
    the 6 items minus their train and valid ones, number u1: 6 - 3 - 1 = 2, u2: 6 - 2 - 1 = 3,
    u3: 6 - 1 - 1 = 4, so every target is in the top 10:
    recall@20 = hit@10 = 1 and precision@10 = 1/10. With its one target at rank r_u, a user's
    mrr is 1/r_u and its ndcg 1/log2(r_u + 1): both means come from one (r1, r2, r3) with
    r1 <= 2, r2 <= 3, r3 <= 4.
    """
    assert test["num_users"] == 3
    assert (test["recall@20"], test["hit@10"], test["precision@10"]) == pytest.approx(
        (1.0, 1.0, 0.1))
    ranks = np.array(list(itertools.product(range(1, 3), range(1, 4), range(1, 5))))
    mrr, ndcg = (1 / ranks).mean(1), (1 / np.log2(ranks + 1)).mean(1)
    fits = np.isclose(mrr, test["mrr@20"], atol=1e-6) & np.isclose(ndcg, test["ndcg@20"],
                                                                   atol=1e-6)
    assert fits.any(), (test["mrr@20"], test["ndcg@20"])


def test_train_writes_a_complete_run_folder(tmp_path):
    run = tmp_path / "run"
    result = train(TINY, tiny_config(), str(run), progress=False, log=lambda s: None)
    assert result.info["epochs_run"] == 3 and 1 <= result.info["best_epoch"] <= 3
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["test"]["num_users"] == 3 and set(saved) == {"valid", "test", "test_cold", "info"}
    assert_tiny_test_metrics(saved["test"])
    tags = scalar_tags(run / "logs")
    assert {"loss/retrieval", "loss/ranking", "loss/total", "learning_rate", "valid/ndcg@20",
            "valid/recall@10", "valid/mrr@20"} <= tags
    assert {"_hparams_/session_start_info", "final/valid/ndcg@20", "final/test/ndcg@20"} <= tags
    assert "item_embedding" in (run / "logs" / "projector_config.pbtxt").read_text()
    assert (run / "logs" / "metadata.tsv").read_text().splitlines()[:2] == [
        "item_id\ttitle", "i1\tRed Wool Sweater"]
    best = tf.train.latest_checkpoint(str(run / "checkpoints" / "best"))
    assert best.endswith(f"ckpt-{result.info['best_epoch']}")
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
    assert result.info["epochs_run"] == 1
    assert_tiny_test_metrics(result.metrics["test"])


def _edges(graph, name):
    adj = graph.edge_sets[name].adjacency
    return list(zip(adj.source.numpy().tolist(), adj.target.numpy().tolist()))


def test_message_passing_sees_training_pairs_only():
    prepared = prepare(TINY, tiny_config())
    train_pairs = set(zip(*prepared.split.pairs("train")))
    assert set(_edges(prepared.model_graph, "rates")) == train_pairs
    assert set(_edges(prepared.model_graph, "rated_by")) == {(i, u) for u, i in train_pairs}
    held_out = set(zip(*prepared.split.pairs("valid"))) | set(zip(*prepared.split.pairs("test")))
    assert not held_out & train_pairs


def test_training_and_data_build_use_the_one_schema_checked_graph():
    from tfrec.data.build import build_graph

    prepared = prepare(TINY, tiny_config())
    built = build_graph(TINY, tiny_config().split)
    for name, edge_set in built.graph.edge_sets.items():
        assert _edges(prepared.graph, name) == _edges(built.graph, name)
        for f, v in edge_set.features.items():
            np.testing.assert_array_equal(prepared.graph.edge_sets[name][f].numpy(), v.numpy())
    for name, node_set in built.graph.node_sets.items():
        for f, v in node_set.features.items():
            np.testing.assert_array_equal(prepared.graph.node_sets[name][f].numpy(), v.numpy())
    # the model graph is derived from it: the same training interactions, in the same order
    assert _edges(prepared.model_graph, "rates") == _edges(built.graph, "rates")


def test_knowledge_graph_leaves_are_left_out():
    prepared = prepare(TINY, tiny_config())
    # wool (i1 only), cotton (i2 only) and kitchen (i3 only) are leaves; clothing has i1 and i2
    assert sorted(_edges(prepared.graph, "about")) == [(0, 0), (0, 2), (1, 1), (1, 2), (2, 3)]
    assert sorted(_edges(prepared.model_graph, "about")) == [(0, 2), (1, 2)]


def test_edge_features_hold_the_lightgcn_norm_first():
    graph = prepare(TINY, tiny_config()).model_graph
    # training pairs (temporal 60/20/20): u1 i1 i2 i3, u2 i6 i3, u3 i4, u4 i1 i2; the norm of
    # u1 -> i3 is 1 / sqrt(deg_out(u1) = 3 * deg_in(i3) = 2)
    efeat = graph.edge_sets["rates"]["efeat"].numpy()
    pairs = _edges(graph, "rates")
    assert efeat[pairs.index((0, 2)), 0] == pytest.approx(1 / np.sqrt(6))
    assert efeat[pairs.index((2, 3)), 0] == pytest.approx(1.0)  # u3 i4: degrees 1 and 1
    # then the standardised rating (one numeric column; timestamps are numeric too)
    assert efeat.shape[1] == 1 + 2


def test_items_without_training_pairs_get_no_id_embedding_and_no_bias():
    config = tiny_config()
    config = Config(config.model, config.text, config.train,
                    SplitConfig("temporal", (0.6, 0.2, 0.2), cold_items=0.5))
    prepared = prepare(TINY, config)
    cold = [2, 4, 5]  # i3, i5, i6: every pair held out (tests/test_data_build.py)
    id_mask = prepared.model_graph.node_sets["item"]["id_mask"].numpy()
    assert id_mask.tolist() == [1, 1, 0, 1, 0, 0]
    trained = fit_module.build(prepared, config)
    model, graph = trained.model, trained.graph
    model.item_bias.assign(np.arange(1.0, 7.0))
    before = model.embed(graph)
    ids = model.encoders["item"].ids.embeddings
    ids.assign(ids + 1.0)
    after = model.embed(graph)
    moved = np.abs(after.item_h0.numpy() - before.item_h0.numpy()).max(axis=1)
    assert (moved[cold] == 0).all() and (moved[[0, 1, 3]] > 0.5).all()
    assert after.item_bias.numpy().tolist() == [1, 2, 0, 4, 0, 0]
    # scores are u.i + b_i: the scoring tables carry the bias as one more column
    user, item = after.scoring()
    expected = after.user.numpy() @ after.item.numpy().T + after.item_bias.numpy()
    np.testing.assert_allclose((user @ tf.transpose(item)).numpy(), expected, rtol=1e-5)


def test_the_model_reads_a_subgraph_by_its_row_feature():
    """The same model code embeds the full graph or a subgraph of it (what a sampler yields):
    ID embeddings, features and biases are looked up by each node's "row", not its position."""
    import tensorflow_gnn as tfgnn

    config = tiny_config()
    prepared = prepare(TINY, config)
    trained = fit_module.build(prepared, config)
    full = trained.model.embed(trained.graph)
    keep = {"user": [3, 1], "item": [4, 0, 1], "entity": [2]}  # nodes in a new order

    def node_set(name):
        features = {f: tf.gather(v, keep[name]) for f, v in
                    trained.graph.node_sets[name].features.items()}
        return tfgnn.NodeSet.from_fields(sizes=[len(keep[name])], features=features)

    def edge_set(name, source, target, pairs):
        return tfgnn.EdgeSet.from_fields(
            sizes=[len(pairs)],
            features={"efeat": tf.ones([len(pairs), trained.graph.edge_sets[name]["efeat"]
                                        .shape[1]])},
            adjacency=tfgnn.Adjacency.from_indices(
                (source, [p[0] for p in pairs]), (target, [p[1] for p in pairs])))

    sub = tfgnn.GraphTensor.from_pieces(
        node_sets={n: node_set(n) for n in keep},
        edge_sets={"rates": edge_set("rates", "user", "item", [(0, 1)]),  # u4 -> i1
                   "rated_by": edge_set("rated_by", "item", "user", [(1, 0)]),
                   "about": edge_set("about", "item", "entity", [(1, 0)])})
    part = trained.model.embed(sub)
    np.testing.assert_allclose(part.item_h0.numpy(), full.item_h0.numpy()[keep["item"]],
                               atol=1e-6)
    np.testing.assert_allclose(part.user_h0.numpy(), full.user_h0.numpy()[keep["user"]],
                               atol=1e-6)
    np.testing.assert_allclose(part.item_bias.numpy(), full.item_bias.numpy()[keep["item"]])


def test_mixed_precision_policy_keeps_outputs_float32():
    config = Config(ModelConfig(dim=8, layers=1), tiny_config().text,
                    TrainConfig(mixed_precision=True), SPLIT)
    prepared = prepare(TINY, config)
    try:
        trained = fit_module.build(prepared, config)
        assert tf.keras.mixed_precision.global_policy().name == "mixed_float16"
        features = dict(trained.graph.node_sets["item"].features)
        h0, _ = trained.model.encoders["item"](features)
        assert h0.dtype == tf.float16  # computed in float16 ...
        e = trained.model.embed(trained.graph)
        assert e.user.dtype == tf.float32
        assert trained.model.encoders["item"].ids.embeddings.dtype == tf.float32  # float32 weights
        user, item, bias = fit_module.embeddings(trained)
        assert user.dtype == item.dtype == bias.dtype == np.float32  # ... served in float32
        scores = trained.ranking.scorer((e.user[:2], e.item[:2]))
        assert scores.dtype == tf.float32
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")


def test_mixed_precision_trains(tmp_path):
    config = tiny_config(epochs=2, mixed_precision=True)
    try:
        result = train(TINY, config, str(tmp_path / "run"), progress=False, log=lambda s: None)
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
    assert result.info["epochs_run"] == 2
    assert result.metrics["test"]["num_users"] == 3


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
    from tfrec.evaluate.report import format_metrics

    test = {"num_users": 3, **{f"{m}@{k}": 0.25 for m in ("recall", "ndcg", "precision", "hit",
                                                         "mrr") for k in (10, 20)}}
    lines = format_metrics({"test": test, "test_cold": {"num_users": 0}}).splitlines()
    assert lines[1].split() == ["test", "3"] + ["0.2500"] * 10
    assert lines[2].split()[:2] == ["test_cold", "0"] and "--cold-items" in lines[2]


def test_build_makes_the_weights_of_a_full_graph_pass_without_one():
    """build() creates the weights from a pass over the edgeless graph (tfrec.model.inputs.
    edgeless: no [E, dim] messages, ~4 GB each at 1e7 interactions): the same weights, in the
    same order, with the same seeded values as a pass over the whole graph."""
    from tfrec.model.inputs import edgeless
    from tfrec.model.recommender import GraphRecommender, resolved

    config = config_from_dict({"text": {"mode": "off"}, "model": {"layers": 2}})
    prepared = prepare(TINY, config, progress=False)
    assert all(int(e.total_size) == 0 for e in edgeless(prepared.model_graph).edge_sets.values())
    built = fit_module.build(prepared, config).model
    tf.keras.utils.set_random_seed(config.train.seed)
    full = GraphRecommender(prepared.spec, resolved(config.model), None)
    full.embed(prepared.model_graph)
    assert [w.shape for w in built.weights] == [w.shape for w in full.weights]
    for a, b in zip(built.weights, full.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
