"""Why items first trained in an update are not recommended, and what a recency prior does for
them: a diagnosis of one update's runs of `bench/freshness.py` (no training here).

Run: TF_USE_LEGACY_KERAS=1 .venv/bin/python bench/fresh_items.py --out /tmp/tfrec-freshness
         [--update 1] [--runs warm scratch] [--weights 0 0.05 0.1 0.2 0.3 0.5 1]
"First trained" items are those with training pairs at this update but none at the previous
point (as bench/freshness.py). Per run (its best checkpoint, the model alone, no blend):
  diagnosis  their training pairs (median), learned item bias and mean score against the
             other trained items'; their share of the training pairs and of the validation
             pairs; the median rank (among the candidates of full ranking, each user's training
             items excluded) of their validation and test pairs against the others';
  prior      score(u, i) + w * log(1 + n_i), n_i = the item's training pairs among those the
             update added (the interactions since the last training; 0 for older items):
             a recency prior, the time-decayed popularity recommenders use for what is
             trending now. For each w: valid NDCG@20 (all pairs) and valid Recall@20 of the
             first-trained items' pairs; w is chosen on VALID (the highest NDCG@20 whose
             first-trained recall is highest among those within 1% of the best NDCG@20), and
             only the chosen w (and w = 0) are reported on test.
  newness    at the chosen w, + v * new_i (new_i = 1 for the first-trained items): an item-age
             prior for what the update brought in; v chosen on valid the same way.
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def new_pairs(out: Path, update: int) -> tuple[list[str], list[str]]:
    """The (users, items) of the training pairs update `update` added (train.tsv is in time
    order: point t's training pairs are point t - 1's followed by the added ones)."""
    def rows(t):
        lines = (out / f"point{t}" / "splits" / "train.tsv").read_text().splitlines()[1:]
        return [line.split("\t") for line in lines if line]

    added = rows(update)[len(rows(update - 1)):]
    return [r[0] for r in added], [r[1] for r in added]


def diagnose(out: Path, update: int, how: str, weights: list[float]) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    import freshness as fb

    from tfrec.evaluate.metrics import filter_targets, full_ranking_metrics
    from tfrec.evaluate.scoring import embedding_score_fn
    from tfrec.export.from_run import restore_run
    from tfrec.train.fit import embeddings

    first = fb.train_items(out / f"point{update}") - fb.train_items(out / f"point{update - 1}")
    r = restore_run(str(out / f"run{update}-{how}"))
    p = r.prepared
    ids = p.data.node_ids[p.data.schema.item_set].astype(str)
    mask = np.array([i in first for i in ids])
    user, item, bias = embeddings(r.trained)
    _, train_items = p.split.pairs("train")
    counts = np.bincount(train_items, minlength=len(ids))
    older = ~mask & (counts > 0)
    score = embedding_score_fn(user, item, bias)
    scores = score(np.arange(len(user)))  # [U, I]
    print(f"\nupdate {update}, {how} run: {int(mask.sum())} first-trained items")
    print(f"  training pairs per item: median {np.median(counts[mask]):.0f} (older trained "
          f"items {np.median(counts[older]):.0f}); share of training pairs "
          f"{counts[mask].sum() / counts.sum():.4f}")
    if bias is not None:
        print(f"  item bias: mean {bias[mask].mean():.3f} (older {bias[older].mean():.3f})")
    print(f"  mean score: {scores[:, mask].mean():.3f} (older {scores[:, older].mean():.3f})")
    seen = np.zeros(scores.shape, bool)
    seen[p.split.pairs("train")] = True
    masked = np.where(seen, -np.inf, scores)
    for split in ("valid", "test"):
        users, items = p.split.pairs(split)
        ranks = (masked[users] > masked[users, items][:, None]).sum(1)
        m = mask[items]
        print(f"  {split}: {int(m.sum())} of {len(items)} pairs ({m.mean():.4f}); median rank "
              f"{np.median(ranks[m]):.0f} (others {np.median(ranks[~m]):.0f}) of "
              f"{len(ids)} items; in a top 20: {int((ranks[m] < 20).sum())}")
    index = {i: r for r, i in enumerate(ids)}
    added = np.bincount([index[i] for i in new_pairs(out, update)[1]], minlength=len(ids))
    prior = np.log1p(added).astype(np.float32)
    new = mask.astype(np.float32)

    def figures(split: str, w: float, v: float) -> tuple[float, float]:
        """(NDCG@20 of every pair of `split`, Recall@20 of its first-trained pairs) of the
        scores with the priors, each user's earlier items excluded."""
        excluded = p.csr("train") if split == "valid" else p.csr("train", "valid")
        truth = p.csr(split)

        def with_prior(users):
            return score(users) + (w * prior + v * new)[None, :]
        return (full_ranking_metrics(with_prior, excluded, truth, (20,))["ndcg@20"],
                full_ranking_metrics(with_prior, excluded, filter_targets(truth, mask),
                                     (20,))["recall@20"])

    def choose(grid: dict) -> float:
        best = max(n for n, _ in grid.values())
        return max((k for k in grid if grid[k][0] >= 0.99 * best),
                   key=lambda k: (grid[k][1], grid[k][0]))

    grid = {w: figures("valid", w, 0.0) for w in weights}
    for w, (n, r) in grid.items():
        print(f"  prior w {w:<5} valid NDCG@20 {n:.4f}  first-trained valid R@20 {r:.4f}")
    w = choose(grid)
    news = {v: figures("valid", w, v) for v in weights}
    for v, (n, r) in news.items():
        print(f"  w {w}, newness v {v:<5} valid NDCG@20 {n:.4f}  first-trained valid R@20 "
              f"{r:.4f}")
    v = choose(news)
    for pair in sorted({(0.0, 0.0), (w, 0.0), (w, v)}):
        n, r = figures("test", *pair)
        print(f"  test, w {pair[0]}, v {pair[1]} (chosen on valid: w {w}, v {v}): NDCG@20 "
              f"{n:.4f}, first-trained R@20 {r:.4f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="a bench/freshness.py --out folder")
    parser.add_argument("--update", type=int, default=1, choices=[1, 2])
    parser.add_argument("--runs", nargs="+", default=["warm", "scratch"])
    parser.add_argument("--weights", type=float, nargs="+",
                        default=[0.0, 0.1, 0.2, 0.5, 1.0, 2.0, 3.0])
    args = parser.parse_args()
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    sys.path.insert(0, str(ROOT))
    for how in args.runs:
        diagnose(Path(args.out), args.update, how, args.weights)
    print(f"uptime: {os.popen('uptime').read().strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
