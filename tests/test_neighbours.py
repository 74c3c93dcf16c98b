"""Neighbour initialisation of untrained item rows (tfrec.train.neighbours), by hand.

Items 0-3, entities e0-e4 (node set "entity"), one user set "user" (ignored):
    links   item0 -> e0, item1 -> e1, item2 -> e2, item3 -> e3
    kg      e0 -> e4 (director), e1 -> e4, e3 -> e4, e2 -> e1
Entities around each item (its own and their one-hop neighbours, both directions):
    item0 {e0, e4}, item1 {e1, e4, e2}, item2 {e2, e1}, item3 {e3, e4}
Entity counts (items around it): e0 1, e1 2, e2 2, e3 1, e4 3.
Item 3 is untrained; shared-entity scores with the trained items 0, 1, 2:
    item0: e4 -> 1/3;  item1: e4 -> 1/3;  item2: nothing -> 0 (not a neighbour)."""

import numpy as np
import pytest
import tensorflow_gnn as tfgnn

from tfrec.train import neighbours as nb


def graph():
    def edges(source, target, s, t):
        return tfgnn.EdgeSet.from_fields(sizes=[len(s)], adjacency=tfgnn.Adjacency.from_indices(
            (source, np.array(s, np.int64)), (target, np.array(t, np.int64))))

    def nodes(n):
        return tfgnn.NodeSet.from_fields(sizes=[n], features={})

    return tfgnn.GraphTensor.from_pieces(
        node_sets={"user": nodes(2), "item": nodes(4), "entity": nodes(5)},
        edge_sets={"links": edges("item", "entity", [0, 1, 2, 3], [0, 1, 2, 3]),
                   "kg": edges("entity", "entity", [0, 1, 3, 2], [4, 4, 4, 1]),
                   "rates": edges("user", "item", [0, 1], [0, 2])})


def test_entities_around_each_item():
    m = nb.item_entities(graph(), "user", "item").toarray()
    assert m.tolist() == [[1, 0, 0, 0, 1], [0, 1, 1, 0, 1], [0, 1, 1, 0, 0], [0, 0, 0, 1, 1]]


def test_neighbours_by_knowledge_and_text_and_their_mean():
    entities = nb.item_entities(graph(), "user", "item")
    trained = np.array([True, True, True, False])
    # knowledge graph alone: items 0 and 1 (1/3 each), not item 2 (0)
    assert [r.tolist() for r in nb.neighbours(np.array([3]), trained, None, entities)] == [[0, 1]]
    # k = 1: the tie between items 0 and 1 goes to the lower row
    assert nb.neighbours(np.array([3]), trained, None, entities, k=1)[0].tolist() == [0]
    # text alone, k = 1: item 3's nearest trained text is item 1's
    text = np.array([[1, 0, 0], [0, 1, 0], [0.6, 0.8, 0], [0.28, 0.96, 0]], np.float32)
    # cosines with item 3: item0 0.28, item1 0.96, item2 0.6 * 0.28 + 0.8 * 0.96 = 0.936
    assert nb.neighbours(np.array([3]), trained, text, None, k=1)[0].tolist() == [1]
    # both, k = 1: {1} from text, {0} from the knowledge graph
    rows = nb.neighbours(np.array([3]), trained, text, entities, k=1)
    assert rows[0].tolist() == [0, 1]
    table = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [9.0, 9.0]])
    out = nb.initialise(table, np.array([3]), rows)
    assert out[3].tolist() == [2.0, 3.0]  # the mean of rows 0 and 1
    assert out[:3].tolist() == table[:3].tolist()  # the trained rows unchanged
    # a target with neither text nor knowledge keeps its row
    empty = nb.neighbours(np.array([3]), trained, np.zeros((4, 3), np.float32), None)
    assert nb.initialise(table, np.array([3]), empty)[3].tolist() == [9.0, 9.0]


@pytest.mark.parametrize("k", [1, 3])
def test_only_trained_rows_are_neighbours(k):
    text = np.eye(4, dtype=np.float32)
    trained = np.array([False, True, False, True])
    for found in nb.neighbours(np.array([0, 2]), trained, text, None, k=k):
        assert set(found.tolist()) <= {1, 3}
