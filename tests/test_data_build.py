"""Tables -> GraphData -> splits -> GraphTensor on the tiny hand-checkable graph."""

import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_gnn as tfgnn

from tfrec.cli import main
from tfrec.data.build import build_graph, read_graph
from tfrec.data.graph_data import load_graph_data
from tfrec.data.splits import SplitConfig, split_interactions
from tfrec.errors import TfrecError

RATIOS = (0.6, 0.2, 0.2)


def pairs_of(data, split, name):
    u, i = split.pairs(name)
    return sorted(zip(data.node_ids["user"][u], data.node_ids["item"][i]))


def test_tables_are_indexed_in_file_order(tiny):
    data = load_graph_data(tiny / "schema.pbtxt")
    assert list(data.node_ids["item"]) == ["i1", "i2", "i3", "i4", "i5", "i6"]
    # entity ids come from the edges, in first-seen order
    assert list(data.node_ids["entity"]) == ["wool", "cotton", "clothing", "kitchen"]
    about = data.edges["about"]
    assert about.source.tolist() == [0, 1, 0, 1, 2] and about.target.tolist() == [0, 1, 2, 2, 3]
    np.testing.assert_allclose(data.node_features["item"]["price"], [40, 25, 30, 15, 120, 9.5])
    assert data.node_features["item"]["title"][5] == "Les Misérables"
    rev = data.edges["rated_by"]
    assert (rev.source == data.interactions.target).all()


def test_temporal_split_by_hand(tiny):
    data = load_graph_data(tiny / "schema.pbtxt")
    split = split_interactions(data, SplitConfig("temporal", RATIOS))
    # u1 (5 pairs): 3/1/1 by time; u2 (4): 2/1/1; u3 (3): 1/1/1; u4 (2 < 3): all train
    assert pairs_of(data, split, "valid") == [("u1", "i4"), ("u2", "i2"), ("u3", "i5")]
    assert pairs_of(data, split, "test") == [("u1", "i5"), ("u2", "i1"), ("u3", "i6")]
    assert len(pairs_of(data, split, "train")) == 8


def test_random_split_is_seeded_and_sized(tiny):
    data = load_graph_data(tiny / "schema.pbtxt")
    a = split_interactions(data, SplitConfig("random", RATIOS, seed=3))
    b = split_interactions(data, SplitConfig("random", RATIOS, seed=3))
    c = [split_interactions(data, SplitConfig("random", RATIOS, seed=s)).pair_split
         for s in range(10)]
    assert (a.pair_split == b.pair_split).all()
    assert any((x != c[0]).any() for x in c)
    assert np.bincount(a.pair_split).tolist() == [8, 3, 3]
    per_user = {u: np.bincount(a.pair_split[a.pair_user == k], minlength=3).tolist()
                for k, u in enumerate(["u1", "u2", "u3", "u4"])}
    assert per_user == {"u1": [3, 1, 1], "u2": [2, 1, 1], "u3": [1, 1, 1], "u4": [2, 0, 0]}


def test_cold_items_are_held_out_whole(tiny):
    data = load_graph_data(tiny / "schema.pbtxt")
    split = split_interactions(data, SplitConfig("temporal", RATIOS, cold_items=0.5))
    # seed 0 picks 3 of the 6 items: i3, i5, i6; every pair of theirs is a test pair
    cold = {"i3", "i5", "i6"}
    train, valid = pairs_of(data, split, "train"), pairs_of(data, split, "valid")
    assert not cold & {i for _, i in train + valid}
    assert {p for p in pairs_of(data, split, "test") if p[1] in cold} == {
        ("u1", "i3"), ("u1", "i5"), ("u2", "i3"), ("u2", "i6"), ("u3", "i5"), ("u3", "i6")}
    # the warm pairs split per user as usual: u1 (i1, i2, i4 by time) 1/1/1, others < 3: train
    assert valid == [("u1", "i2")]
    assert ("u1", "i4") in pairs_of(data, split, "test")
    assert train == [("u1", "i1"), ("u2", "i1"), ("u2", "i2"), ("u3", "i4"), ("u4", "i1"),
                     ("u4", "i2")]
    again = split_interactions(data, SplitConfig("temporal", RATIOS, cold_items=0.5))
    assert (again.pair_split == split.pair_split).all()


