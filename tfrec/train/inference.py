"""User and item embeddings for evaluation and export: the whole graph in one pass, or batches
of sampled neighbourhoods, so a graph whose full pass does not fit can still be scored.

    sample.inference "full":  GraphRecommender.embed(the full model graph) -> every row at once
    "sampled": for each batch of `sample.inference_batch` users, then items:
        SubgraphSampler.around(seeds) (their sampled neighbourhood, no edge removed)
        -> embed the subgraph (one compiled function for every batch) -> the seeds' rows
    "auto": "sampled" above sample.auto_edges training interactions, like train.mode.
With fan-outs at least every degree and one hop per layer, "sampled" equals "full" (a seed's
L-layer embedding reads only its L-hop neighbourhood); smaller fan-outs estimate it.
"""

import numpy as np
import tensorflow as tf

from tfrec.config import Config
from tfrec.data.sampling import SubgraphSampler
from tfrec.train.prepare import Prepared


def by_size(prepared: Prepared, config: Config, choice: str) -> str:
    """"full" or "sampled": `choice`, with "auto" resolved by the number of training
    interaction edges against sample.auto_edges."""
    if choice != "auto":
        return choice
    edges = int(prepared.model_graph.edge_sets[prepared.data.schema.interactions].total_size)
    return "sampled" if edges > config.sample.auto_edges else "full"


class SampledEmbedder:
    """Embeds every user and item from its sampled neighbourhood, `batch` seeds at a time.

    model: a GraphRecommender; sampler: a SubgraphSampler of its model graph."""

    def __init__(self, model, sampler: SubgraphSampler, batch: int):
        self.model, self.sampler, self.batch = model, sampler, batch
        seeds = tf.TensorSpec([None], tf.int32)
        self.embed = tf.function(self._embed, input_signature=[sampler.spec, seeds, seeds])

    def _embed(self, graph, users, items):
        """graph: a sampled subgraph; users [U_b], items [I_b] int32 positions of the seeds in
        it -> (user [U_b, D], item [I_b, D], item bias [I_b] or zeros) in inference mode."""
        e = self.model.embed(graph, training=False)
        bias = tf.zeros(tf.shape(items), tf.float32) if e.item_bias is None \
            else tf.gather(e.item_bias, items)
        return tf.gather(e.user, users), tf.gather(e.item, items), bias

    def _rows(self, node_set: str) -> np.ndarray:
        """Embedding rows of every node of `node_set` (a user or the item set) in batches:
        [N, D] (and the item biases [N] for items)."""
        none = tf.zeros([0], tf.int32)
        out = []
        for start in range(0, self.sampler.sizes[node_set], self.batch):
            seeds = tf.range(start, min(start + self.batch, self.sampler.sizes[node_set]))
            users, items = (seeds, none) if node_set == self.sampler.user_set else (none, seeds)
            graph, u, i, _ = self.sampler.around(users, items)
            user, item, bias = self.embed(graph, u, i)
            out.append(user.numpy() if node_set == self.sampler.user_set
                       else np.concatenate([item.numpy(), bias.numpy()[:, None]], 1))
        return np.concatenate(out)

    def __call__(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(user [U, D], item [I, D], item bias [I] or None) float32 numpy."""
        user = self._rows(self.sampler.user_set)
        item = self._rows(self.sampler.item_set)
        bias = None if self.model.item_bias is None else item[:, -1]
        return user, item[:, :-1], bias
