"""LightGCN message passing (tfrec.model.convs) on a tiny heterogeneous graph against numpy.

The graph (3 users, 4 items, 2 entities), with every edge set's reverse:

    user -> item  "rated":  (0,0) (0,1) (1,1) (1,2) (2,3)   2 features per edge
    item -> entity "about": (0,0) (1,0) (3,1)               no features

Each edge carries "efeat" [E, 1 + F] as GraphRecommender builds it: column 0 the norm
1/sqrt(deg_out(source) deg_in(target)) (degrees within the edge set), then the edge's features.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_gnn as tfgnn

from tfrec.config import ModelConfig
from tfrec.model.convs import NormalizedSumConv, SumNextState, build_layer

SIZES = {"user": 3, "item": 4, "entity": 2}
EDGES = {  # name: (source set, target set, sources, targets, number of features)
    "rated": ("user", "item", [0, 0, 1, 1, 2], [0, 1, 1, 2, 3], 2),
    "about": ("item", "entity", [0, 1, 3], [0, 0, 1], 0),
}
EDGES["rated_by"] = ("item", "user", *EDGES["rated"][3:1:-1], 2)
EDGES["about_of"] = ("entity", "item", *EDGES["about"][3:1:-1], 0)


def _norm(src, dst):
    """[E] 1/sqrt(deg_out(src) deg_in(dst)), degrees counted within the edge set."""
    src, dst = np.asarray(src), np.asarray(dst)
    return 1.0 / np.sqrt(np.bincount(src)[src] * np.bincount(dst)[dst])


def _graph(seed=0):
    """(GraphTensor, states {set: [N, 4]}, edge features {edge set: [E, F]})."""
    rng = np.random.default_rng(seed)
    states = {n: rng.normal(size=(size, 4)).astype(np.float32) for n, size in SIZES.items()}
    features = {name: rng.normal(size=(len(s), f)).astype(np.float32)
                for name, (_, _, s, _, f) in EDGES.items()}
    edge_sets = {
        name: tfgnn.EdgeSet.from_fields(
            sizes=[len(s)],
            adjacency=tfgnn.Adjacency.from_indices((a, tf.constant(s)), (b, tf.constant(d))),
            features={"efeat": tf.constant(np.concatenate(
                [_norm(s, d)[:, None], features[name]], axis=1).astype(np.float32))})
        for name, (a, b, s, d, _) in EDGES.items()}
    node_sets = {n: tfgnn.NodeSet.from_fields(sizes=[SIZES[n]],
                                              features={tfgnn.HIDDEN_STATE: tf.constant(h)})
                 for n, h in states.items()}
    return tfgnn.GraphTensor.from_pieces(node_sets=node_sets, edge_sets=edge_sets), states, \
        features


def _propagate(states, features, residual, gate=None):
    """numpy: h'_v = sum over edge sets into v's set, over edges u -> v, of
    norm(u, v) g(e) h_u (+ h_v); g(e) = 2 sigmoid(features . w + b) on edge sets with features
    when gate = (w [F, 1], b [1]) is given, else 1."""
    out = {n: (h.copy() if residual else np.zeros_like(h)) for n, h in states.items()}
    for name, (a, b, src, dst, f) in EDGES.items():
        weight = _norm(src, dst)
        if gate is not None and f:
            w, bias = gate
            weight = weight * 2.0 / (1.0 + np.exp(-(features[name] @ w + bias)[:, 0]))
        for u, v, c in zip(src, dst, weight):
            out[b][v] += c * states[a][u]
    return out


def _states(graph):
    return {n: graph.node_sets[n][tfgnn.HIDDEN_STATE].numpy() for n in SIZES}


def test_the_norm_of_one_item_worked_by_hand():
    # item 1 is rated by users 0 and 1 (each rates 2 items: deg_out 2; item 1 has deg_in 2)
    # and is about entity 0 (entity 0 has 2 items, item 1 one entity): its new state is
    # h_u0 / sqrt(2*2) + h_u1 / sqrt(2*2) + h_e0 / sqrt(2*1).
    graph, h, _ = _graph()
    layer = build_layer(ModelConfig(conv="lightgcn", dim=4, edge_gates=False), graph.spec, 0)
    got = _states(layer(graph))["item"][1]
    expected = 0.5 * h["user"][0] + 0.5 * h["user"][1] + h["entity"][0] / np.sqrt(2.0)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("residual", [False, True])
def test_two_lightgcn_layers_are_the_numpy_propagation(residual):
    graph, h, features = _graph()
    config = ModelConfig(conv="lightgcn", dim=4, layers=2, edge_gates=False, residual=residual)
    expected = _propagate(_propagate(h, features, residual), features, residual)
    for index in range(2):
        graph = build_layer(config, graph.spec, index)(graph)
    for node_set, values in _states(graph).items():
        np.testing.assert_allclose(values, expected[node_set], rtol=1e-5, atol=1e-6,
                                   err_msg=node_set)


def test_edge_gates_scale_messages_by_their_features_and_skip_featureless_edge_sets():
    graph, h, features = _graph(1)
    layer = build_layer(ModelConfig(conv="lightgcn", dim=4, edge_gates=True), graph.spec, 0)
    # the gates start at zero weights: 2 sigmoid(0) = 1, plain LightGCN
    np.testing.assert_allclose(_states(layer(graph))["item"],
                               _propagate(h, features, False)["item"], rtol=1e-5, atol=1e-6)
    w, b = np.array([[0.7], [-1.3]], np.float32), np.array([0.4], np.float32)
    convs = [m for m in layer.submodules if isinstance(m, NormalizedSumConv)]
    gates = [c._gate for c in convs if c._gate.built]
    assert len(convs) == 4 and len(gates) == 2  # "about" edge sets have no feature to gate on
    for gate in gates:
        gate.set_weights([w, b])
    expected = _propagate(h, features, False, gate=(w, b))
    for node_set, values in _states(layer(graph)).items():
        np.testing.assert_allclose(values, expected[node_set], rtol=1e-5, atol=1e-6,
                                   err_msg=node_set)


def _item_states(conv, graph):
    """[4, 4] the messages `conv` pools to the items over the edge set "rated"."""
    return conv(graph, edge_set_name="rated").numpy()


@pytest.mark.parametrize("gated", [False, True])
def test_normalized_sum_conv_round_trips_through_its_config(gated):
    graph, _, _ = _graph(2)
    conv = NormalizedSumConv(gated, receiver_tag=tfgnn.TARGET, name="conv")
    before = _item_states(conv, graph)
    if gated:
        conv._gate.set_weights([np.array([[0.5], [2.0]], np.float32), np.array([0.1])])
        before = _item_states(conv, graph)
    config = conv.get_config()
    assert config["gated"] is gated and config["sender_edge_feature"] == "efeat"
    for copy in (NormalizedSumConv.from_config(config),
                 tf.keras.layers.deserialize(tf.keras.layers.serialize(conv))):
        assert type(copy) is NormalizedSumConv and copy.get_config() == config
        _item_states(copy, graph)  # builds the gate
        copy.set_weights(conv.get_weights())
        np.testing.assert_allclose(_item_states(copy, graph), before, rtol=1e-6)


@pytest.mark.parametrize("residual", [False, True])
def test_sum_next_state_round_trips_through_its_config(residual):
    state = tf.constant([[1.0, 2.0], [3.0, 4.0]])
    inputs = (state, {"a": tf.constant([[10.0, 0.0], [0.0, 10.0]]), "b": tf.ones([2, 2])}, {})
    layer = SumNextState(residual, name="next")
    expected = np.array([[11.0, 1.0], [1.0, 11.0]]) + (state.numpy() if residual else 0.0)
    for copy in (layer, SumNextState.from_config(layer.get_config()),
                 tf.keras.layers.deserialize(tf.keras.layers.serialize(layer))):
        assert copy.get_config() == layer.get_config()
        np.testing.assert_allclose(copy(inputs).numpy(), expected)
