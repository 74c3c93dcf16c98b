"""The neighbours an untrained item's ID row starts from in a warm start: the trained items
most like it by text and by knowledge graph (tfrec.train.warm_start).

    text        the K trained items nearest by cosine of the frozen text embeddings
                ("text" [I, 384] of the model graph);
    knowledge   the K trained items sharing the most entities around it, an entity counted
                1 / (the number of items around it): an item's entities are those it links to
                and their knowledge-graph neighbours (one hop), so two films by one director
                share the director, and a genre shared by hundreds of films counts little.
An untrained row becomes the mean of the rows of the union of both lists (ties by row order);
one with neither (no text, no knowledge graph) keeps its fresh initialisation.
"""

import numpy as np
import scipy.sparse as sp

K = 10  # neighbours per list


def item_entities(graph, user_set: str, item_set: str) -> sp.csr_matrix:
    """[I, E_all] 0/1: the entities around each item (see the module docstring), over the
    non-user, non-item node sets of the model graph `graph`, stacked in sorted name order."""
    sizes = {n: int(s.sizes.numpy().sum()) for n, s in graph.node_sets.items()}
    others = sorted(n for n in sizes if n not in (user_set, item_set))
    offset = dict(zip(others, np.cumsum([0] + [sizes[n] for n in others])))
    total = sum(sizes[n] for n in others)
    links, kg = [], []  # (item, entity) and (entity, entity) pairs, entity = offset + row
    for edges in graph.edge_sets.values():
        a = edges.adjacency
        s, t = a.source.numpy().astype(np.int64), a.target.numpy().astype(np.int64)
        if a.source_name == item_set and a.target_name in offset:
            links.append((s, t + offset[a.target_name]))
        elif a.target_name == item_set and a.source_name in offset:
            links.append((t, s + offset[a.source_name]))
        elif a.source_name in offset and a.target_name in offset:
            kg.append((s + offset[a.source_name], t + offset[a.target_name]))
    n_items = sizes[item_set]
    link = _binary(links, (n_items, total))
    hop = _binary(kg, (total, total))
    hop = hop + hop.T + sp.identity(total, format="csr")  # an entity and its neighbours
    return (link @ hop > 0).astype(np.float64).tocsr()


def _binary(pairs: list, shape) -> sp.csr_matrix:
    rows = np.concatenate([p[0] for p in pairs]) if pairs else np.zeros(0, np.int64)
    cols = np.concatenate([p[1] for p in pairs]) if pairs else np.zeros(0, np.int64)
    m = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=shape)
    m.data[:] = 1.0
    return m


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """[k'] columns of the k highest positive scores of a row, highest first, ties by column."""
    order = np.lexsort((np.arange(len(scores)), -scores))[:k]
    return order[scores[order] > 0]


def neighbours(targets: np.ndarray, trained: np.ndarray, text: np.ndarray | None,
               entities: sp.csr_matrix | None, k: int = K) -> list[np.ndarray]:
    """targets [R] item rows to initialise; trained [I] bool (rows that may be neighbours);
    text [I, 384] unit rows or None; entities [I, E] from `item_entities` or None.
    Returns, per target, the sorted rows of its neighbours (maybe none)."""
    out = []
    rows = np.flatnonzero(trained)
    candidate_text = None if text is None else text[rows]  # [T, 384], gathered once
    if entities is not None:
        counts = np.asarray(entities.sum(axis=0)).ravel()
        weights = (entities @ sp.diags(1.0 / np.maximum(counts, 1.0))).tocsr()
        candidates = entities[rows].T.tocsc()  # [E, T]
    for r in targets:
        found = []
        if text is not None and text[r].any():
            found.append(rows[_top(candidate_text @ text[r] + 2.0, k)])  # + 2: every one counts
        if entities is not None:
            found.append(rows[_top((weights[r] @ candidates).toarray().ravel(), k)])
        out.append(np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64))
    return out


def initialise(table: np.ndarray, targets: np.ndarray, rows: list[np.ndarray]) -> np.ndarray:
    """table [I, ...]: a copy whose target rows are the means of their neighbours' rows
    (targets without neighbours unchanged)."""
    out = table.copy()
    for r, found in zip(targets, rows):
        if len(found):
            out[r] = table[found].mean(axis=0)
    return out
