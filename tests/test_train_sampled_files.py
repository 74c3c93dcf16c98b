"""Sampled training from the Beam sampler's examples (sample.examples, SampledFiles): the
folder is checked against the run up front (fast), and a `tfrec data sample` DirectRunner run
on the planted graph trains the same model to the planted groups (slow: Beam starts minutes)."""

import dataclasses
import json
import re

import numpy as np
import pytest
import tensorflow as tf
from test_model_planted import COLD_PER_GROUP, GROUP_ITEMS, group_auc, planted  # noqa: F401
from test_train_sampled import _config

from tfrec.data.beam_reader import check_sampled
from tfrec.errors import TfrecError
from tfrec.train.fit import SampledFiles, Trainer, embeddings
from tfrec.train.prepare import prepare
from tfrec.train.run_dir import RunDir

SPLIT = {"method": "random", "ratios": [0.8, 0.1, 0.1], "seed": 0, "split_dir": None,
         "cold_items": 0.0}


def _folder(tmp_path, **changes):
    """A sampled folder as `tfrec data sample` leaves it: sampled.json (with `changes`) and
    one (empty) shard."""
    schema = tmp_path / "schema.pbtxt"
    schema.write_text("node_sets {}\n")
    info = {"schema": str(schema), "fanouts": [5, 5], "split": SPLIT,
            "tables": {"nodes.user": 30, "nodes.item": 20, "seeds": 100}, "examples": 100}
    info.update(changes)
    folder = tmp_path / "sampled"
    (folder / "samples").mkdir(parents=True)
    (folder / "samples" / "examples.tfrecord-00000-of-00001").write_bytes(b"")
    (folder / "sampled.json").write_text(json.dumps(info))
    return folder, dict(schema=schema, fanouts=(5, 5), split=SPLIT,
                        nodes={"user": 30, "item": 20}, pairs=100, batch=32)


def test_a_folder_written_for_this_run_passes(tmp_path):
    folder, run = _folder(tmp_path)
    assert check_sampled(folder, **run)["examples"] == 100
    # the same schema text under another path is the same schema
    copy = tmp_path / "copy.pbtxt"
    copy.write_text("node_sets {}\n")
    check_sampled(folder, **{**run, "schema": copy})


@pytest.mark.parametrize("changes, run, message", [
    ({}, {"fanouts": (10, 5)}, r"sampled with fanouts \[5, 5\], but sample.fanouts is \[10, 5\]"),
    ({"split": {**SPLIT, "seed": 1}}, {}, r"training pairs of the split .*'seed': 1"),
    ({"tables": {"nodes.user": 31, "nodes.item": 20}}, {}, "graph of 31 user nodes, but this "
     "run's has 30"),
    ({"examples": 90}, {}, "holds 90 examples, but this run has 100 training pairs"),
    ({}, {"batch": 128}, "train.batch_size 128 is more than the 100 examples"),
])
def test_a_folder_written_for_another_run_is_refused(tmp_path, changes, run, message):
    folder, mine = _folder(tmp_path, **changes)
    with pytest.raises(TfrecError, match=message):
        check_sampled(folder, **{**mine, **run})


def test_another_schema_or_no_folder_is_refused(tmp_path):
    folder, run = _folder(tmp_path)
    other = tmp_path / "other.pbtxt"
    other.write_text("node_sets { key: 'x' }\n")
    with pytest.raises(TfrecError, match="sampled from the schema .*schema.pbtxt, not "):
        check_sampled(folder, **{**run, "schema": other})
    with pytest.raises(TfrecError, match="is not a folder written by `tfrec data sample`"):
        check_sampled(tmp_path / "missing", **run)
    for shard in (folder / "samples").iterdir():
        shard.unlink()
    with pytest.raises(TfrecError, match="holds no examples.tfrecord-"):
        check_sampled(folder, **run)


