"""Sampled subgraphs (tfrec.data.sampling) on the planted graph of test_model_planted: the
spec's fan-outs per edge set and hop, the O(k) edge draw, subgraphs that hold only model-graph edges whose "row"
features name the right global nodes, and never the batch's own (user, item) edges."""

import itertools

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_gnn as tfgnn
from tensorflow_gnn.experimental import sampler as tfgnn_sampler
from test_model_planted import planted  # noqa: F401 (a fixture)

from tfrec.config import config_from_dict
from tfrec.data.sampling import EdgeDraws, SubgraphSampler, choose, sampling_spec
from tfrec.train.prepare import prepare


@pytest.fixture(scope="module")
def prepared(planted):  # noqa: F811
    config = config_from_dict({
        "model": {"dim": 8, "layers": 2}, "text": {"mode": "off"},
        "split": {"method": "files", "split_dir": str(planted / "splits")}})
    return prepare(str(planted / "schema.pbtxt"), config, progress=False)


def _edges(graph, name, rows_of):
    """{(global source row, global target row)} of an edge set of `graph`."""
    adj = graph.edge_sets[name].adjacency
    src = rows_of(graph, adj.source_name)[adj.source.numpy()]
    tgt = rows_of(graph, adj.target_name)[adj.target.numpy()]
    return list(zip(src.tolist(), tgt.tolist()))


def _rows(graph, node_set):
    return graph.node_sets[node_set]["row"].numpy()


def test_spec_samples_every_edge_set_out_of_each_hop_with_its_fanout(prepared):
    schema = tfgnn.create_schema_pb_from_graph_spec(prepared.model_graph.spec)
    spec = sampling_spec(schema, "user", [7, 3])
    ops = {op.op_name: (op.edge_set_name, op.sample_size, list(op.input_op_names),
                        op.strategy) for op in spec.sampling_ops}
    uniform = tfgnn.sampler.SamplingStrategy.RANDOM_UNIFORM
    # hop 1 from the users: their one outgoing edge set; hop 2 from the items reached: both
    # edge sets leaving items (to users and to group entities), 3 each
    assert ops == {"hop1.buys": ("buys", 7, ["SEED->user"], uniform),
                   "hop2.bought_by": ("bought_by", 3, ["hop1.buys"], uniform),
                   "hop2.in_group": ("in_group", 3, ["hop1.buys"], uniform)}
    assert spec.seed_op.node_set_name == "user"


@pytest.mark.slow  # ~1-2 min on a loaded 2-core machine: tracing TF-GNN's sampling models
def test_subgraph_holds_model_edges_with_true_rows_and_never_the_batch_edges(prepared):
    graph, schema = prepared.model_graph, prepared.data.schema
    sampler = SubgraphSampler(graph, schema, fanouts=[4, 4], rescale_norm=True)
    users, items = prepared.split.pairs("train")
    pick = np.random.default_rng(0).choice(len(users), 30, replace=False)
    u, i = users[pick].astype(np.int32), items[pick].astype(np.int32)
    sub = sampler.sample(u, i)
    sub.users, sub.items, sub.item_rows = (np.asarray(x) for x in sub.fields()[1:])

    full_rows = lambda g, n: np.arange(g.node_sets[n].total_size)  # noqa: E731
    batch = set(zip(u.tolist(), i.tolist()))
    for name in graph.edge_sets:
        full = set(_edges(graph, name, full_rows))
        mine = _edges(sub.graph, name, _rows)
        assert set(mine) <= full, name  # only edges of the model graph, each once
        assert len(mine) == len(set(mine)), name
        pairs = {(a, b) if name == "buys" else (b, a) for a, b in mine}
        if name in ("buys", "bought_by"):
            assert not pairs & batch, name  # the predicted edges are not in their subgraph
    # the sample is not the whole graph, but each seed's edges are drawn (4 of its 10 buys)
    assert len(_edges(sub.graph, "buys", _rows)) < len(_edges(graph, "buys", full_rows))
    # positions map back to the batch's global rows
    np.testing.assert_array_equal(_rows(sub.graph, "user")[sub.users], u)
    np.testing.assert_array_equal(_rows(sub.graph, "item")[sub.items], i)
    np.testing.assert_array_equal(sub.item_rows, _rows(sub.graph, "item"))
    # features are the model graph's, gathered by row; a reverse edge comes with its edge
    rows = _rows(sub.graph, "item")
    np.testing.assert_array_equal(sub.graph.node_sets["item"]["id_mask"].numpy(),
                                  graph.node_sets["item"]["id_mask"].numpy()[rows])
    assert set(_edges(sub.graph, "bought_by", _rows)) == {
        (b, a) for a, b in _edges(sub.graph, "buys", _rows)}
    # efeat column 0: the full graph's norm x deg(v) / k(v), v the receiving item, deg its
    # training buyers, k those in the subgraph (a sum over k edges estimates the full one)
    full = graph.edge_sets["buys"]
    norm_of = dict(zip(_edges(graph, "buys", full_rows), full["efeat"].numpy()[:, 0]))
    deg = np.bincount(full.adjacency.target.numpy())
    mine = _edges(sub.graph, "buys", _rows)
    kept = np.bincount([b for _, b in mine], minlength=len(deg))
    np.testing.assert_allclose(sub.graph.edge_sets["buys"]["efeat"].numpy()[:, 0],
                               [norm_of[(a, b)] * deg[b] / kept[b] for a, b in mine], rtol=1e-6)
    assert sub.graph.spec.relax(num_nodes=True, num_edges=True) == \
        graph.spec.relax(num_nodes=True, num_edges=True)


