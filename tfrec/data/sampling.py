"""Subgraphs sampled around a training batch, with TF-GNN's in-memory sampler, in TF ops.

    model graph (tfrec.model.inputs; "row" on every node set, "efeat" on every edge set)
      --sampling_spec: per hop h, up to fanouts[h] random edges of every edge set out of each
        node reached (one spec rooted at the users, one at the items)
      --its ops run in order on TF-GNN's InMemUniformEdgesSampler, each op drawing once for
        every DISTINCT node its input ops reached (the frontier is deduplicated per hop)
      --union of both samples, closed under edge reversal, minus the batch's own (u, i) edges
      --> a GraphTensor of the model graph's spec: each node once, its features gathered by row

Everything from the seeds to the GraphTensor is TF ops (`SubgraphSampler.pairs` and `.around`
are tf.functions with [None] seed signatures, traced once), so the sampler runs inside a
tf.data `map` and overlaps the training step (tfrec.train.fit), and its output has the relaxed
spec of the model graph (None sizes): one compiled step for every subgraph.

Why the frontier is deduplicated: TF-GNN's sampling model expands a tree, one draw per path,
so a batch of B seeds reaches B * prod(fanouts) nodes per edge set at the last hop, most of them
repeats once B is large (one batch of MovieLens-100K: several million draws for a 100k-edge
graph). Here each distinct node draws once per op, so a hop costs at most the edges leaving
the nodes it reached, and a node reached twice gets one uniform sample of up to `fanout` edges.

Node identity: the sampled edges carry "eid" (their index in the model graph), so the union,
the reversal and the removal of the predicted edges are set operations on global indices, and
node sets carry "row" (the node's global index: ID embeddings are looked up by it). Message
passing must not see the edge it predicts: every edge between a batch user and its batch item
(in the interaction edge set and its reverse) is dropped (`pairs`; `around`, for inference,
keeps every edge).

Edge features are those of the full graph: "efeat" column 0 is the LightGCN norm of the FULL
training graph's degrees, 1 / sqrt(deg(u) deg(v)), not the subgraph's (what TF-GNN users do:
features are precomputed on the whole graph and sampling only selects edges). A sampled node
receives k of its deg full-graph terms; with `rescale_norm` (the lightgcn conv) each is scaled
by deg / k, so the sum estimates the full one (uniform draws: unbiased) instead of k / deg of
it, and training sees the scale inference sees. With fan-outs at least every degree and one
hop per GNN layer, `around` gives each seed its full-graph embedding.
"""

import dataclasses

import tensorflow as tf
import tensorflow_gnn as tfgnn
from tensorflow_gnn.experimental import sampler as tfgnn_sampler

from tfrec.schema import Schema

_NO_KEY = tf.int64.max  # sorts after every (user << 32 | item) key


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
    """A graph to embed and where a batch's nodes sit in it (tensors, or numpy for the full
    graph).

    graph: a model-graph GraphTensor (the full one, or a sampled subgraph);
    users, items: [B] int32 positions of the batch's users / items in their node sets;
    item_rows: [I_g] int32 global row of each item node of `graph` (None: the full graph,
      where positions are rows)."""

    graph: object
    users: object
    items: object
    item_rows: object = None

    def fields(self) -> tuple:
        return self.graph, self.users, self.items, self.item_rows