@pytest.mark.slow  # Beam's DirectRunner (minutes) + 40 epochs of 4 steps
def test_training_from_the_beam_samplers_examples_recovers_planted_groups(planted,  # noqa: F811
                                                                          tmp_path):
    from tfrec.data.beam_sampler import sample_with_beam

    out = tmp_path / "sampled"
    config = _config(planted, "sampled", examples=str(out))
    prepared = prepare(str(planted / "schema.pbtxt"), config, progress=False)
    users, items = prepared.split.pairs("train")
    sample_with_beam(prepared.model_graph, prepared.data.schema, users, items,
                     np.zeros(len(users), np.float32), out, config.sample.fanouts,
                     pipeline_args=["--runner=DirectRunner"],
                     split=json.loads(json.dumps(dataclasses.asdict(config.split))))
    lines = []
    trainer = Trainer(prepared, config, RunDir(tmp_path / "run"), False, lines.append)
    assert isinstance(trainer.graphs, SampledFiles)
    assert trainer.graphs.steps == len(users) // 100
    trained, report = trainer.fit()
    losses = [float(m) for m in re.findall(r"loss (\S+)", "\n".join(lines))]
    user, item, _ = embeddings(trained)
    auc = group_auc(user, item, np.arange(2 * GROUP_ITEMS))
    cold = group_auc(user, item, np.arange(2 * GROUP_ITEMS, 2 * GROUP_ITEMS + 2 * COLD_PER_GROUP))
    print("\n".join(lines), f"\ngroup AUC warm {auc:.3f} cold {cold:.3f}, best valid "
          f"{report.best_valid:.4f}")
    assert report.mode == "sampled" and len(losses) == report.epochs_run == 40
    # the loss falls (7.77-7.81 -> 6.31-6.35 in 3 runs here: Beam's draws are not seeded) and
    # still falls after the first epochs (one run: epochs 2-6 6.61 on average, the last 5 6.35)
    assert losses[-1] < 0.85 * losses[0] and np.mean(losses[-5:]) < np.mean(losses[1:6]) - 0.1
    assert auc >= 0.9  # 1.000 in each of 2 runs here
    assert cold >= 0.9  # items without a training edge, placed by their entity: 1.000 too
    # under a strategy of 2 replicas, one per input pipeline, each pipeline reads its shard of
    # the epoch's shuffled examples in batches of 50: together, the examples of one device's
    # epoch, each once
    def pairs(graph, u, i):
        return list(zip(tf.gather(graph.node_sets["user"]["row"], u).numpy(),
                        tf.gather(graph.node_sets["item"]["row"], i).numpy()))

    files, steps = trainer.graphs, trainer.graphs.steps
    one = [p for view, _, _ in files.epoch(trainer.batches, 3, trainer.objective)
           for p in pairs(view.graph, view.users, view.items)]
    shared = []
    for r in range(2):
        for x in files.shares(3, trainer.objective, range(r, r + 1), 2, 0).take(steps):
            assert x["u_rows"].shape == (50,) and x["fresh"].shape == (0,)
            shared += pairs(x["graph"], x["u_rows"], x["i_rows"])
    assert len(one) == steps * 100 and sorted(shared) == sorted(one)
    assert len(set(one)) == len(one)


@pytest.mark.parametrize("mode, message", [
    ("sampled", "is not a folder written by `tfrec data sample`"),
    ("full", "but training runs on the full graph: set train.mode = \"sampled\""),
])
def test_train_refuses_a_bad_examples_folder_in_one_sentence(planted, tmp_path,  # noqa: F811
                                                             capsys, mode, message):
    from tfrec.cli import main

    config = tmp_path / "c.toml"
    config.write_text(f'[train]\nmode = "{mode}"\n[text]\nmode = "off"\n'
                      f'[sample]\nexamples = "{tmp_path / "missing"}"\n', encoding="utf-8")
    run = tmp_path / "run"
    code = main(["train", "--schema", str(planted / "schema.pbtxt"), "--config", str(config),
                 "--split-dir", str(planted / "splits"), "--run-dir", str(run), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (run / "checkpoints").exists() or not any((run / "checkpoints").iterdir())
    assert not (run / "run.json").exists()  # refused before the run is claimed
