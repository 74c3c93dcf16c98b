"""The two shipped graphs: exact figures, honest splits, and the default data's planted signal."""

import hashlib

import numpy as np
import pytest

from tfrec.data import ecommerce
from tfrec.data.build import build_graph
from tfrec.data.splits import SplitConfig, split_interactions


@pytest.fixture(scope="module")
def movielens():
    return build_graph("schemas/movielens.pbtxt", SplitConfig("random", seed=0))


def test_movielens_figures_as_shipped(movielens):
    data = movielens.data
    assert {n: data.num_nodes(n) for n in data.node_ids} == {
        "user": 943, "item": 1682, "entity": 34628}
    assert len(data.interactions.source) == 100_000
    assert len(data.edges["kg"].source) == 91_631 == len(data.edges["kg_reverse"].source)
    assert len(np.unique(data.edges["kg"].features["relation"])) == 24
    assert len(data.edges["links_to"].source) == 1598
    assert sorted(np.unique(data.node_features["user"]["gender"])) == ["F", "M"]
    assert data.node_features["item"]["title"][0] == "Toy Story"


def test_movielens_split_adds_up_and_never_leaks(movielens):
    data, split, g = movielens.data, movielens.split, movielens.graph
    sizes = np.bincount(split.pair_split)
    assert sizes.sum() == 100_000 and sizes.tolist() == [80_024, 9_988, 9_988]
    # every user keeps round(10%) for valid and test (all MovieLens users have >= 20 ratings)
    per_user = np.bincount(split.pair_user, minlength=943)
    valid_per_user = np.bincount(split.pair_user[split.pair_split == 1], minlength=943)
    assert (valid_per_user == np.rint(per_user * 0.1)).all()
    n_items = data.num_nodes("item")
    rates = g.edge_sets["rates"].adjacency
    in_graph = set((rates.source.numpy().astype(np.int64) * n_items
                    + rates.target.numpy()).tolist())
    assert len(in_graph) == 80_024 == int(g.edge_sets["rated_by"].sizes[0])
    for name in ("valid", "test"):
        u, i = split.pairs(name)
        assert not in_graph & set((u * n_items + i).tolist())
    back = g.edge_sets["rated_by"].adjacency
    assert set((back.target.numpy().astype(np.int64) * n_items
                + back.source.numpy()).tolist()) == in_graph


def test_movielens_temporal_split_orders_time(movielens):
    data = movielens.data
    split = split_interactions(data, SplitConfig("temporal"))
    ts = data.interactions.features["timestamp"][np.argsort(split.edge_pair)]  # one edge per pair
    for u in range(0, 943, 37):
        mine = split.pair_user == u
        train_t, test_t = ts[mine & (split.pair_split == 0)], ts[mine & (split.pair_split == 2)]
        assert train_t.max() <= test_t.min()


# SHA-256 of the generated default tables (seed 20261122). A change here changes every
# benchmark on the default data: bump ecommerce.VERSION when it is intended.
DIGESTS = {
    "entities.tsv": "6c8c1ca3602146e8d5c9ee9144d44737d6b0f812b0943b078bf586ea04775eee",
    "entity_entity.tsv": "1669457f629bd184e6919f4202519ba801b780b5d0b2dd381581d82152dd36d7",
    # these four pin the vectorised interaction draw to the per-user loop it replaced
    "interactions.tsv": "7ebf0c3953a60fba6ed41f9f368573f3ee3d0f1b1240c02df5579b1428460751",
    "item_entity.tsv": "7502a3fd803c886cef5158827ceb0dbf9bf861487ed90f1c4dc364d0cd5e1899",
    "items.tsv": "a68c324ee375b21038a6e392e02486f9c8fc2327cac177d72b57e32f0b4c9ade",
    "users.tsv": "d1081844c84f6fc306298fbd4dc87e6e54836cba3129952551fd79458ece683f",
}


def test_default_data_is_byte_for_byte_reproducible(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        ecommerce.generate(tmp_path / name)
    for f in ("users.tsv", "items.tsv", "entities.tsv", "item_entity.tsv", "entity_entity.tsv",
              "interactions.tsv", "MANIFEST"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    manifest = dict(line.split("  ")[::-1] for line in
                    (tmp_path / "a" / "MANIFEST").read_text().splitlines())
    for f, digest in DIGESTS.items():
        assert manifest[f] == digest == hashlib.sha256((tmp_path / "a" / f).read_bytes()).hexdigest()
    assert (ecommerce.default_dir() / "MANIFEST").read_text() == (tmp_path / "a" / "MANIFEST").read_text()


def recall_at_20(score, train, test):
    """Mean over test users of |top-20 (train items removed) ∩ test items| / |test items|."""
    score = score.copy()
    score[train] = -np.inf
    top = np.argpartition(-score, 20, axis=1)[:, :20]
    hit = np.zeros(score.shape, bool)
    hit[np.repeat(np.arange(score.shape[0]), 20), top.ravel()] = True
    users = np.bincount(test[0], minlength=score.shape[0])
    hits = np.bincount(test[0], weights=hit[test], minlength=score.shape[0])
    return float((hits[users > 0] / users[users > 0]).mean())


def test_default_data_shape_and_planted_signal():
    built = build_graph("schemas/ecommerce.pbtxt", SplitConfig("random", seed=0))
    data, split = built.data, built.split
    n_users, n_items = data.num_nodes("user"), data.num_nodes("item")
    assert (n_users, n_items, data.num_nodes("entity")) == (3000, 2000, 112)
    counts = np.bincount(data.interactions.target, minlength=n_items)
    assert 100 < (counts == 0).sum() < 200  # cold-start items, reachable by text and KG only
    assert counts.max() > 5 * np.median(counts[counts > 0])  # popularity skew
    assert set(np.unique(data.interactions.features["event"])) == {"view", "cart", "purchase"}
    # A user's leaf-category shares from training times popularity -- a model that has learned
    # only part of the planted taste -- must clearly beat popularity (measured 0.133 vs 0.036).
    train, test = split.pairs("train"), split.pairs("test")
    has = data.edges["has"]
    is_cat = has.features["relation"] == "category"
    leaf = np.zeros(n_items, np.int64)
    leaf[has.source[is_cat]] = has.target[is_cat]
    pop = np.bincount(train[1], minlength=n_items).astype(float)
    share = np.zeros((n_users, leaf.max() + 1))
    np.add.at(share, (train[0], leaf[train[1]]), 1.0)
    popularity = recall_at_20(np.tile(pop, (n_users, 1)), train, test)
    taste = recall_at_20(share[:, leaf] * (pop + 1.0), train, test)
    assert popularity == pytest.approx(0.0356, abs=0.002)
    assert taste > 3 * popularity
