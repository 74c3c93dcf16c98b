"""Message-passing layers by name, all TF-GNN layers over the heterogeneous training graph.

Every layer maps a GraphTensor with node feature "hidden_state" [N, dim] (and edge features
"efeat" [E, F], "norm" [E, 1]) to one with new "hidden_state"s of the same width.
  lightgcn  NormalizedSumConv: h'_v = sum over edge sets and edges (u -> v) of
            g(e) * h_u / sqrt(deg_out(u) deg_in(v)), with a learned gate g(e) from the edge's
            features (KG relation, interaction event/rating) when edge gates are on; no weights
            on the states (LightGCN), optionally plus h_v (residual).
  sage      TF-GNN's GraphSAGE update (mean aggregation).
  gatv2     TF-GNN's GATv2Conv per edge set, edge features as inputs to attention.
  mt_albis  TF-GNN's MtAlbis template (simple conv, edge features, layer norm option).
"""

import tensorflow as tf
import tensorflow_gnn as tfgnn
from tensorflow_gnn.models import graph_sage, mt_albis
from tensorflow_gnn.models.gat_v2 import GATv2Conv

from tfrec.config import ModelConfig


@tf.keras.utils.register_keras_serializable(package="tfrec")
class NormalizedSumConv(tfgnn.keras.layers.AnyToAnyConvolutionBase):
    """Symmetrically normalised sum of sender states, optionally gated per edge (LightGCN).

    Reads the edge feature `sender_edge_feature` [E, 1 + F]: column 0 the norm
    1/sqrt(deg_out(u) deg_in(v)), columns 1.. the edge's features; with `gated` (and F > 0) the
    message is scaled by 2 sigmoid(w . features + b) (1 at the zero initialisation).
    """

    def __init__(self, gated: bool, *, sender_edge_feature: str = "efeat",
                 receiver_feature=None, **kwargs):
        super().__init__(sender_edge_feature=sender_edge_feature,
                         receiver_feature=receiver_feature, **kwargs)
        self._gated = gated
        self._gate = tf.keras.layers.Dense(1, kernel_initializer="zeros") if gated else None

    def get_config(self):
        return dict(gated=self._gated, **super().get_config())

    def convolve(self, *, sender_node_input, sender_edge_input, receiver_input,
                 broadcast_from_sender_node, broadcast_from_receiver, pool_to_receiver,
                 extra_receiver_ops=None, training=False):
        norm, feats = sender_edge_input[:, :1], sender_edge_input[:, 1:]
        weight = norm
        if self._gated and feats.shape[-1]:  # an edge set without features is not gated
            weight *= tf.cast(2.0 * tf.sigmoid(self._gate(feats)), weight.dtype)
        messages = broadcast_from_sender_node(sender_node_input) * tf.cast(
            weight, sender_node_input.dtype)
        return pool_to_receiver(messages, reduce_type="sum")


@tf.keras.utils.register_keras_serializable(package="tfrec")
class SumNextState(tf.keras.layers.Layer):
    """Next state = sum of the pooled messages of all edge sets (+ the old state if residual)."""

    def __init__(self, residual: bool, **kwargs):
        super().__init__(**kwargs)
        self._residual = residual

    def get_config(self):
        return dict(residual=self._residual, **super().get_config())

    def call(self, inputs):
        state, edge_inputs, _ = inputs
        total = tf.add_n(list(edge_inputs.values()))
        return total + state if self._residual else total


def _receivers(graph_spec) -> dict[str, list[str]]:
    out = {}
    for name, e in graph_spec.edge_sets_spec.items():
        out.setdefault(e.adjacency_spec.target_name, []).append(name)
    return out


def build_layer(config: ModelConfig, graph_spec, index: int):
    """One message-passing step for every node set that receives messages."""
    dim = config.dim
    receivers = _receivers(graph_spec)
    act = None if config.activation == "linear" else config.activation
    if config.conv == "mt_albis":
        return mt_albis.MtAlbisGraphUpdate(
            units=dim, message_dim=config.hidden, receiver_tag=tfgnn.TARGET,
            edge_feature_name="efeat" if config.edge_gates else None,
            state_dropout_rate=config.dropout,
            normalization_type="layer" if config.normalization == "layer" else "none",
            next_state_type="residual" if config.residual else "dense",
            edge_set_combine_type="sum")
    if config.conv == "sage":
        return graph_sage.GraphSAGEGraphUpdate(
            units=dim, receiver_tag=tfgnn.TARGET, reduce_type="mean", use_pooling=False,
            dropout_rate=config.dropout, l2_normalize=False, combine_type="sum",
            activation=act or "linear", name=f"graph_sage_{index}")
    updates = {}
    for node_set, edge_sets in receivers.items():
        if config.conv == "lightgcn":
            convs = {e: NormalizedSumConv(config.edge_gates, receiver_tag=tfgnn.TARGET)
                     for e in edge_sets}
            next_state = SumNextState(config.residual)
        else:  # gatv2
            convs = {e: GATv2Conv(num_heads=config.heads,
                                  per_head_channels=max(1, dim // config.heads),
                                  receiver_tag=tfgnn.TARGET,
                                  sender_edge_feature="efeat" if config.edge_gates else None,
                                  edge_dropout=config.dropout, activation=act or "linear")
                     for e in edge_sets}
            dense = tf.keras.layers.Dense(dim, activation=act)
            next_state = (tfgnn.keras.layers.ResidualNextState(dense) if config.residual
                          else tfgnn.keras.layers.NextStateFromConcat(dense))
        updates[node_set] = tfgnn.keras.layers.NodeSetUpdate(convs, next_state)
    return tfgnn.keras.layers.GraphUpdate(node_sets=updates, name=f"{config.conv}_{index}")