def choose(degrees: tf.Tensor, k: int, seed: int | None = None) -> tf.RaggedTensor:
    """degrees [N] int -> [N, (min(k, degrees[n]))] int64: for each n, distinct positions in
    [0, degrees[n]), a uniformly random subset (all of them where degrees[n] <= k), in O(N k^2)
    whatever the degrees: Floyd's algorithm, its k rounds vectorised over the N rows (round j
    draws t uniform in [0, d - k + j] and keeps t, or d - k + j if t was already kept)."""
    d = tf.cast(degrees, tf.int64)
    n = tf.shape(d, tf.int64)[0]
    uniform = tf.random.uniform([n, k], dtype=tf.float64, seed=seed)  # one op: k streams
    kept = tf.zeros([n, 0], tf.int64)
    for j in range(k):
        bound = d - k + j
        t = tf.minimum(tf.cast(uniform[:, j] * tf.cast(bound + 1, tf.float64), tf.int64), bound)
        seen = tf.reduce_any(kept == t[:, None], axis=1)
        kept = tf.concat([kept, tf.where(seen, bound, t)[:, None]], 1)
    every = tf.range(k, dtype=tf.int64)[None, :]  # rows with degree <= k keep all their edges
    picks = tf.where((d <= k)[:, None], every, kept)
    return tf.ragged.boolean_mask(picks, every < d[:, None])


class EdgeDraws(tfgnn_sampler.InMemUniformEdgesSampler):
    """TF-GNN's in-memory uniform edge sampler (its edges sorted by source and features kept
    as it builds them; the same call and output), drawing a node's sample_size edges with
    `choose`: O(nodes x sample_size) a call. TF-GNN 1.0.3's open-source draw
    (ext_ops_vectorized.ragged_choice) shuffles EVERY edge of every node it samples from (its
    constant-time kernel is not open source), so one hop from the items cost the whole
    interaction edge set, each step: sampled training grew with the square of the graph."""

    def call(self, source_node_ids: tf.RaggedTensor) -> dict:
        offsets, degrees = tf.unstack(tf.cast(tf.gather(
            self._partition_by_source, source_node_ids.values), tf.int64), 2, axis=1)
        picks = choose(degrees, self.sample_size, self._seed)
        edges = tf.gather(self._sort_index, (picks + offsets[:, None]).values)
        per_source = tf.math.unsorted_segment_sum(
            picks.row_lengths(), source_node_ids.value_rowids(), source_node_ids.nrows())
        splits = tf.concat([[0], tf.cumsum(tf.cast(per_source, source_node_ids.row_splits.dtype))],
                           0)
        return {name: tf.RaggedTensor.from_row_splits(tf.gather(field, edges), splits,
                                                      validate=False)
                for name, field in self._fields.items()}


def _sorted_unique(values: tf.Tensor) -> tf.Tensor:
    return tf.sort(tf.unique(values).y)


def _union(*parts: tf.Tensor) -> tf.Tensor:
    """The sorted distinct values of 1-D int32 tensors."""
    return _sorted_unique(tf.concat(parts, 0))


def _pair_keys(users: tf.Tensor, items: tf.Tensor) -> tf.Tensor:
    return tf.cast(users, tf.int64) * (1 << 32) + tf.cast(items, tf.int64)


