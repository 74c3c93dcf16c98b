"""Splitting interactions into train / valid / test by (user, item) pair.

All edges of one (user, item) pair share a split, so a held-out pair never appears in the
training graph even if the user viewed and then bought the item. Per user: the first
round(n * train) pairs are train, the next round(n * valid) valid, the rest test, in a seeded
random order ("random") or by earliest timestamp ("temporal"); users with fewer than 3 pairs
keep all of them for training. Explicit split files ("files") are a folder with train.tsv,
valid.tsv and test.tsv, each with a header and columns user_id and item_id holding the ORIGINAL
ids; interactions listed in none of them are dropped.

Cold-start evaluation (`cold_items` > 0, random or temporal): a seeded share of the items that
have interactions is held out whole: every pair of such an item goes to test, so it is known to
the model only through its text, features and knowledge-graph edges. The other pairs are split
per user as above.
"""

import dataclasses
from pathlib import Path

import numpy as np

from tfrec.config_fields import Validated, bounded, choice
from tfrec.data.graph_data import GraphData
from tfrec.data.tables import read_table
from tfrec.errors import TfrecError

SPLITS = ("train", "valid", "test")
DROPPED = -1
SEED_MAX = 2**32 - 1  # numpy's and TensorFlow's seeds are unsigned 32-bit


@dataclasses.dataclass(frozen=True)
class SplitConfig(Validated):
    """How interactions are split (the config's [split] section and the split options).

    method: "random", "temporal" or "files" (the folder `split_dir`); ratios: train, valid,
    test shares summing to 1; seed: of the random order and of the cold items; cold_items:
    share of the interacted items whose every pair goes to test."""

    method: str = choice("random", "temporal", "files")
    ratios: tuple[float, float, float] = bounded((0.8, 0.1, 0.1), 0.0, 1.0)
    seed: int = bounded(0, 0, SEED_MAX)
    split_dir: str | None = None  # for method "files"
    cold_items: float = bounded(0.0, 0.0, below=1.0)

    SECTION = "split"

    def check(self):
        if self.method == "files" and not self.split_dir:
            raise TfrecError("split method 'files' needs a split folder (--split-dir)")
        r = self.ratios
        if r[0] <= 0 or abs(sum(r) - 1.0) > 1e-6:
            raise TfrecError(f"split ratios {list(r)} must be three non-negative numbers summing "
                             "to 1 with a positive train share")
        if self.method == "files" and self.cold_items:
            raise TfrecError("split cold_items does not apply to an explicit split (--split-dir): "
                             "list the cold items' pairs in its test.tsv instead")


@dataclasses.dataclass
class Split:
    """pair_user, pair_item: [P] int64 unique interaction pairs; pair_split: [P] int8 in
    {0 train, 1 valid, 2 test, -1 dropped}; edge_pair: [E] index of each interaction edge's pair."""

    pair_user: np.ndarray
    pair_item: np.ndarray
    pair_split: np.ndarray
    edge_pair: np.ndarray

    @property
    def edge_split(self) -> np.ndarray:
        """[E] int8: the split of every interaction edge."""
        return self.pair_split[self.edge_pair]

    def pairs(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(users [P_s], items [P_s]) of one split, in pair order."""
        mask = self.pair_split == SPLITS.index(split)
        return self.pair_user[mask], self.pair_item[mask]


def _rank_within_user(users: np.ndarray, order: np.ndarray) -> np.ndarray:
    """rank[p] = position of pair p among its user's pairs in `order` (a permutation)."""
    sorted_users = users[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_users)) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - group_start
    return rank


def _by_ratio(users, sort_key, ratios) -> np.ndarray:
    order = np.lexsort((sort_key, users))
    rank = _rank_within_user(users, order)
    n = np.bincount(users)[users]
    n_valid = np.rint(n * ratios[1]).astype(np.int64)
    n_test = np.rint(n * ratios[2]).astype(np.int64)
    n_train = n - n_valid - n_test
    split = np.where(rank < n_train, 0, np.where(rank < n_train + n_valid, 1, 2))
    split[n < 3] = 0
    return split.astype(np.int8)


