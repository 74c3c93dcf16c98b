"""Link subgraphs sampled by TF-GNN's Beam sampler (tfrec.data.beam_sampler) and read back for
training (tfrec.data.beam_reader): a DirectRunner run on the tiny graph (slow: Beam starts
minutes), and the reader on examples written by hand (fast)."""

import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_gnn as tfgnn

from tfrec.config import config_from_dict
from tfrec.data.beam_reader import example_spec, read_sampled, sample_files, to_model_graph
from tfrec.errors import TfrecError

FANOUT = 2  # one hop: the subgraph of pair (u, i) is exactly up to 2 edges of each edge set
#            out of u (rates) and out of i (rated_by, about), minus the edge u - i itself


@pytest.fixture(scope="module")
def sampled(tmp_path_factory):
    """The tiny graph's training pairs sampled with Beam's DirectRunner into a folder."""
    from tfrec.data.beam_sampler import sample_with_beam
    from tfrec.train.prepare import prepare
    from conftest import TINY

    config = config_from_dict({"model": {"dim": 8, "layers": 1}, "text": {"mode": "off"}})
    prepared = prepare(str(TINY / "schema.pbtxt"), config, progress=False)
    users, items = prepared.split.pairs("train")
    out = tmp_path_factory.mktemp("beam") / "sampled"
    info = sample_with_beam(prepared.model_graph, prepared.data.schema, users, items,
                            prepared.ranking_labels(), out, [FANOUT], shards=2,
                            pipeline_args=["--runner=DirectRunner"])
    return prepared, out, info, config


def _pairs(graph, name):
    """[(source row, target row, eid)] of an edge set of a parsed example."""
    adj = graph.edge_sets[name].adjacency
    src = graph.node_sets[adj.source_name]["row"].numpy()[adj.source.numpy()]
    tgt = graph.node_sets[adj.target_name]["row"].numpy()[adj.target.numpy()]
    return list(zip(src.tolist(), tgt.tolist(), graph.edge_sets[name]["eid"].numpy().tolist()))


@pytest.mark.slow  # Beam's DirectRunner: 2-5 minutes, mostly start-up
def test_every_example_is_a_sample_of_real_edges_without_its_own(sampled):
    prepared, out, info, _ = sampled
    graph = prepared.model_graph
    users, items = prepared.split.pairs("train")
    assert info["examples"] == len(users) == info["tables"]["seeds"]
    assert info["shards"] == 2 and len(sample_files(out)) == 2
    assert json.loads((out / "sampled.json").read_text())["fanouts"] == [FANOUT]
    full = {}  # edge set -> eid -> (source row, target row) in the model graph
    for name, e in graph.edge_sets.items():
        src, tgt = e.adjacency.source.numpy(), e.adjacency.target.numpy()
        full[name] = {k: (int(a), int(b)) for k, (a, b) in enumerate(zip(src, tgt))}
    out_degree = {name: np.bincount(e.adjacency.source.numpy(), minlength=int(
        graph.node_sets[e.adjacency.source_name].total_size))
        for name, e in graph.edge_sets.items()}
    spec = example_spec(out)
    labels = dict(zip(zip(users.tolist(), items.tolist()), prepared.ranking_labels().tolist()))
    seen = set()
    for record in tf.data.TFRecordDataset(sample_files(out)):
        g = tfgnn.parse_single_example(spec, record)
        u = int(g.node_sets["user"]["row"][g.edge_sets["_readout/source"].adjacency.source[0]])
        i = int(g.node_sets["item"]["row"][g.edge_sets["_readout/target"].adjacency.source[0]])
        seen.add((u, i))
        assert g.node_sets["_readout"]["label"].numpy().tolist() == [labels[u, i]]  # its rating
        for name in graph.edge_sets:
            edges = _pairs(g, name)
            # real edges of the model graph: its endpoints are those of the edge it names
            assert all(full[name][k] == (a, b) for a, b, k in edges), name
            assert len({k for _, _, k in edges}) == len(edges), name  # each edge once
            seed = u if name == "rates" else i
            assert all(a == seed for a, _, _ in edges), name  # one hop: out of the seed only
            own = [(a, b) for a, b, _ in edges if {a, b} == {u, i} and name != "about"]
            assert not own, (name, u, i)  # the predicted edge is not in its own subgraph
            # the fan-out: min(2, out-degree) edges drawn, the predicted one maybe among them
            drawn = min(FANOUT, int(out_degree[name][seed]))
            assert drawn - (name != "about") <= len(edges) <= drawn, (name, u, i, edges)
    assert seen == set(zip(users.tolist(), items.tolist()))  # one example per training pair


