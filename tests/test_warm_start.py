"""Warm start across changed tables (`tfrec train --warm-start`) and the export gate
(`tfrec export --only-if-better`), on the tiny graph and an updated copy of it:
  - u5 is a new user, i7 a new item, i6 is removed (its item row and its ratings);
  - the other ids keep their exact learned rows, in new positions (i7 is listed first)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tfrec.cli import main
from tfrec.config import config_from_dict
from tfrec.train.fit import _optimizer, build, embeddings, restore_best, trainable_variables
from tfrec.train.prepare import prepare
from tfrec.train.run import train
from tfrec.train.run_dir import RunDir
from tfrec.train.warm_start import WarmStart, map_vocab

TINY = Path(__file__).parent / "data" / "tiny"
CONFIG = {"model": {"kind": "mf", "dim": 8}, "text": {"mode": "off"},
          "train": {"epochs": 3, "batch_size": 4, "patience": 10, "learning_rate": 0.05},
          "split": {"method": "temporal", "ratios": [0.6, 0.2, 0.2]}}
TOML = """[model]
kind = "mf"
dim = {dim}
[text]
mode = "off"
[train]
epochs = {epochs}
batch_size = 4
patience = 10
learning_rate = {lr}
[split]
method = "temporal"
ratios = [0.6, 0.2, 0.2]
"""


def write_config(folder: Path, dim=8, epochs=3, lr=0.05) -> str:
    path = folder / f"config-{dim}-{epochs}-{lr}.toml"
    path.write_text(TOML.format(dim=dim, epochs=epochs, lr=lr))
    return str(path)


def test_map_vocab_by_hand():
    # old rows: a=0 b=1 c=2; new rows: c=0 d=1 a=2 -> a 0->2, c 2->0; d added, b removed
    m = map_vocab("item", np.array(["a", "b", "c"], object), np.array(["c", "d", "a"], object))
    assert m.old_rows.tolist() == [0, 2] and m.new_rows.tolist() == [2, 0]
    assert (m.added, m.removed) == (1, 1)


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> Path:
    """The updated copy of the tiny tables (see the module docstring)."""
    folder = tmp_path_factory.mktemp("updated")
    for f in TINY.iterdir():
        shutil.copy(f, folder)
    items = (TINY / "items.tsv").read_text().splitlines()
    (folder / "items.tsv").write_text("\n".join(
        [items[0], "i7\tGreen Linen Scarf\t18"] + [r for r in items[1:] if
                                                    not r.startswith("i6")]) + "\n")
    (folder / "users.tsv").write_text((TINY / "users.tsv").read_text() + "u5\t25\n")
    ratings = [r for r in (TINY / "ratings.tsv").read_text().splitlines() if "\ti6\t" not in r]
    ratings += ["u5\ti1\t5\t600", "u5\ti7\t4\t610", "u5\ti2\t3\t620", "u1\ti7\t4\t650"]
    (folder / "ratings.tsv").write_text("\n".join(ratings) + "\n")
    return folder


@pytest.fixture(scope="module")
def old_run(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("old") / "run"
    train(str(TINY / "schema.pbtxt"), config_from_dict(CONFIG), str(path), progress=False,
          log=lambda s: None)
    return path


def test_known_ids_keep_their_rows_and_scores_new_ids_start_fresh(old_run, tables):
    config = config_from_dict(CONFIG)
    old_schema, old_config = RunDir(old_run).schema_and_config()
    old_prepared = prepare(old_schema, old_config, progress=False)
    old = build(old_prepared, old_config)
    restore_best(old, RunDir(old_run))
    new_prepared = prepare(str(tables / "schema.pbtxt"), config, progress=False)
    fresh = build(new_prepared, config)  # the same seed: what warm start leaves for new ids
    fresh_items = fresh.model.encoders["item"].ids.embeddings.numpy()
    warm = WarmStart.open(str(old_run), str(tables / "new-run"), str(tables / "schema.pbtxt"),
                          config)
    warm.map(new_prepared.data.node_ids)
    assert warm.report["node_sets"]["item"] == {"kept": 5, "added": 1, "removed": 1}
    assert warm.report["node_sets"]["user"] == {"kept": 4, "added": 1, "removed": 0}
    new = build(new_prepared, config)
    done = warm.apply(new)
    assert set(done["mapped"]) == {"model/encoders/user/ids/embeddings",  # MF: no entity
                                   "model/encoders/item/ids/embeddings", "model/item_bias"}

    old_ids = list(old_prepared.data.node_ids["item"])
    new_ids = list(new_prepared.data.node_ids["item"])
    assert new_ids == ["i7", "i1", "i2", "i3", "i4", "i5"]  # i6 is gone, i7 first
    old_table = old.model.encoders["item"].ids.embeddings.numpy()
    new_table = new.model.encoders["item"].ids.embeddings.numpy()
    assert new_table.shape == (6, 8)
    for item in ("i1", "i3", "i5"):  # known: its exact learned row, in its new position
        np.testing.assert_array_equal(new_table[new_ids.index(item)],
                                      old_table[old_ids.index(item)])
    np.testing.assert_array_equal(new_table[0], fresh_items[0])  # i7: its fresh initial row
    assert not np.allclose(new_table[0], old_table[old_ids.index("i6")])

    # before any step, the warm model scores known (user, item) pairs as the old one did
    # (MF: u.i + b_i, so this holds for every item whose id is used in both: id_mask 1)
    ou, oi, ob = embeddings(old)
    nu, ni, nb = embeddings(new)
    old_users = list(old_prepared.data.node_ids["user"])
    new_users = list(new_prepared.data.node_ids["user"])
    old_mask = old_prepared.model_graph.node_sets["item"]["id_mask"].numpy()
    new_mask = new_prepared.model_graph.node_sets["item"]["id_mask"].numpy()
    checked = 0
    for item in ("i1", "i2", "i3", "i4", "i5"):
        o, n = old_ids.index(item), new_ids.index(item)
        if not (old_mask[o] and new_mask[n]):
            continue
        for user in old_users:
            a, b = old_users.index(user), new_users.index(user)
            assert nu[b] @ ni[n] + nb[n] == pytest.approx(ou[a] @ oi[o] + ob[o], abs=1e-6)
            checked += 1
    assert checked >= 12


@pytest.mark.parametrize("name", ["adam", "lazy_adam"])
def test_the_optimizer_continues_with_its_slots_mapped_like_the_weights(old_run, tables, name):
    """Adam's moments m, v of a known row move with it, a new row's are zero, the step count t
    continues and the learning-rate schedule restarts (cosine at its start: the full rate); so
    for train.optimizer "lazy_adam" (Adam's slots) continuing the old Adam run.
    One step with a zero gradient of the item table's row of i3 (IndexedSlices, as a lookup
    gives), zero dense gradients elsewhere, then moves i3 by hand:
        m' = b1 m,  v' = b2 v,  alpha = lr sqrt(1 - b2^(t+1)) / (1 - b1^(t+1)),
        row' = row - alpha m' / (sqrt(v') + eps)
    and leaves i7's row alone (m' = 0); i1, not in the gradient, moves the same way under
    Adam but keeps its row and moments under lazy Adam."""
    import tensorflow as tf

    config = config_from_dict({**CONFIG, "train": {**CONFIG["train"], "optimizer": name}})
    new_prepared = prepare(str(tables / "schema.pbtxt"), config, progress=False)
    warm = WarmStart.open(str(old_run), str(tables / "new-run"), str(tables / "schema.pbtxt"),
                          config)
    warm.map(new_prepared.data.node_ids)
    reader = tf.train.load_checkpoint(warm.checkpoint)
    t = int(reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"))
    assert warm.start_step == t > 0
    new = build(new_prepared, config)
    variables = trainable_variables(new)[0]
    optimizer = _optimizer(config, steps_per_epoch=2, start_step=warm.start_step)
    optimizer.build(variables)
    warm.apply(new, optimizer, variables)
    assert warm.report["optimizer"] == "continued" and int(optimizer.iterations) == t

    table = new.model.encoders["item"].ids.embeddings
    i = variables.index(table)
    m, v = optimizer.variables[1 + 2 * i], optimizer.variables[2 + 2 * i]  # Adam: m, v per var
    # the old run built its slots over the same variables in the same order
    old_m, old_v = (reader.get_tensor(f"optimizer/_variables/{n}/.ATTRIBUTES/VARIABLE_VALUE")
                    for n in (1 + 2 * i, 2 + 2 * i))
    old_ids = list(RunDir(old_run).read_vocab()["item"])
    new_ids = list(new_prepared.data.node_ids["item"])
    for item in ("i1", "i3", "i5"):
        np.testing.assert_array_equal(m.numpy()[new_ids.index(item)],
                                      old_m[old_ids.index(item)])
        np.testing.assert_array_equal(v.numpy()[new_ids.index(item)],
                                      old_v[old_ids.index(item)])
    assert not m.numpy()[0].any() and not v.numpy()[0].any()  # i7, new
    before, m0, v0 = table.numpy(), m.numpy(), v.numpy()
    r, other = new_ids.index("i3"), new_ids.index("i1")
    row = tf.IndexedSlices(tf.zeros([1, table.shape[1]]), tf.constant([r]), table.shape)
    optimizer.apply_gradients([(row if x is table else tf.zeros_like(x), x) for x in variables])
    lr, b1, b2, eps = CONFIG["train"]["learning_rate"], 0.9, 0.999, 1e-7
    alpha = lr * np.sqrt(1 - b2 ** (t + 1)) / (1 - b1 ** (t + 1))
    def adam(k):
        return before[k] - alpha * (b1 * m0[k]) / (np.sqrt(b2 * v0[k]) + eps)

    for k in (r, other) if name == "adam" else (r,):
        np.testing.assert_allclose(table.numpy()[k], adam(k), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(table.numpy()[0], before[0])
    if name == "lazy_adam":
        assert np.abs(adam(other) - before[other]).max() > 1e-4  # Adam would have moved it
        for now, then in ((table, before), (m, m0), (v, v0)):
            np.testing.assert_array_equal(now.numpy()[other], then[other])


def test_warm_start_trains_and_the_old_run_is_untouched(old_run, tables, tmp_path, capsys):
    before = {p: p.stat().st_mtime_ns for p in old_run.rglob("*")}
    new_run = tmp_path / "new"
    code = main(["train", "--schema", str(tables / "schema.pbtxt"), "--warm-start",
                 str(old_run), "--run-dir", str(new_run), "--config", write_config(tmp_path),
                 "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "warm start from" in out and "the optimizer continues" in out
    assert "epoch   0  (before any step)  valid ndcg@20" in out  # validated as it comes
    assert "item: 5 ids keep their rows, 1 new, 1 removed" in out
    assert (new_run / "vocab" / "item.txt").read_text().split() == ["i7", "i1", "i2", "i3",
                                                                     "i4", "i5"]
    assert {p: p.stat().st_mtime_ns for p in old_run.rglob("*")} == before


@pytest.mark.parametrize("problem, expected", [
    ("dim", "differs from run"),
    ("node_sets", "has the node sets"),
    ("id_type", "shares no id with run"),
])
def test_a_bad_mapping_is_one_sentence_exit_2_and_no_folder(old_run, tables, tmp_path, capsys,
                                                           problem, expected):
    folder = tmp_path / "t"
    shutil.copytree(tables, folder)
    config = write_config(tmp_path, dim=16 if problem == "dim" else 8)
    schema = folder / "schema.pbtxt"
    if problem == "node_sets":
        schema.write_text(schema.read_text().replace('"entity"', '"thing"'))
    if problem == "id_type":  # user ids become numbers: "u1" -> "1"
        for name in ("users.tsv", "ratings.tsv"):
            path = folder / name
            path.write_text("\n".join(r[1:] if r.startswith("u") and not r.startswith("user")
                                      else r for r in path.read_text().splitlines()) + "\n")
    new_run = tmp_path / "new"
    code = main(["train", "--schema", str(schema), "--warm-start", str(old_run),
                 "--run-dir", str(new_run), "--config", config, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not new_run.exists()


def valid_ndcg(run: Path) -> float:
    return json.loads((run / "metrics.json").read_text())["valid"]["ndcg@20"]


def test_the_gate_exports_when_better_and_declines_when_worse(old_run, tables, tmp_path,
                                                             capsys):
    """The old run is served; a warm-started run of the updated tables passes the gate (the
    old model cannot rank i7 or u5 at all); then a 1-epoch run at a tiny learning rate is
    gated against that warm run, now served: the served figure is the warm run's own valid
    ndcg@20 (the same model on the same split), the new one is lower, nothing is written and
    the exit code is 4."""
    base = tmp_path / "models"
    assert main(["export", "--run-dir", str(old_run), "--model-base", str(base)]) == 0
    schema = str(tables / "schema.pbtxt")
    good, bad = tmp_path / "good", tmp_path / "bad"
    assert main(["train", "--schema", schema, "--warm-start", str(old_run), "--run-dir",
                 str(good), "--config", write_config(tmp_path), "--no-progress"]) == 0
    assert main(["train", "--schema", schema, "--run-dir", str(bad), "--config",
                 write_config(tmp_path, epochs=1, lr=1e-6), "--no-progress"]) == 0
    assert valid_ndcg(bad) < valid_ndcg(good)
    capsys.readouterr()

    assert main(["export", "--run-dir", str(good), "--model-base", str(base),
                 "--only-if-better"]) == 0
    out = capsys.readouterr().out
    assert "served version 1" in out and f"new run {valid_ndcg(good):.4f}" in out
    assert str(base / "2") in out and (base / "2" / "saved_model.pb").is_file()

    code = main(["export", "--run-dir", str(bad), "--model-base", str(base),
                 "--only-if-better"])
    captured = capsys.readouterr()
    assert code == 4, captured.err
    assert f"served version 2 {valid_ndcg(good):.4f}, new run {valid_ndcg(bad):.4f}" \
        in captured.out
    assert "not exported" in captured.err
    assert sorted(p.name for p in base.iterdir()) == ["1", "2"]
    # a margin wider than the gap lets it through
    gap = valid_ndcg(good) - valid_ndcg(bad)
    assert main(["export", "--run-dir", str(bad), "--model-base", str(base),
                 "--only-if-better", "--margin", f"{gap + 0.01:.4f}"]) == 0
    assert (base / "3").is_dir()


def test_feature_tables_move_with_their_values():
    """Categorical / token tables are ordered by frequency, so their rows move with the data:
    old colours red red blue green -> rows [OOV, red, blue, green] (ties by value); new
    colours green green red pink -> [OOV, green, pink, red]: green 3 -> 1, red 1 -> 3, the
    OOV row stays 0, pink is fresh, blue is dropped. Tokens "a b", "b", "c" -> [b, a, c]."""
    from types import SimpleNamespace as NS

    import tensorflow_gnn as tfgnn

    from tfrec.model.inputs import OOV, feature_vocabularies
    from tfrec.train.warm_start import _move

    def graph(colours, tags):
        return tfgnn.GraphTensor.from_pieces(node_sets={"item": tfgnn.NodeSet.from_fields(
            sizes=[len(colours)], features={"colour": np.array(colours, object),
                                            "tags": np.array(tags, object)})})

    schema = NS(node_sets={"item": NS(features=[NS(name="colour", role="categorical"),
                                                NS(name="tags", role="tokens")])})
    old = feature_vocabularies(graph(["red", "red", "blue", "green"], ["a b", "b", "c", ""]),
                               schema)
    assert old == {"item/cats/colour": [OOV, "red", "blue", "green"],
                   "item/multi/tags": ["b", "a", "c"]}
    new = feature_vocabularies(graph(["green", "green", "red", "pink"], ["", "", "", ""]),
                               schema)
    rows = map_vocab("item/cats/colour", old["item/cats/colour"], new["item/cats/colour"])
    table = np.array([[0.0], [10.0], [20.0], [30.0]])  # old rows OOV, red, blue, green
    moved = _move(rows)(table, np.full((4, 1), -1.0))  # -1: the fresh initialisation
    assert moved.ravel().tolist() == [0.0, 30.0, -1.0, 10.0]
    assert (rows.added, rows.removed) == (1, 1)
