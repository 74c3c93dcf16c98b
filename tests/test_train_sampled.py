"""Training on sampled subgraphs (train.mode "sampled") with the same model and losses as the
full graph: it learns the planted groups of test_model_planted, the knowledge-graph-only group
of the cold items included; "auto" picks the mode by size; the new config keys are checked."""

import numpy as np
import pytest
from test_model_planted import GROUP_ITEMS, COLD_PER_GROUP, group_auc, planted  # noqa: F401

from tfrec.config import config_from_dict
from tfrec.errors import TfrecError
from tfrec.train.fit import Trainer, build, embeddings, training_mode
from tfrec.train.inference import by_size
from tfrec.train.prepare import prepare
from tfrec.train.run_dir import RunDir


def _config(folder, mode: str, **sample):
    return config_from_dict({
        "model": {"dim": 16, "layers": 2}, "text": {"mode": "off"},
        # 4 steps an epoch: each batch's subgraph holds the other batches' edges, not its own
        "train": {"epochs": 40, "batch_size": 100, "chunk": 100, "learning_rate": 0.05,
                  "weight_decay": 0.01, "patience": 40, "ranking_weight": 0.0, "mode": mode},
        "sample": {"fanouts": [5, 5], **sample},
        "split": {"method": "files", "split_dir": str(folder / "splits")}})


@pytest.mark.slow  # ~4 min on a loaded 2-core machine (sampler tracing, 160 sampled steps)
def test_sampled_training_recovers_planted_groups(planted, tmp_path):  # noqa: F811
    config = _config(planted, "sampled")
    prepared = prepare(str(planted / "schema.pbtxt"), config, progress=False)
    trainer = Trainer(prepared, config, RunDir(tmp_path / "run"), False, lambda s: None)
    trained, report = trainer.fit()
    assert report.mode == "sampled"
    user, item, _ = embeddings(trained)
    warm = np.arange(2 * GROUP_ITEMS)
    cold = np.arange(2 * GROUP_ITEMS, 2 * GROUP_ITEMS + 2 * COLD_PER_GROUP)
    assert group_auc(user, item, warm) >= 0.9
    # the cold items (no training edge) are placed by their group entity's messages alone
    assert group_auc(user, item, cold) >= 0.9


def test_auto_mode_samples_above_the_edge_threshold(planted):  # noqa: F811
    config = _config(planted, "auto")
    prepared = prepare(str(planted / "schema.pbtxt"), config, progress=False)
    # 400 training interactions (40 users x 10)
    assert training_mode(prepared, config) == "full"  # default threshold 200,000
    assert training_mode(prepared, _config(planted, "auto", auto_edges=399)) == "sampled"
    assert training_mode(prepared, _config(planted, "auto", auto_edges=400)) == "full"
    assert training_mode(prepared, _config(planted, "sampled")) == "sampled"
    assert by_size(prepared, _config(planted, "full", auto_edges=399), "auto") == "sampled"
    assert by_size(prepared, _config(planted, "full", auto_edges=400), "auto") == "full"


@pytest.mark.parametrize("values, message", [
    ({"train": {"mode": "mini"}}, "config key train.mode is 'mini', but it must be one of "
                                  "auto, full, sampled"),
    ({"sample": {"fanouts": []}}, "config key sample.fanouts is [], but it must list 1 to 8 "
                                  "hops, such as [10, 10, 5]"),
    ({"sample": {"fanouts": [10, 0]}}, "config key sample.fanouts is [10, 0], but each number "
                                       "must be between 1 and 10000"),
    ({"sample": {"fanouts": 10}}, "config key sample.fanouts must be a list, not 10"),
    ({"sample": {"auto_edges": 0}}, "config key sample.auto_edges is 0, but it must be at "
                                    "least 1"),
    ({"sample": {"fanout": [3]}}, "unknown config key sample.fanout (known in [sample]: "
                                  "fanouts, auto_edges, inference, inference_batch, parallel, "
                                  "examples)"),
    ({"sample": {"parallel": 0}}, "config key sample.parallel is 0, but it must be between 1 "
                                  "and 64"),
    ({"sample": {"inference": "batched"}}, "config key sample.inference is 'batched', but it "
                                           "must be one of auto, full, sampled"),
])
def test_sampling_config_is_checked(values, message):
    with pytest.raises(TfrecError) as e:
        config_from_dict(values)
    assert str(e.value) == message


def test_sampling_config_defaults():
    config = config_from_dict({})
    assert config.train.mode == "auto"
    assert config.sample.fanouts == (10, 10, 5)
    assert config.sample.auto_edges == 200_000
    assert config.sample.inference == "auto"
    assert config.sample.inference_batch == 4096
    assert config.sample.examples == ""  # sampled training samples in memory
    assert config.sample.parallel == 1  # one subgraph drawn at a time: reproducible draws


