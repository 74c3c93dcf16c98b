"""Subgraphs sampled around a training batch, with TF-GNN's in-memory sampler.

    model graph (tfrec.model.inputs; "row" on every node set, "efeat" on every edge set)
      --sampling_spec: per hop h, up to fanouts[h] random edges of every edge set out of each
        node reached (one spec rooted at the users, one at the items)
      --TF-GNN in-memory sampler, seeded with the batch's distinct users and items
      --union of both samples, closed under edge reversal, minus the batch's own (u, i) edges
      --> a GraphTensor of the model graph's spec: each node once, its features gathered by row

Node identity: the sampler's output has no "#id"; the feature accessor carries "row" (the
node's global index), and every edge set an "eid" (the edge's index in the model graph), so
the union, the reversal and the removal of the predicted edges are set operations on global
indices. Message passing must not see the edge it predicts: every edge between a batch user
and its batch item (in the interaction edge set and its reverse) is dropped.

Edge features are those of the full graph: "efeat" column 0 stays the LightGCN norm of the
FULL training graph's degrees, 1 / sqrt(deg(u) deg(v)), not the subgraph's. A sampled node
then receives a subset of its full-graph terms (an unbiased estimate, up to a constant, of its
full aggregation when neighbours are drawn uniformly), which is what TF-GNN users do: features
are precomputed on the whole graph and sampling only selects edges.
"""

import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_gnn as tfgnn
from tensorflow_gnn.experimental import sampler as tfgnn_sampler

from tfrec.schema import Schema


def sampling_spec(graph_schema, seed_set: str, fanouts) -> "tfgnn.sampler.SamplingSpec":
    """A TF-GNN SamplingSpec rooted at `seed_set`: at hop h, up to fanouts[h] edges, drawn
    uniformly at random (not TF-GNN's TOP_K default), of every edge set leaving each node set
    reached at hop h - 1. The nodes reached at a hop are pooled per node set (one sampling op
    per edge set and hop, named "hop<h>.<edge set>"), so the spec grows with hops x edge sets,
    not exponentially."""
    builder = tfgnn.sampler.SamplingSpecBuilder(
        graph_schema, default_strategy=tfgnn.sampler.SamplingStrategy.RANDOM_UNIFORM)
    frontier = {seed_set: [builder.seed(seed_set)]}
    for hop, fanout in enumerate(fanouts, start=1):
        reached: dict[str, list] = {}
        for node_set, steps in sorted(frontier.items()):
            for name, edge_set in sorted(graph_schema.edge_sets.items()):
                if edge_set.source == node_set:
                    step = steps[0].merge_then_sample(steps[1:], int(fanout), name,
                                                      op_name=f"hop{hop}.{name}")
                    reached.setdefault(edge_set.target, []).append(step)
        frontier = reached
    return builder.build()


@dataclasses.dataclass
class Subgraph:
    """A graph to embed and where a batch's pairs sit in it.

    graph: a model-graph GraphTensor (the full one, or a sampled subgraph);
    users, items: [B] int32 positions of the batch's users / items in their node sets;
    item_rows: [I_g] int32 global row of each item node of `graph` (None: the full graph,
      where positions are rows)."""

    graph: object
    users: np.ndarray
    items: np.ndarray
    item_rows: np.ndarray | None = None


@dataclasses.dataclass
class _EdgeSet:
    source_set: str
    target_set: str
    source: np.ndarray  # [E] int32 global rows
    target: np.ndarray
    features: dict  # name -> [E, ...] numpy


