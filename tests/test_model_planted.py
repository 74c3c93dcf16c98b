"""Planted signals, trained end to end through the Trainer on generated tables:
MF (the model without message passing) recovers planted user/item groups where popularity is
chance; message passing recovers the group of items whose ONLY signal is a knowledge-graph
neighbour, which an ID-only model cannot."""

from pathlib import Path

import numpy as np
import pytest

from tfrec.config import config_from_dict
from tfrec.evaluate.scoring import embedding_score_fn
from tfrec.evaluate.metrics import csr_from_pairs, full_ranking_metrics
from tfrec.train.fit import Trainer, embeddings
from tfrec.train.prepare import prepare
from tfrec.train.run_dir import RunDir

GROUP_USERS, GROUP_ITEMS, COLD_PER_GROUP = 20, 20, 3

SCHEMA = """
node_sets { key: "user" value { metadata { filename: "users.tsv"
  extra { key: "id_column" value: "user_id" } } } }
node_sets { key: "item" value { metadata { filename: "items.tsv"
  extra { key: "id_column" value: "item_id" } } } }
node_sets { key: "entity" value { metadata { extra { key: "ids_from_edges" value: "true" } } } }
edge_sets { key: "buys" value { source: "user" target: "item" metadata {
  filename: "buys.tsv" extra { key: "role" value: "interactions" }
  extra { key: "source_column" value: "user_id" } extra { key: "target_column" value: "item_id" }
} } }
edge_sets { key: "bought_by" value { source: "item" target: "user"
  metadata { extra { key: "reverse_of" value: "buys" } } } }
edge_sets { key: "in_group" value { source: "item" target: "entity" metadata {
  filename: "groups.tsv"
  extra { key: "source_column" value: "item_id" } extra { key: "target_column" value: "group" }
} } }
edge_sets { key: "group_of" value { source: "entity" target: "item"
  metadata { extra { key: "reverse_of" value: "in_group" } } } }
"""


def group(item: int) -> int:
    """Items 0-19 group 0, 20-39 group 1 (warm); 40-42 group 0, 43-45 group 1 (cold)."""
    warm = 2 * GROUP_ITEMS
    return item // GROUP_ITEMS if item < warm else (item - warm) // COLD_PER_GROUP


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    """2 user groups x 2 item groups: each user buys 12 random warm items of its own group
    (10 train, 1 valid, 1 test) and one cold item of its group (test only: the cold items
    have no training interaction, only their group entity)."""
    folder = tmp_path_factory.mktemp("planted")
    rng = np.random.default_rng(0)
    n_items = 2 * GROUP_ITEMS + 2 * COLD_PER_GROUP
    splits = {"train": [], "valid": [], "test": []}
    for user in range(2 * GROUP_USERS):
        g = user // GROUP_USERS
        chosen = g * GROUP_ITEMS + rng.choice(GROUP_ITEMS, 12, replace=False)
        cold = 2 * GROUP_ITEMS + g * COLD_PER_GROUP + user % COLD_PER_GROUP
        splits["train"] += [(user, i) for i in chosen[:10]]
        splits["valid"].append((user, chosen[10]))
        splits["test"] += [(user, chosen[11]), (user, cold)]
    (folder / "schema.pbtxt").write_text(SCHEMA)
    (folder / "users.tsv").write_text("user_id\n" + "".join(
        f"u{u}\n" for u in range(2 * GROUP_USERS)))
    (folder / "items.tsv").write_text("item_id\n" + "".join(f"i{i}\n" for i in range(n_items)))
    (folder / "groups.tsv").write_text("item_id\tgroup\n" + "".join(
        f"i{i}\tg{group(i)}\n" for i in range(n_items)))
    pairs = [p for rows in splits.values() for p in rows]
    (folder / "buys.tsv").write_text("user_id\titem_id\n" + "".join(
        f"u{u}\ti{i}\n" for u, i in pairs))
    (folder / "splits").mkdir()
    for name, rows in splits.items():
        (folder / "splits" / f"{name}.tsv").write_text("user_id\titem_id\n" + "".join(
            f"u{u}\ti{i}\n" for u, i in rows))
    return folder


def train_embeddings(folder: Path, tmp_path: Path, model: dict):
    config = config_from_dict({
        "model": {"dim": 16, "layers": 2, **model}, "text": {"mode": "off"},
        "train": {"epochs": 40, "batch_size": 400, "chunk": 400, "learning_rate": 0.05,
                  "weight_decay": 0.01, "patience": 40, "ranking_weight": 0.0},
        "split": {"method": "files", "split_dir": str(folder / "splits")}})
    prepared = prepare(str(folder / "schema.pbtxt"), config, progress=False)
    trained, _ = Trainer(prepared, config, RunDir(tmp_path / "run"), False, lambda s: None).fit()
    assert len(trained.model.gnn) == (0 if model["kind"] == "mf" else 2)
    return prepared, embeddings(trained)


def group_auc(user_emb, item_emb, items: np.ndarray) -> float:
    """Mean over users of P(score of an own-group item in `items` > an other-group one),
    ties counted 1/2: 0.5 is blind to the groups, 1 separates them."""
    scores = user_emb @ item_emb[items].T
    aucs = []
    for u in range(len(user_emb)):
        own = np.array([group(i) == u // GROUP_USERS for i in items])
        diff = scores[u, own][:, None] - scores[u, ~own][None, :]
        aucs.append(np.mean((diff > 0) + 0.5 * (diff == 0)))
    return float(np.mean(aucs))


def test_mf_recovers_planted_groups_where_popularity_is_chance(planted, tmp_path):
    prepared, (user, item, bias) = train_embeddings(planted, tmp_path, {"kind": "mf"})
    warm = np.arange(2 * GROUP_ITEMS)
    assert group_auc(user, item, warm) >= 0.97
    # after the 10 training items, 30 warm candidates remain: 10 of the user's own group (the
    # valid and test items among them) and 20 of the other; knowing the groups puts the warm
    # test item in the top 10 (recall 1), blind ranking with probability ~10/30
    u, i = prepared.split.pairs("test")
    is_warm = i < 2 * GROUP_ITEMS
    exclude = prepared.csr("train", "valid")
    targets = csr_from_pairs(u[is_warm], i[is_warm], prepared.num_users)
    scores = embedding_score_fn(user, item[warm], None if bias is None else bias[warm])
    metrics = full_ranking_metrics(scores, exclude, targets, ks=(10,))
    assert metrics["recall@10"] >= 0.95


def test_message_passing_places_items_known_only_by_their_knowledge_graph_group(planted,
                                                                               tmp_path):
    cold = np.arange(2 * GROUP_ITEMS, 2 * GROUP_ITEMS + 2 * COLD_PER_GROUP)
    _, (user, item, _) = train_embeddings(planted, tmp_path / "gnn", {"kind": "gnn"})
    _, (mf_user, mf_item, _) = train_embeddings(planted, tmp_path / "mf", {"kind": "mf"})
    # MF gives every cold item the same (zero) embedding: it cannot tell their groups apart
    assert np.abs(mf_item[cold]).max() == 0.0
    assert group_auc(mf_user, mf_item, cold) == 0.5
    # the GNN carries each group's signal from its warm items through the group entity
    assert group_auc(user, item, cold) >= 0.95