@pytest.mark.slow
def test_read_sampled_gives_model_graph_batches_the_model_embeds(sampled):
    from tfrec.model.recommender import GraphRecommender, resolved

    prepared, out, _, config = sampled
    graph = prepared.model_graph
    model = GraphRecommender(prepared.spec, resolved(config.model))
    full = model.embed(graph)
    batches = list(read_sampled(out, graph.spec, "user", "item", batch_size=4))
    assert len(batches) == len(prepared.split.pairs("train")[0]) // 4  # partial batch dropped
    relaxed = graph.spec.relax(num_nodes=True, num_edges=True)
    for g, users, items, item_rows, labels in batches:
        assert g.spec.relax(num_nodes=True, num_edges=True) == relaxed
        assert users.shape == items.shape == labels.shape == (4,)
        np.testing.assert_array_equal(item_rows, g.node_sets["item"]["row"])
        rows = g.node_sets["item"]["row"].numpy()  # features are the model graph's, by row
        np.testing.assert_array_equal(g.node_sets["item"]["numeric"].numpy(),
                                      graph.node_sets["item"]["numeric"].numpy()[rows])
        # the same model embeds the batch: its layer-0 states are the full graph's, by row
        e = model.embed(g)
        user_rows = tf.gather(g.node_sets["user"]["row"], users)
        np.testing.assert_allclose(tf.gather(e.user_h0, users), tf.gather(full.user_h0,
                                                                           user_rows), atol=1e-6)
        np.testing.assert_allclose(e.item_h0, tf.gather(full.item_h0, item_rows), atol=1e-6)


def _example(user_rows, item_rows, rates, user, item, label):
    """A serialized link subgraph as the Beam sampler writes it: nodes with "#id" and "row"
    (int64), "rates" edges (positions) with "eid" and the scalar columns efeat.0, efeat.1,
    the "_readout" node with the pair's label."""
    nodes = lambda rows: tfgnn.NodeSet.from_fields(sizes=[len(rows)], features={  # noqa: E731
        "#id": tf.constant([str(r).encode() for r in rows]),
        "row": tf.constant(rows, tf.int64)})
    src, tgt = zip(*rates)
    graph = tfgnn.GraphTensor.from_pieces(
        node_sets={"user": nodes(user_rows), "item": nodes(item_rows),
                   "_readout": tfgnn.NodeSet.from_fields(sizes=[1], features={
                       "label": tf.constant([label])})},
        edge_sets={
            "rates": tfgnn.EdgeSet.from_fields(
                sizes=[len(rates)], adjacency=tfgnn.Adjacency.from_indices(
                    ("user", list(src)), ("item", list(tgt))),
                features={"eid": tf.constant([7] * len(rates), tf.int64),
                          "efeat.0": tf.constant([0.5] * len(rates)),
                          "efeat.1": tf.constant([float(s) for s in src])}),
            "_readout/source": tfgnn.EdgeSet.from_fields(
                sizes=[1], adjacency=tfgnn.Adjacency.from_indices(("user", [user]),
                                                                  ("_readout", [0]))),
            "_readout/target": tfgnn.EdgeSet.from_fields(
                sizes=[1], adjacency=tfgnn.Adjacency.from_indices(("item", [item]),
                                                                  ("_readout", [0])))})
    return graph, tfgnn.write_example(graph).SerializeToString()