@pytest.mark.slow
def test_each_seed_user_gets_its_fanout_of_training_edges(prepared):
    """Every planted user has 10 training items; with fan-out 4 and none of its edges in the
    batch, a seed user keeps exactly 4 of them in its subgraph (plus edges other seeds drew)."""
    graph, schema = prepared.model_graph, prepared.data.schema
    sampler = SubgraphSampler(graph, schema, fanouts=[4])
    rows, eids = sampler.drawn(np.array([0, 25], np.int32), np.zeros(0, np.int32))
    rows = {n: r.numpy() for n, r in rows.items()}
    buys = sampler.edges["buys"].adjacency
    source, target = buys.source.numpy(), buys.target.numpy()
    drawn = eids["buys"].numpy()
    assert sorted(np.bincount(source[drawn], minlength=40)[[0, 25]]) == [4, 4]
    assert set(rows["user"].tolist()) == {0, 25}
    assert set(rows["item"].tolist()) == set(target[drawn].tolist())


def test_choose_keeps_every_edge_up_to_k_and_k_distinct_ones_uniformly_above():
    """Floyd's draw (sampling.choose): degree <= k keeps every position; above, k distinct
    positions in range, each k-subset equally likely. 20,000 rows of degree 5, k = 2: each of
    the C(5, 2) = 10 pairs has probability 1/10 (std of its share sqrt(.1 x .9 / 20000) =
    0.0021; bound 0.011, over 5 std)."""
    picks = choose(tf.constant([0, 1, 3, 2, 7, 1 << 40], tf.int64), 2, seed=7).to_list()
    assert [len(p) for p in picks] == [0, 1, 2, 2, 2, 2]
    assert picks[1] == [0] and sorted(picks[3]) == [0, 1]
    assert all(len(set(p)) == 2 and 0 <= min(p) and max(p) < d
               for p, d in zip(picks[2:], [3, 2, 7, 1 << 40]))
    pairs = [tuple(sorted(p)) for p in choose(tf.fill([20000], 5), 2, seed=7).to_list()]
    share = {pair: pairs.count(pair) / len(pairs) for pair in itertools.combinations(range(5), 2)}
    assert sum(share.values()) == 1.0 and max(abs(s - 0.1) for s in share.values()) < 0.011


def test_edge_draws_returns_tf_gnn_samplers_output_with_min_k_degree_real_edges():
    """EdgeDraws (the O(k) draw in TF-GNN's InMemUniformEdgesSampler) on edges 0->1, 0->2,
    0->3, 1->0, 2->0, 2->1 with k = 2, seeds [[0, 2], [1]]: TF-GNN's features and row lengths
    (2 + 2, 1), each drawn edge a real edge of its seed, none twice; k = 3 gives every edge."""
    source, target = tf.constant([0, 0, 0, 1, 2, 2]), tf.constant([1, 2, 3, 0, 0, 1])
    eid = tf.range(6)
    seeds = tf.ragged.constant([[0, 2], [1]])
    mine = EdgeDraws(4, source, target, {"eid": eid}, sample_size=2, seed=1)(seeds)
    theirs = tfgnn_sampler.InMemUniformEdgesSampler(
        4, source, target, {"eid": eid}, sample_size=2, seed=1)(seeds)
    assert sorted(mine) == sorted(theirs) == ["#source", "#target", "eid"]
    assert mine["eid"].row_lengths().numpy().tolist() == \
        theirs["eid"].row_lengths().numpy().tolist() == [4, 1]
    drawn = mine["eid"].values.numpy()
    assert len(set(drawn.tolist())) == 5 and set(drawn[:2]) <= {0, 1, 2} \
        and set(drawn[2:4]) == {4, 5} and drawn[4] == 3
    assert (mine["#target"].values.numpy() == target.numpy()[drawn]).all()
    every = EdgeDraws(4, source, target, {"eid": eid}, sample_size=3)(seeds)
    assert sorted(every["eid"].values.numpy().tolist()) == [0, 1, 2, 3, 4, 5]