class SubgraphSampler:
    """Samples, for a batch of (user, item) pairs, the union of the TF-GNN samples rooted at
    its users and at its items (see the module docstring).

    graph: the scalar model graph; schema: its tfrec Schema (user/item sets, the interaction
    edge set and the reverse_of pairs); fanouts: edges per hop."""

    def __init__(self, graph, schema: Schema, fanouts):
        self.user_set, self.item_set = schema.user_set, schema.item_set
        self.nodes = {n: {f: v.numpy() for f, v in s.features.items()}
                      for n, s in graph.node_sets.items()}
        self.edges = {n: _EdgeSet(e.adjacency.source_name, e.adjacency.target_name,
                                  e.adjacency.source.numpy(), e.adjacency.target.numpy(),
                                  {f: v.numpy() for f, v in e.features.items()})
                      for n, e in graph.edge_sets.items()}
        self.interaction_sets = [n for n in self.edges if n == schema.interactions
                                 or schema.edge_sets[n].reverse_of == schema.interactions]
        self.reverse = {}
        for name in self.edges:
            fwd = schema.edge_sets[name].reverse_of
            if fwd in self.edges:
                self._check_reversed(fwd, name)
                self.reverse[name], self.reverse[fwd] = fwd, name
        self.graph_schema = tfgnn.create_schema_pb_from_graph_spec(graph.spec)
        index_graph = self._index_graph(graph)
        self.models = {root: tfgnn_sampler.create_sampling_model_from_spec(
            self.graph_schema, sampling_spec(self.graph_schema, root, fanouts),
            lambda op: tfgnn_sampler.InMemUniformEdgesSampler.from_graph_tensor(
                index_graph, op.edge_set_name, sample_size=op.sample_size, name=op.op_name),
            lambda node_set: tfgnn_sampler.InMemIndexToFeaturesAccessor.from_graph_tensor(
                index_graph, node_set),
            seed_node_dtype=tf.int32) for root in (self.user_set, self.item_set)}
        seeds = tf.RaggedTensorSpec([1, None], tf.int32, ragged_rank=1)
        self.samplers = {root: tf.function(model, input_signature=[seeds])
                         for root, model in self.models.items()}

    def _check_reversed(self, forward: str, reverse: str) -> None:
        f, r = self.edges[forward], self.edges[reverse]
        if not (np.array_equal(f.source, r.target) and np.array_equal(f.target, r.source)):
            raise ValueError(f"edge set {reverse} is not {forward} reversed edge by edge")

    @staticmethod
    def _index_graph(graph):
        """The model graph's structure with only "row" on nodes and "eid" on edges: what the
        sampler carries through to its output."""
        return tfgnn.GraphTensor.from_pieces(
            node_sets={n: tfgnn.NodeSet.from_fields(sizes=s.sizes, features={"row": s["row"]})
                       for n, s in graph.node_sets.items()},
            edge_sets={n: tfgnn.EdgeSet.from_fields(
                sizes=e.sizes, adjacency=e.adjacency,
                features={"eid": tf.range(e.total_size, dtype=tf.int32)})
                for n, e in graph.edge_sets.items()})

    def sampled_ids(self, users: np.ndarray, items: np.ndarray):
        """(node set -> [N] global rows, edge set -> [E] edge ids) of the union of the samples
        rooted at the distinct `users` and `items`, seeds included, as drawn (before the
        reversal and the removal of the batch's edges)."""
        rows = {n: [] for n in self.nodes}
        eids = {n: [] for n in self.edges}
        for root, seeds in ((self.user_set, users), (self.item_set, items)):
            seeds = np.unique(seeds).astype(np.int32)
            rows[root].append(seeds)
            sample = self.samplers[root](tf.RaggedTensor.from_row_lengths(seeds, [len(seeds)]))
            sample = sample.merge_batch_to_components()
            for n, s in sample.node_sets.items():
                rows[n].append(s["row"].numpy())
            for n, e in sample.edge_sets.items():
                eids[n].append(e["eid"].numpy())
        return ({n: np.unique(np.concatenate(v)).astype(np.int32) for n, v in rows.items()},
                {n: np.unique(np.concatenate(v or [np.zeros(0, np.int32)])).astype(np.int32)
                 for n, v in eids.items()})

    def sample(self, users: np.ndarray, items: np.ndarray) -> Subgraph:
        """users, items [B] global rows of the batch's pairs -> the Subgraph to embed."""
        rows, eids = self.sampled_ids(users, items)
        for name, partner in self.reverse.items():  # a sampled edge brings its reverse
            eids[name] = np.union1d(eids[name], eids[partner]).astype(np.int32)
        batch = set((users.astype(np.int64) << 32 | items.astype(np.int64)).tolist())
        for name in self.interaction_sets:
            e = self.edges[name]
            u, i = (e.source, e.target) if e.source_set == self.user_set else (e.target, e.source)
            keys = u[eids[name]].astype(np.int64) << 32 | i[eids[name]].astype(np.int64)
            eids[name] = eids[name][~np.isin(keys, list(batch))]
        for name, ids in eids.items():  # every endpoint is a sampled node; made sure of
            e = self.edges[name]
            rows[e.source_set] = np.union1d(rows[e.source_set], e.source[ids]).astype(np.int32)
            rows[e.target_set] = np.union1d(rows[e.target_set], e.target[ids]).astype(np.int32)
        node_sets = {n: tfgnn.NodeSet.from_fields(
            sizes=tf.constant([len(r)], tf.int32),
            features={f: tf.constant(v[r]) for f, v in self.nodes[n].items()})
            for n, r in rows.items()}
        edge_sets = {}
        for name, ids in eids.items():
            e = self.edges[name]
            source = np.searchsorted(rows[e.source_set], e.source[ids]).astype(np.int32)
            target = np.searchsorted(rows[e.target_set], e.target[ids]).astype(np.int32)
            edge_sets[name] = tfgnn.EdgeSet.from_fields(
                sizes=tf.constant([len(ids)], tf.int32),
                adjacency=tfgnn.Adjacency.from_indices((e.source_set, tf.constant(source)),
                                                       (e.target_set, tf.constant(target))),
                features={f: tf.constant(v[ids]) for f, v in e.features.items()})
        graph = tfgnn.GraphTensor.from_pieces(node_sets=node_sets, edge_sets=edge_sets)
        return Subgraph(graph,
                        np.searchsorted(rows[self.user_set], users).astype(np.int32),
                        np.searchsorted(rows[self.item_set], items).astype(np.int32),
                        rows[self.item_set])
