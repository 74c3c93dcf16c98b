"""Training on sampled subgraphs (train.mode "sampled") with the same model and losses as the
full graph: it learns the planted groups of test_model_planted, the knowledge-graph-only group
of the cold items included; "auto" picks the mode by size; the new config keys are checked."""

import numpy as np
import pytest
from test_model_planted import GROUP_ITEMS, COLD_PER_GROUP, group_auc, planted  # noqa: F401

from tfrec.config import config_from_dict
from tfrec.errors import TfrecError
from tfrec.train.fit import Trainer, embeddings, training_mode
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
                                  "fanouts, auto_edges)"),
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