def _from_files(data: GraphData, keys: np.ndarray, split_dir: str) -> np.ndarray:
    schema = data.schema
    n_items = data.num_nodes(schema.item_set)
    index = {s: {i: j for j, i in enumerate(data.node_ids[s])}
             for s in (schema.user_set, schema.item_set)}
    pair_split = np.full(len(keys), DROPPED, dtype=np.int8)
    for s, name in enumerate(SPLITS):
        path = Path(split_dir) / f"{name}.tsv"
        table = read_table(path, str(path))
        users = table.column("user_id", "the user ids of the split")
        items = table.column("item_id", "the item ids of the split")
        u_rows = _rows(index[schema.user_set], users, table, path, "user_id", "a user")
        i_rows = _rows(index[schema.item_set], items, table, path, "item_id", "an item")
        key = u_rows * n_items + i_rows
        p = np.searchsorted(keys, key)
        found = p < len(keys)
        found[found] = keys[p[found]] == key[found]
        for row in np.flatnonzero(~found)[:1]:
            raise TfrecError(f"{path}, line {table.line(row)}: ({users[row]!r}, {items[row]!r}) "
                             "is not an interaction of the data")
        for row in np.flatnonzero((pair_split[p] != DROPPED) & (pair_split[p] != s))[:1]:
            raise TfrecError(f"{path}, line {table.line(row)}: ({users[row]!r}, {items[row]!r}) "
                             f"is also in {SPLITS[pair_split[p[row]]]}.tsv")
        pair_split[p] = s
    return pair_split


def _rows(index: dict, ids: list[str], table, path: Path, column: str, what: str) -> np.ndarray:
    """[R] int64 rows of `ids` in `index`; a TfrecError naming the first line whose id is not
    there."""
    rows = np.fromiter((index.get(i, -1) for i in ids), np.int64, len(ids))
    for row in np.flatnonzero(rows < 0)[:1]:
        raise TfrecError(f"{path}, line {table.line(row)}: {column} {ids[row]!r} is not "
                         f"{what} of the data")
    return rows


def _cold_pairs(items: np.ndarray, config: SplitConfig) -> np.ndarray:
    """[P] bool: the pairs of round(cold_items x interacted items) items chosen at random."""
    interacted = np.unique(items)
    n = int(np.rint(config.cold_items * len(interacted)))
    cold = np.random.default_rng([config.seed, 1]).choice(interacted, n, replace=False)
    return np.isin(items, cold)


def split_interactions(data: GraphData, config: SplitConfig) -> Split:
    """Assigns every interaction pair of `data` to train, valid or test (or drops it)."""
    inter = data.interactions
    n_items = data.num_nodes(data.schema.item_set)
    keys, edge_pair = np.unique(inter.source * n_items + inter.target, return_inverse=True)
    users, items = keys // n_items, keys % n_items
    if config.method == "files":
        pair_split = _from_files(data, keys, config.split_dir)
    elif config.method == "temporal":
        ts_name = data.schema.timestamp
        if ts_name is None:
            raise TfrecError(f"schema {data.schema.path} names no timestamp feature (extra "
                             "timestamp on the interaction edge set), so it cannot be split by "
                             "time")
        order_key = np.full(len(keys), np.inf)
        np.minimum.at(order_key, edge_pair, inter.features[ts_name].astype(np.float64))
        # lexsort is stable: ties in time keep pair-key order, so the split is deterministic
    else:
        order_key = np.random.default_rng(config.seed).random(len(keys))
    if config.method != "files":
        cold = _cold_pairs(items, config)
        pair_split = np.full(len(keys), SPLITS.index("test"), dtype=np.int8)
        pair_split[~cold] = _by_ratio(users[~cold], order_key[~cold], config.ratios)
    return Split(users, items, pair_split, edge_pair.reshape(-1))
