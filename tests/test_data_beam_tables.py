"""The model graph as TF-GNN unigraph tables (tfrec.data.beam_tables): rows checked by hand on a
two-user, three-item graph, read back through TF-GNN's own unigraph reader."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_gnn as tfgnn

from tfrec.data.beam_tables import split_columns, write_unigraph


@pytest.fixture
def graph():
    """users u0, u1; items i0, i1, i2; rates u0->i1 and u1->i2 (efeat [norm, rating]) and
    rated_by reversed (efeat [norm]); "row" int32 and a 2-wide "text" on the items."""
    def nodes(n, **features):
        return tfgnn.NodeSet.from_fields(sizes=[n], features={
            "row": tf.range(n, dtype=tf.int32), **features})

    def edges(src, tgt, efeat):
        return tfgnn.EdgeSet.from_fields(
            sizes=[len(efeat)], adjacency=tfgnn.Adjacency.from_indices(
                (src[0], tf.constant(src[1], tf.int32)), (tgt[0], tf.constant(tgt[1], tf.int32))),
            features={"efeat": tf.constant(efeat, tf.float32)})

    return tfgnn.GraphTensor.from_pieces(
        node_sets={"user": nodes(2), "item": nodes(3, text=tf.constant(
            [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]))},
        edge_sets={"rates": edges(("user", [0, 1]), ("item", [1, 2]), [[0.5, 1.0], [0.7, -1.0]]),
                   "rated_by": edges(("item", [1, 2]), ("user", [0, 1]), [[0.5], [0.7]])})


def _rows(path):
    """The tf.Examples of a TFRecord file as {feature: list of values}, one dict per row."""
    out = []
    for record in tf.data.TFRecordDataset(str(path)):
        example = tf.train.Example.FromString(record.numpy())
        row = {}
        for name, f in example.features.feature.items():
            kind = f.WhichOneof("kind")
            row[name] = list(getattr(f, kind).value)
        out.append(row)
    return out


def test_tables_hold_the_rows_by_hand(graph, tmp_path):
    counts = write_unigraph(graph, np.array([0, 1]), np.array([1, 2]), np.array([4.0, 2.0]),
                            tmp_path)
    assert counts == {"nodes.user": 2, "nodes.item": 3, "edges.rates": 2, "edges.rated_by": 2,
                      "seeds": 2}
    assert _rows(tmp_path / "nodes.user.tfrecord") == [{"#id": [b"0"], "row": [0]},
                                                       {"#id": [b"1"], "row": [1]}]
    assert _rows(tmp_path / "nodes.item.tfrecord")[2] == {"#id": [b"2"], "row": [2],
                                                          "text": [0.5, 0.5]}
    # an [E, 2] edge feature becomes two scalar columns; "eid" is the edge's index
    assert _rows(tmp_path / "edges.rates.tfrecord") == [
        {"#source": [b"0"], "#target": [b"1"], "eid": [0], "efeat.0": [0.5], "efeat.1": [1.0]},
        {"#source": [b"1"], "#target": [b"2"], "eid": [1], "efeat.0": [pytest.approx(0.7)],
         "efeat.1": [-1.0]}]
    assert _rows(tmp_path / "edges.rated_by.tfrecord")[1] == {
        "#source": [b"2"], "#target": [b"1"], "eid": [1], "efeat.0": [pytest.approx(0.7)]}
    assert _rows(tmp_path / "seeds.tfrecord") == [
        {"#source": [b"0"], "#target": [b"1"], "label": [4.0]},
        {"#source": [b"1"], "#target": [b"2"], "label": [2.0]}]


def test_schema_is_read_by_tfgnn_unigraph_with_absolute_tables(graph, tmp_path):
    from tensorflow_gnn.data import unigraph

    write_unigraph(graph, np.array([0]), np.array([1]), np.array([1.0]), tmp_path / "g")
    schema = unigraph.read_schema(str((tmp_path / "g" / "schema.pbtxt").resolve()))
    assert schema.edge_sets["rates"].metadata.filename == str(
        (tmp_path / "g" / "edges.rates.tfrecord").resolve())
    item = schema.node_sets["item"].features
    assert (item["row"].dtype, item["text"].dtype) == (tf.int64.as_datatype_enum,
                                                       tf.float32.as_datatype_enum)
    assert [d.size for d in item["text"].shape.dim] == [2]
    assert sorted(schema.edge_sets["rates"].features) == ["efeat.0", "efeat.1", "eid"]
    nodes = unigraph.DictStreams.iter_nodes_via_schema(schema)
    assert [node_id for node_id, _ in nodes["item"]] == [b"0", b"1", b"2"]


def test_split_columns():
    out = split_columns({"a": np.array([1, 2]), "b": np.array([[1.0, 2.0], [3.0, 4.0]])})
    assert {k: v.tolist() for k, v in out.items()} == {"a": [1, 2], "b.0": [1.0, 3.0],
                                                       "b.1": [2.0, 4.0]}