def test_a_run_folder_from_before_the_sampling_keys_still_resumes(tmp_path):
    import json

    from tfrec.config import Config
    from tfrec.train.run_dir import RunDir

    schema = tmp_path / "schema.pbtxt"
    schema.write_text("")
    run = RunDir(tmp_path / "run")
    assert run.claim(str(schema), Config()) is False
    manifest = json.loads(run.manifest_file.read_text())
    del manifest["config"]["sample"], manifest["config"]["train"]["mode"]  # an older run.json
    run.manifest_file.write_text(json.dumps(manifest))
    assert run.check(str(schema), Config()) is True
    with pytest.raises(TfrecError, match="differs in sample.fanouts"):
        run.check(str(schema), config_from_dict({"sample": {"fanouts": [3]}}))


def test_the_pipeline_yields_the_subgraphs_of_the_direct_call(planted, tmp_path):  # noqa: F811
    """With fan-outs above every degree the sample is every edge within reach, so the tf.data
    pipeline (sampling in Dataset.map, prefetched) and a direct call on the same batch must give
    the same subgraph: same nodes (global rows), same edges, same batch positions; the
    candidates are the subgraph's items seen in training; the step compiles once. Two batches
    are sampled at once (sample.parallel = 2): the subgraphs still come in batch order."""
    config = _config(planted, "sampled", fanouts=[50, 50], parallel=2)
    prepared = prepare(str(planted / "schema.pbtxt"), config, progress=False)
    trainer = Trainer(prepared, config, RunDir(tmp_path / "run"), False, lambda s: None)
    rows = trainer.batches.rows(1)
    seen = np.bincount(trainer.batches.items, minlength=prepared.num_items) > 0
    steps = list(trainer.graphs.dataset(trainer.batches, 1, trainer.objective).take(4))
    assert len(rows) == 4
    for step, batch in zip(steps, rows):
        graph, u, i, item_rows, candidates = (step[k] for k in (
            "graph", "u_rows", "i_rows", "item_rows", "candidates"))
        direct = trainer.graphs.batch(trainer.batches.users[batch], trainer.batches.items[batch])
        for name in graph.node_sets:
            np.testing.assert_array_equal(graph.node_sets[name]["row"],
                                          direct.graph.node_sets[name]["row"])
        for name, edges in graph.edge_sets.items():
            np.testing.assert_array_equal(edges.adjacency.source,
                                          direct.graph.edge_sets[name].adjacency.source)
            np.testing.assert_array_equal(edges.adjacency.target,
                                          direct.graph.edge_sets[name].adjacency.target)
        np.testing.assert_array_equal(u, direct.users)
        np.testing.assert_array_equal(i, direct.items)
        np.testing.assert_array_equal(np.asarray(item_rows)[i], trainer.batches.items[batch])
        np.testing.assert_array_equal(candidates, np.flatnonzero(seen[np.asarray(item_rows)]))
    traces = []  # subgraphs of different sizes, one compiled step, one pipeline for 2 epochs
    for epoch in (1, 2):
        for view, labels, candidates in trainer.graphs.epoch(trainer.batches, epoch,
                                                             trainer.objective):
            trainer.step(view.graph, view.users, view.items, labels, np.zeros([0], np.int32),
                         candidates, view.item_rows)
            traces.append(trainer.step.experimental_get_tracing_count())
        assert trainer.graphs._next[0] == epoch + 1  # the pipeline carries on
    assert traces[1:] == traces[:1] * 7
    np.testing.assert_array_equal(  # epoch 2's last batch was epoch 2's own pairs
        np.asarray(view.item_rows)[np.asarray(view.items)],
        trainer.batches.items[trainer.batches.rows(2)[-1]])


@pytest.mark.slow  # 2-7 min on a loaded 2-core machine (two samplers and embedders traced)
def test_sampled_inference_equals_the_full_pass_above_every_degree(planted):  # noqa: F811
    """A 2-layer model's embedding of a node reads only its 2-hop neighbourhood; with fan-outs
    [1000, 1000] (above every degree of the planted graph: 10 items a user, 40 users at most an
    item) each batch's sampled neighbourhood holds all of it, so batched sampled inference (7
    seeds a batch: 40 users in 6 batches) gives the full pass's embeddings, bias included, up to
    float rounding; with fan-out 1 it only estimates them."""
    config = _config(planted, "full", fanouts=[1000, 1000], inference="sampled",
                     inference_batch=7)
    prepared = prepare(str(planted / "schema.pbtxt"), config, progress=False)
    trained = build(prepared, config)
    e = trained.model.embed(trained.graph, training=False)
    user, item, bias = embeddings(trained)
    assert user.shape == (prepared.num_users, 16) and item.shape == (prepared.num_items, 16)
    np.testing.assert_allclose(user, e.user.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(item, e.item.numpy(), rtol=1e-5, atol=1e-6)
    if e.item_bias is None:
        assert bias is None
    else:
        np.testing.assert_allclose(bias, e.item_bias.numpy(), rtol=1e-5, atol=1e-6)
    assert trained.embedder.embed.experimental_get_tracing_count() == 1
    coarse = build(prepared, _config(planted, "full", fanouts=[1, 1], inference="sampled"))
    assert not np.allclose(embeddings(coarse)[0], e.user.numpy(), atol=1e-3)