def test_to_model_graph_by_hand():
    """Two examples: users [5, 9] items [2] rates (0->0, 1->0), pair (user 1, item 0); users
    [3] items [4, 6] rates (0->1), pair (user 0, item 1). Side by side in one component, the
    second example's positions shift by the first's node counts: users 2 + 0, items 1 + 1."""
    g1, s1 = _example([5, 9], [2], [(0, 0), (1, 0)], user=1, item=0, label=4.0)
    _, s2 = _example([3], [4, 6], [(0, 1)], user=0, item=1, label=2.0)
    model_spec = tfgnn.GraphTensor.from_pieces(
        node_sets={n: tfgnn.NodeSet.from_fields(sizes=[1], features={"row": tf.constant(
            [0], tf.int32)}) for n in ("user", "item")},
        edge_sets={"rates": tfgnn.EdgeSet.from_fields(
            sizes=[1], adjacency=tfgnn.Adjacency.from_indices(("user", [0]), ("item", [0])),
            features={"efeat": tf.zeros([1, 2])})}).spec
    spec = g1.spec.relax(num_nodes=True, num_edges=True)
    parsed = tfgnn.parse_example(spec, tf.constant([s1, s2]))
    graph, users, items, item_rows, labels = to_model_graph(parsed, model_spec, "user", "item")
    assert graph.spec.relax(num_nodes=True, num_edges=True) == model_spec.relax(
        num_nodes=True, num_edges=True)
    assert users.numpy().tolist() == [1, 2] and items.numpy().tolist() == [0, 2]
    assert labels.numpy().tolist() == [4.0, 2.0]
    assert graph.node_sets["user"]["row"].numpy().tolist() == [5, 9, 3]
    assert item_rows.numpy().tolist() == [2, 4, 6] and item_rows.dtype == tf.int32
    adj = graph.edge_sets["rates"].adjacency
    assert (adj.source.numpy().tolist(), adj.target.numpy().tolist()) == ([0, 1, 2], [0, 0, 2])
    np.testing.assert_allclose(graph.edge_sets["rates"]["efeat"].numpy(),
                               [[0.5, 0.0], [0.5, 1.0], [0.5, 0.0]])
    assert graph.node_sets["user"].sizes.numpy().tolist() == [3]  # one component


def test_reading_an_empty_folder_is_one_sentence(tmp_path):
    with pytest.raises(TfrecError, match="holds no examples.tfrecord-\\* shards: run "
                       "`tfrec data sample`"):
        sample_files(tmp_path)


@pytest.mark.parametrize("flags, words", [
    (["--shards", "-1"], "--shards -1 must be 0 (the runner decides) or more"),
    (["--config", "CONFIG"], "kind = \"popularity\" has no graph to sample"),
])
def test_sample_command_bad_input_is_one_sentence(tiny, tmp_path, capsys, flags, words):
    from tfrec.cli import main

    out, config = tmp_path / "out", tmp_path / "pop.toml"
    config.write_text('[model]\nkind = "popularity"\n')
    flags = [str(config) if f == "CONFIG" else f for f in flags]
    assert main(["data", "sample", "--schema", str(tiny / "schema.pbtxt"), "--out", str(out),
                 *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfrec: error: ") and words in err and "Traceback" not in err
    assert not out.exists()


def test_seed_values_are_executor_inputs():
    """A seeds row (#source "3", #target "7", label 4) -> one value list per model input, each
    [[flat values [1], row lengths [1]]]: a ragged [1, 1] tensor, as TF-GNN's read_seeds."""
    from tfrec.data.beam_sampler import seed_values

    example = tf.train.Example()
    example.features.feature["#source"].bytes_list.value.append(b"3")
    example.features.feature["#target"].bytes_list.value.append(b"7")
    example.features.feature["label"].float_list.value.append(4.0)
    key, (user, item, label) = seed_values(example)
    assert key == b"u3:i7"
    for values, flat in ((user, [b"3"]), (item, [b"7"]), (label, [4.0])):
        [[v, lengths]] = values
        assert v.tolist() == flat and lengths.tolist() == [1]
    assert label[0][0].dtype == np.float32


def test_missing_beam_extra_is_one_sentence(monkeypatch):
    import sys

    from tfrec.data.beam_sampler import check_beam

    monkeypatch.setitem(sys.modules, "crcmod", None)  # `import crcmod` fails
    with pytest.raises(TfrecError, match=r"sampling with Beam needs crcmod: pip install -e "
                       r"'\.\[beam\]'"):
        check_beam()
