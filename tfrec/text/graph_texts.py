"""`embed_graph_texts`: the frozen-mode text embeddings of every text feature of a graph."""

from collections.abc import Callable, Mapping

import numpy as np

from tfrec.errors import TfrecError
from tfrec.text.config import TextConfig
from tfrec.text.embedding_cache import embed_texts_counted


def embed_graph_texts(
    texts_by_feature: Mapping[tuple[str, str], list],
    config: TextConfig | None = None,
    progress: bool = True,
    on_feature: Callable[[tuple[str, str], int, int], None] | None = None,
) -> dict[tuple[str, str], np.ndarray]:
    """Embeds each text feature's texts (cached on disk, see `embed_texts`).

    Args:
      texts_by_feature: (node_set, feature_name) -> texts in node-index order (None allowed),
        as returned by `tfrec.data.graph_data.read_texts(schema_path)`.
      config: the text config (default TextConfig()); mode "off" is an error.
      progress: show a progress bar per feature on stderr.
      on_feature: called as `on_feature((node_set, feature), num_texts, num_encoded)` after
        each feature; `num_encoded` counts distinct texts not found in the cache.

    Returns:
      (node_set, feature_name) -> [num_nodes, 384] float32 array of unit-norm rows, to be
      stored as that node set's feature.
    """
    if not isinstance(texts_by_feature, Mapping):
        raise TfrecError("the graph texts must map (node_set, feature) to lists of texts.")
    result = {}
    for key, texts in texts_by_feature.items():
        if not (isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, str) for k in key)):
            raise TfrecError(f"graph text key {key!r} is not a (node_set, feature) pair.")
        embeddings, encoded = embed_texts_counted(texts, config, progress,
                                                  what=f"texts of {key[0]}.{key[1]}")
        if on_feature is not None:
            on_feature(key, len(embeddings), encoded)
        result[key] = embeddings
    return result
