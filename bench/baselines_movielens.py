"""Popularity and ID-only MF on MovieLens-100K, full-ranking Recall@20 / NDCG@20 on a random split.

Reads ml-100k.inter from the installed recbole package (install it with `pip install --no-deps
recbole==1.2.1`), treats every rating as an interaction, splits each user's items at random
80/10/10 (train/valid/test, seeded), tunes MF a little on valid (excluding train items), then
reports test metrics excluding train + valid items.

  .venv/bin/python bench/baselines_movielens.py [--seed 0] [--quick]
"""

import argparse
import importlib.resources
import itertools
import time

import numpy as np

import tfrec  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from tfrec.evaluate.baselines import (
    MFConfig,
    popularity_score_fn,
    popularity_scores,
    train_mf,
)
from tfrec.evaluate.scoring import embedding_score_fn
from tfrec.evaluate.metrics import csr_from_pairs, full_ranking_metrics

KS = (20,)


def load_ml100k() -> tuple[np.ndarray, np.ndarray, int, int]:
    """Returns (users [N], items [N], U, I): 0-based rows of the unique (user, item) pairs."""
    path = importlib.resources.files("recbole") / "dataset_example/ml-100k/ml-100k.inter"
    with path.open(encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        columns = {name.split(":")[0]: i for i, name in enumerate(header)}
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    raw_users = np.array([r[columns["user_id"]] for r in rows])
    raw_items = np.array([r[columns["item_id"]] for r in rows])
    _, users = np.unique(raw_users, return_inverse=True)
    _, items = np.unique(raw_items, return_inverse=True)
    pairs = np.unique(np.stack([users, items], axis=1), axis=0)  # one interaction per pair
    return pairs[:, 0], pairs[:, 1], int(users.max()) + 1, int(items.max()) + 1


def random_split(users: np.ndarray, items: np.ndarray, seed: int, fractions=(0.8, 0.1, 0.1)):
    """Per user, shuffles the user's items and cuts them train/valid/test by `fractions`.

    Returns three (users, items) pairs of arrays. Each part gets round(fraction * n) items of a
    user with n items (valid and test first; train keeps the rest).
    """
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(users.size), users))  # by user, random within a user
    users, items = users[order], items[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    counts = np.diff(np.r_[starts, users.size])
    position = np.arange(users.size) - np.repeat(starts, counts)  # 0..n-1 inside each user
    n = np.repeat(counts, counts)
    n_valid = np.round(n * fractions[1]).astype(int)
    n_test = np.round(n * fractions[2]).astype(int)
    part = np.where(position < n_test, 2, np.where(position < n_test + n_valid, 1, 0))
    return [(users[part == p], items[part == p]) for p in (0, 1, 2)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="one MF configuration, no grid")
    args = parser.parse_args()

    users, items, num_users, num_items = load_ml100k()
    (tr_u, tr_i), (va_u, va_i), (te_u, te_i) = random_split(users, items, args.seed)
    print(
        f"ml-100k: {num_users} users, {num_items} items, {users.size} pairs -> "
        f"train {tr_u.size}, valid {va_u.size}, test {te_u.size} (seed {args.seed})"
    )
    train_csr = csr_from_pairs(tr_u, tr_i, num_users)
    valid_csr = csr_from_pairs(va_u, va_i, num_users)
    test_csr = csr_from_pairs(te_u, te_i, num_users)
    seen_csr = csr_from_pairs(np.r_[tr_u, va_u], np.r_[tr_i, va_i], num_users)

    def evaluate(score_fn, split="test"):
        if split == "valid":
            return full_ranking_metrics(score_fn, train_csr, valid_csr, ks=KS)
        return full_ranking_metrics(score_fn, seen_csr, test_csr, ks=KS)

    rows = []
    start = time.time()
    pop = popularity_scores(tr_i, num_items)
    pop_time = time.time() - start
    rows.append(("popularity", evaluate(popularity_score_fn(pop), "valid"),
                 evaluate(popularity_score_fn(pop)), pop_time))

    if args.quick:
        grid = [MFConfig()]
    else:
        grid = [
            MFConfig(dim=64, learning_rate=lr, l2=l2, temperature=t, epochs=80, seed=args.seed)
            for lr, l2, t in itertools.product((2e-3, 5e-3), (0.05, 0.1), (0.5, 1.0))
        ]
    best = None
    for config in grid:
        history, eval_seconds = [], []

        def on_epoch(epoch, user_emb, item_emb, history=history, eval_seconds=eval_seconds):
            start = time.time()
            m = evaluate(embedding_score_fn(user_emb, item_emb), "valid")["ndcg@20"]
            history.append(m)
            eval_seconds.append(time.time() - start)
            return m

        start = time.time()
        user_emb, item_emb = train_mf(tr_u, tr_i, num_users, num_items, config, eval_fn=on_epoch)
        seconds = time.time() - start - sum(eval_seconds)  # training only, per-epoch eval excluded
        valid = evaluate(embedding_score_fn(user_emb, item_emb), "valid")
        print(
            f"  MF dim={config.dim} lr={config.learning_rate:g} l2={config.l2:g} "
            f"T={config.temperature:g}: valid NDCG@20 {valid['ndcg@20']:.4f} "
            f"(best epoch {int(np.argmax(history)) + 1}/{len(history)}, train {seconds:.1f}s)",
            flush=True,
        )
        if best is None or valid["ndcg@20"] > best[1]["ndcg@20"]:
            best = (config, valid, user_emb, item_emb, seconds, int(np.argmax(history)) + 1)
    config, valid, user_emb, item_emb, seconds, best_epoch = best
    name = (
        f"MF dim={config.dim} lr={config.learning_rate:g} l2={config.l2:g} "
        f"T={config.temperature:g} ep={best_epoch}"
    )
    rows.append((name, valid, evaluate(embedding_score_fn(user_emb, item_emb)), seconds))

    print(f"\n{'model':<44} {'val R@20':>9} {'val N@20':>9} {'test R@20':>9} "
          f"{'test N@20':>9} {'train s':>8}")
    for name, v, t, s in rows:
        print(f"{name:<44} {v['recall@20']:9.4f} {v['ndcg@20']:9.4f} {t['recall@20']:9.4f} "
              f"{t['ndcg@20']:9.4f} {s:8.1f}")
    print(
        f"(test over {rows[-1][2]['num_users']} users, ranking all {num_items} items minus each "
        "user's train + valid items; MF train s = all epochs run, per-epoch valid eval excluded)"
    )


if __name__ == "__main__":
    main()