class SubgraphSampler:
    """Samples, for a batch of (user, item) pairs, the union of the TF-GNN samples rooted at
    its users and at its items (see the module docstring).

    graph: the scalar model graph; schema: its tfrec Schema (user/item sets, the interaction
    edge set and the reverse_of pairs); fanouts: edges per hop; seed: the edge draws' seed;
    rescale_norm: scale "efeat" column 0 (the LightGCN norm) of each edge by deg(v) / k(v), v
    its receiver (target), deg its in-degree in the edge set in the full graph, k in the
    subgraph, so a receiver's sum over its k sampled edges estimates its full sum rather than
    k / deg of it (exact where every edge is kept: k = deg)."""

    def __init__(self, graph, schema: Schema, fanouts, seed: int | None = None,
                 rescale_norm: bool = False):
        self.user_set, self.item_set = schema.user_set, schema.item_set
        self.spec = graph.spec.relax(num_nodes=True, num_edges=True)  # that of every subgraph
        self.nodes = {n: dict(s.features) for n, s in graph.node_sets.items()}
        self.sizes = {n: int(s.total_size) for n, s in graph.node_sets.items()}
        self.edges = {n: e for n, e in graph.edge_sets.items()}
        self.interaction_sets = [n for n in self.edges if n == schema.interactions
                                 or schema.edge_sets[n].reverse_of == schema.interactions]
        self.reverse = {}
        for name in self.edges:
            fwd = schema.edge_sets[name].reverse_of
            if fwd in self.edges:
                self._check_reversed(fwd, name)
                self.reverse[name], self.reverse[fwd] = fwd, name
        self.in_degree = {n: tf.math.bincount(e.adjacency.target, minlength=self.sizes[
            e.adjacency.target_name], dtype=tf.float32) for n, e in self.edges.items()} \
            if rescale_norm else None
        graph_schema = tfgnn.create_schema_pb_from_graph_spec(graph.spec)
        self.specs = {root: sampling_spec(graph_schema, root, fanouts)
                      for root in (self.user_set, self.item_set)}
        index_graph = self._index_graph(graph)
        self.draws = {}  # (edge set, fanout) -> TF-GNN edge sampler, shared by both roots
        for spec in self.specs.values():
            for op in spec.sampling_ops:
                key = (op.edge_set_name, op.sample_size)
                if key not in self.draws:
                    self.draws[key] = EdgeDraws.from_graph_tensor(
                        index_graph, op.edge_set_name, sample_size=op.sample_size,
                        seed=None if seed is None else seed + len(self.draws),
                        name=f"{op.edge_set_name}.{op.sample_size}")
        seeds = tf.TensorSpec([None], tf.int32)
        self.pairs = tf.function(self._pairs, input_signature=[seeds, seeds])
        self.around = tf.function(self._around, input_signature=[seeds, seeds])

    def _check_reversed(self, forward: str, reverse: str) -> None:
        f, r = self.edges[forward].adjacency, self.edges[reverse].adjacency
        if not (f.source.shape == r.target.shape
                and bool(tf.reduce_all(f.source == r.target))
                and bool(tf.reduce_all(f.target == r.source))):
            raise ValueError(f"edge set {reverse} is not {forward} reversed edge by edge")

    @staticmethod
    def _index_graph(graph):
        """The model graph's structure with only "eid" on edges: what the sampler carries
        through to its output."""
        return tfgnn.GraphTensor.from_pieces(
            node_sets={n: tfgnn.NodeSet.from_fields(sizes=s.sizes, features={})
                       for n, s in graph.node_sets.items()},
            edge_sets={n: tfgnn.EdgeSet.from_fields(
                sizes=e.sizes, adjacency=e.adjacency,
                features={"eid": tf.range(e.total_size, dtype=tf.int32)})
                for n, e in graph.edge_sets.items()})

    def _draw(self, root: str, seeds: tf.Tensor, rows: dict, eids: dict) -> None:
        """Appends to rows (node set -> list of [N] global rows) and eids (edge set -> list
        of [E] edge ids) what the ops of the spec rooted at `root` draw from the distinct
        `seeds`; each op draws once per distinct node of its pooled inputs."""
        spec = self.specs[root]
        reached = {spec.seed_op.op_name: seeds}
        for op in spec.sampling_ops:
            frontier = _union(*(reached[name] for name in op.input_op_names))
            edges = self.draws[(op.edge_set_name, op.sample_size)](
                tf.RaggedTensor.from_row_lengths(frontier, tf.shape(frontier, tf.int64)[:1]))
            reached[op.op_name] = tf.cast(edges[tfgnn.TARGET_NAME].values, tf.int32)
            eids[op.edge_set_name].append(edges["eid"].values)
            rows[self.edges[op.edge_set_name].adjacency.target_name].append(reached[op.op_name])

    def drawn(self, users, items):
        """(node set -> [N] sorted global rows, edge set -> [E] sorted edge ids) of the union
        of the samples rooted at the distinct `users` and `items`, seeds included, as drawn
        (before the reversal and the removal of the batch's edges)."""
        none = tf.zeros([0], tf.int32)
        rows = {n: [none] for n in self.nodes}
        eids = {n: [none] for n in self.edges}
        for root, seeds in ((self.user_set, users), (self.item_set, items)):
            seeds = _union(seeds)
            rows[root].append(seeds)
            self._draw(root, seeds, rows, eids)
        return {n: _union(*v) for n, v in rows.items()}, {n: _union(*v) for n, v in eids.items()}

    def _subgraph(self, users, items, drop_pairs: bool) -> Subgraph:
        """The sample around `users` and `items` closed under reversal (minus the (users[k],
        items[k]) edges if `drop_pairs`) as a GraphTensor, and where the seeds sit in it."""
        rows, eids = self.drawn(users, items)
        eids = {name: _union(ids, eids[self.reverse[name]]) if name in self.reverse else ids
                for name, ids in eids.items()}  # a sampled edge brings its reverse
        if drop_pairs:
            batch = tf.concat([_sorted_unique(_pair_keys(users, items)), [_NO_KEY]], 0)
            for name in self.interaction_sets:
                adj = self.edges[name].adjacency
                u, i = (adj.source, adj.target) if adj.source_name == self.user_set \
                    else (adj.target, adj.source)
                keys = _pair_keys(tf.gather(u, eids[name]), tf.gather(i, eids[name]))
                found = tf.gather(batch, tf.searchsorted(batch, keys)) == keys
                eids[name] = tf.boolean_mask(eids[name], ~found)
        ends = {n: [r] for n, r in rows.items()}  # every endpoint is a sampled node
        for name, ids in eids.items():
            adj = self.edges[name].adjacency
            ends[adj.source_name].append(tf.gather(adj.source, ids))
            ends[adj.target_name].append(tf.gather(adj.target, ids))
        rows = {n: _union(*v) for n, v in ends.items()}
        node_sets = {n: tfgnn.NodeSet.from_fields(
            sizes=tf.size(r)[None], features={f: tf.gather(v, r) for f, v in self.nodes[n].items()})
            for n, r in rows.items()}
        edge_sets = {}
        for name, ids in eids.items():
            edges = self.edges[name]
            adj = edges.adjacency
            source = tf.searchsorted(rows[adj.source_name], tf.gather(adj.source, ids))
            target = tf.searchsorted(rows[adj.target_name], tf.gather(adj.target, ids))
            features = {f: tf.gather(v, ids) for f, v in edges.features.items()}
            if self.in_degree is not None and "efeat" in features:
                kept = tf.math.unsorted_segment_sum(tf.ones_like(target, tf.float32), target,
                                                    tf.size(rows[adj.target_name]))
                scale = tf.gather(tf.gather(self.in_degree[name], rows[adj.target_name])
                                  / tf.maximum(kept, 1.0), target)
                efeat = features["efeat"]
                features["efeat"] = tf.concat([efeat[:, :1] * scale[:, None], efeat[:, 1:]], 1)
            edge_sets[name] = tfgnn.EdgeSet.from_fields(
                sizes=tf.size(ids)[None],
                adjacency=tfgnn.Adjacency.from_indices((adj.source_name, source),
                                                       (adj.target_name, target)),
                features=features)
        graph = tfgnn.GraphTensor.from_pieces(node_sets=node_sets, edge_sets=edge_sets)
        item_rows = rows[self.item_set]
        return Subgraph(graph, tf.searchsorted(rows[self.user_set], users),
                        tf.searchsorted(item_rows, items), item_rows)

    def _pairs(self, users, items):
        """users, items [B] global rows of a batch's (user, item) pairs -> the training
        Subgraph's fields (graph, users [B], items [B], item_rows), the pairs' edges dropped."""
        return self._subgraph(users, items, drop_pairs=True).fields()

    def _around(self, users, items):
        """[U] user and [I] item global rows -> the Subgraph's fields around them (every
        sampled edge kept: inference)."""
        return self._subgraph(users, items, drop_pairs=False).fields()

    def sample(self, users, items) -> Subgraph:
        """users, items [B] global rows of the batch's pairs -> the Subgraph to embed."""
        return Subgraph(*self.pairs(tf.convert_to_tensor(users, tf.int32),
                                    tf.convert_to_tensor(items, tf.int32)))
