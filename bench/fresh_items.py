"""Why items first trained in an update are not recommended, and what the shipped recency prior
([fresh], tfrec.train.recency_prior) does for them: one update's runs of `bench/freshness.py`,
no training here.

Run: TF_USE_LEGACY_KERAS=1 .venv/bin/python bench/fresh_items.py --out /tmp/tfrec-freshness
         [--update 1] [--runs warm scratch]
"First trained" items are those with training pairs at this update but none at the previous
point (as bench/freshness.py). Per run (its best checkpoint):
  diagnosis  their training pairs (median), learned item bias and mean score against the
             other trained items'; their share of the training pairs and of the validation
             pairs; the median rank (among the candidates of full ranking, each user's training
             items excluded) of their validation and test pairs against the others';
  prior      what `tfrec train --warm-start` now does at the end of a run (tfrec.train.
             recency_prior.fit_prior, then the run's [blend] chosen again on top, as
             tfrec.train.run does): score + w * log(1 + n_i) + v * new_i, n_i the item's
             training pairs the update added to the previous point's run's (read from its split
             files), new_i 1 for the first-trained items, (w, v) of the config's [fresh] grids
             chosen on VALID; then valid and test NDCG@20 and the Recall@20 of the first-trained
             and cold (no training pair) test pairs, without and with the prior. A run trained
             before the prior shipped is scored here as if it had one (the model is the same:
             the prior comes after training).
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def diagnose(out: Path, update: int, how: str) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    import freshness as fb

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
    prior_and_blend(out, update, how, r, mask)


def prior_and_blend(out: Path, update: int, how: str, restored, first: np.ndarray) -> None:
    """Valid/test NDCG@20 and first-trained/cold test Recall@20 of the run as trained (its
    blend refitted) and with the recency prior chosen on valid (then the blend refitted)."""
    from tfrec.evaluate.harness import evaluate
    from tfrec.evaluate.metrics import filter_targets, full_ranking_metrics
    from tfrec.evaluate.scoring import embedding_score_fn
    from tfrec.train.blend import fit_blend
    from tfrec.train.recency_prior import fit_prior, with_prior
    from tfrec.train.run_dir import RunDir

    p, config = restored.prepared, restored.config
    user, item, bias = restored.embeddings()
    previous = out / (f"run{update - 1}-warm" if update > 1 else "run0-scratch")
    prior, report = fit_prior(p, config, RunDir(previous), embedding_score_fn(user, item, bias),
                              log=lambda line: print(f"  {line}"))
    counts = np.bincount(p.split.pairs("train")[1], minlength=p.num_items)
    cold = counts == 0
    truth = p.csr("test")
    for name, b in (("as trained", bias), ("+ prior", with_prior(bias, prior))):
        score = embedding_score_fn(user, item, b)
        if config.blend.item_item != "off":
            blend, _ = fit_blend(p, config, score)
            score = score if blend is None else blend.score_fn(score)
        m = evaluate(score, p, (20,))
        excluded = p.csr("train", "valid")
        groups = [full_ranking_metrics(score, excluded, filter_targets(truth, g), (20,))[
            "recall@20"] for g in (first, cold)]
        print(f"  {how} {name:<10} valid NDCG@20 {m['valid']['ndcg@20']:.4f}  test NDCG@20 "
              f"{m['test']['ndcg@20']:.4f}  first-trained test R@20 {groups[0]:.4f} "
              f"({int(first[p.split.pairs('test')[1]].sum())})  cold test R@20 {groups[1]:.4f} "
              f"({int(cold[p.split.pairs('test')[1]].sum())})")
    chosen = report.get("chosen") or {}
    print(f"  prior chosen on valid: w {chosen.get('recency')}, v {chosen.get('newness')} "
          f"(valid NDCG@20 of the model alone {report.get('valid_model_alone')}, with the prior "
          f"{chosen.get('valid')}; {report.get('first_trained')} first-trained items, "
          f"{report.get('added_pairs')} added pairs)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="a bench/freshness.py --out folder")
    parser.add_argument("--update", type=int, default=1, choices=[1, 2])
    parser.add_argument("--runs", nargs="+", default=["warm", "scratch"])
    args = parser.parse_args()
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    sys.path.insert(0, str(ROOT))
    for how in args.runs:
        diagnose(Path(args.out), args.update, how)
    print(f"uptime: {os.popen('uptime').read().strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