@pytest.mark.parametrize("kwargs, message", [
    (dict(cold_items=1.0),
     "split.cold_items is 1.0, but it must be at least 0.0 and below 1.0"),
    (dict(method="files", split_dir="x", cold_items=0.1),
     "split cold_items does not apply to an explicit split"),
])
def test_bad_cold_items(kwargs, message):
    with pytest.raises(TfrecError, match=re.escape(message)):
        SplitConfig(**kwargs)


def test_repeated_pairs_share_a_split(tiny):
    path = tiny / "ratings.tsv"
    path.write_text(path.read_text() + "u1\ti5\t5\t600\nu1\ti5\t5\t700\n")
    data = load_graph_data(tiny / "schema.pbtxt")
    for seed in range(5):
        split = split_interactions(data, SplitConfig("random", RATIOS, seed=seed))
        edge_split = split.edge_split
        i5 = (data.interactions.source == 0) & (data.interactions.target == 4)
        assert len(set(edge_split[i5].tolist())) == 1


def test_graph_tensor_holds_training_pairs_only(tiny):
    built = build_graph(str(tiny / "schema.pbtxt"), SplitConfig("temporal", RATIOS))
    g = built.graph
    rates = g.edge_sets["rates"]
    users = built.data.node_ids["user"][rates.adjacency.source.numpy()]
    items = built.data.node_ids["item"][rates.adjacency.target.numpy()]
    assert sorted(zip(users, items)) == pairs_of(built.data, built.split, "train")
    back = g.edge_sets["rated_by"].adjacency
    assert (back.source.numpy() == rates.adjacency.target.numpy()).all()
    assert rates["rating"].dtype == tf.float32 and g.node_sets["item"]["title"].dtype == tf.string
    assert g.node_sets["entity"].sizes.numpy().tolist() == [4]


def test_build_writes_a_parseable_folder(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["data", "build", "--schema", str(tiny / "schema.pbtxt"), "--out", str(out),
                 "--split", "temporal", "--ratios", "0.6,0.2,0.2"]) == 0
    printed = capsys.readouterr().out
    assert "rates" in printed and "train 8, valid 3, test 3" in printed
    assert (out / "vocab" / "item.txt").read_text().split() == ["i1", "i2", "i3", "i4", "i5", "i6"]
    assert (out / "splits" / "test.tsv").read_text().splitlines() == [
        "user_id\titem_id", "u1\ti5", "u2\ti1", "u3\ti6"]
    g = read_graph(out)  # parsed with the schema's GraphTensorSpec
    assert int(g.edge_sets["rates"].sizes[0]) == 8
    # it is the graph training uses (the same function built both)
    from tfrec.config import config_from_dict
    from tfrec.train.prepare import prepare

    config = config_from_dict({"text": {"mode": "off"}, "model": {"kind": "popularity"},
                               "split": {"method": "temporal", "ratios": [0.6, 0.2, 0.2]}})
    trained_on = prepare(str(tiny / "schema.pbtxt"), config, progress=False).graph
    for name in g.edge_sets:
        for end in ("source", "target"):
            np.testing.assert_array_equal(getattr(g.edge_sets[name].adjacency, end).numpy(),
                                          getattr(trained_on.edge_sets[name].adjacency, end))
    np.testing.assert_array_equal(g.node_sets["item"]["title"].numpy(),
                                  trained_on.node_sets["item"]["title"].numpy())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tiny"]  # no temporary left


def test_explicit_split_files_round_trip(tiny, tmp_path):
    out = tmp_path / "first"
    assert main(["data", "build", "--schema", str(tiny / "schema.pbtxt"), "--out", str(out),
                 "--seed", "7", "--ratios", "0.6,0.2,0.2"]) == 0
    again = tmp_path / "again"
    assert main(["data", "build", "--schema", str(tiny / "schema.pbtxt"), "--out", str(again),
                 "--split-dir", str(out / "splits")]) == 0
    for name in ("train", "valid", "test"):
        assert sorted((out / "splits" / f"{name}.tsv").read_text().splitlines()) == sorted(
            (again / "splits" / f"{name}.tsv").read_text().splitlines())


@pytest.mark.parametrize("method", ["random", "temporal"])
def test_written_split_never_leaks(tiny, tmp_path, method):
    out = tmp_path / "out"
    assert main(["data", "build", "--schema", str(tiny / "schema.pbtxt"), "--out", str(out),
                 "--split", method, "--ratios", "0.6,0.2,0.2"]) == 0
    read = lambda n: set((out / "splits" / f"{n}.tsv").read_text().splitlines()[1:])  # noqa: E731
    assert not read("train") & read("valid") and not read("train") & read("test")
    assert not read("valid") & read("test")
