"""The recency prior of a warm run ([fresh]): the items an update brings in, ranked as new.

An update's own interactions are few against the old ones, so the items it brings into
training (often with one training pair each) are learned as unpopular, though they are what
users turn to next. At the end of a warm run (`tfrec train --warm-start OLD`) a per-item term
is added to the retrieval score:

    prior[i] = w * log(1 + n_i) + v * new_i
      n_i    the item's training pairs that this run has and the old run's training had not
             (the pairs the update added; a pair is (user id, item id))
      new_i  1 if the item has training pairs now and had none in the old run's training

Stages (`fit_prior`):
  1. the old run's training pairs: its vocab/train_pairs.npz (written by every run), else
     its explicit split files (split.method "files"), else no prior (logged);
  2. n and new (`added_counts`); every (w, v) of fresh.recency x fresh.newness, and (0, 0),
     scored on the VALIDATION split (eval.early_stop; test is not read) (`choose_prior`);
  3. the best point, (0, 0) -- no prior -- when nothing beats it. The prior is folded into
     the item bias, so the blend ([blend], chosen after it), the run's metrics, `tfrec
     evaluate`, the exported SavedModel and the export gate all rank with it.
"""

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tfrec.evaluate.metrics import ScoreFn

__all__ = ["added_counts", "choose_prior", "fit_prior", "old_train_pairs", "prior_vector",
           "with_prior"]


def added_counts(old_users, old_items, new_users, new_items, item_ids
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(n [I] int64, new [I] bool) over `item_ids` [I] (this run's item row order).

    old_* [P_old], new_* [P_new]: the user and item ids (str) of the old run's and this run's
    training pairs (every new item id is one of item_ids). n_i = this run's pairs of item i
    absent from the old run's pairs; new_i = item i has pairs now and none in the old run's."""
    old_u, old_i, new_u, new_i = (np.asarray(x).astype(str) for x in (old_users, old_items,
                                                                      new_users, new_items))
    users = np.unique(np.concatenate([old_u, new_u]), return_inverse=True)[1]
    items, codes = np.unique(np.concatenate([old_i, new_i]), return_inverse=True)
    keys = users.astype(np.int64) * len(items) + codes  # one int per (user, item) pair
    added = ~np.isin(keys[len(old_u):], keys[:len(old_u)])
    ids = np.asarray(item_ids).astype(str)
    order = np.argsort(ids)
    rows = order[np.searchsorted(ids, new_i, sorter=order)]  # [P_new] this run's item rows
    n = np.bincount(rows[added], minlength=len(ids)).astype(np.int64)
    now = np.bincount(rows, minlength=len(ids)) > 0
    before = np.isin(ids, old_i)
    return n, now & ~before


def prior_vector(n: np.ndarray, new: np.ndarray, w: float, v: float) -> np.ndarray:
    """[I] float32: w * log(1 + n) + v * new."""
    return (np.float32(w) * np.log1p(np.asarray(n, np.float32))
            + np.float32(v) * np.asarray(new, np.float32)).astype(np.float32)


def choose_prior(base_fn: ScoreFn, num_users: int, users: np.ndarray, n: np.ndarray,
                 new: np.ndarray,
                 recency: Sequence[float], newness: Sequence[float],
                 valid_metric: Callable[[ScoreFn], float]) -> tuple[tuple[float, float], dict]:
    """Tries (0, 0) and every (w, v) of recency x newness on the validation metric.

    base_fn: the model's score function (rows [B] -> [B, I]) over num_users user rows;
    users: the rows valid_metric
    scores (users with a validation target), scored once; valid_metric: score_fn -> the
    validation metric (higher is better; it must read no test data). Returns ((w, v), a
    report: the model alone, every grid point, the chosen one); (0.0, 0.0) unless a point
    beats the model alone (the first best point in grid order on ties)."""
    users = np.asarray(users, np.int64)
    position = np.full(num_users, -1, np.int64)
    position[users] = np.arange(len(users))
    base = base_fn(users)  # [V, I]

    def metric(w, v):
        scored = base + prior_vector(n, new, w, v)[None, :]
        return valid_metric(lambda rows: scored[position[rows]])

    alone = metric(0.0, 0.0)
    best, best_value, grid = (0.0, 0.0), alone, []
    for w in recency:
        for v in newness:
            if (w, v) == (0.0, 0.0):
                continue
            value = metric(float(w), float(v))
            grid.append([float(w), float(v), round(value, 6)])
            if value > best_value:
                best, best_value = (float(w), float(v)), value
    return best, {"valid_model_alone": round(alone, 6), "grid": grid,
                  "chosen": {"recency": best[0], "newness": best[1],
                             "valid": round(best_value, 6)}}


def old_train_pairs(old_run) -> tuple[np.ndarray, np.ndarray] | None:
    """(user ids [P], item ids [P]) of an old run's training pairs (a RunDir), or None when it
    keeps none (a run from before vocab/train_pairs.npz, without split files)."""
    pairs = old_run.read_train_pairs()
    if pairs is not None:
        return pairs
    _, config = old_run.schema_and_config()
    path = Path(config.split.split_dir or "") / "train.tsv"
    if config.split.method != "files" or not path.is_file():
        return None
    from tfrec.data.tables import read_table

    table = read_table(path, str(path))
    return (np.asarray(table.column("user_id", "training pairs"), dtype=object).astype(str),
            np.asarray(table.column("item_id", "training pairs"), dtype=object).astype(str))


def fit_prior(prepared, config, old_run, base_fn: ScoreFn, log=lambda line: None
              ) -> tuple[np.ndarray | None, dict]:
    """(the prior [I] float32 chosen on valid, or None for none; a report for metrics.json).

    prepared: this run's data (tfrec.train.prepare.Prepared); old_run: the RunDir it was
    warm-started from; base_fn: the trained model's score function."""
    from tfrec.evaluate.harness import evaluate

    start = time.perf_counter()
    old = old_train_pairs(old_run)
    if old is None:
        log(f"fresh: {old_run.path} keeps no training pairs (vocab/train_pairs.npz or split "
            "files): no recency prior")
        return None, {"skipped": "the old run keeps no training pairs"}
    s = prepared.data.schema
    users, items = prepared.split.pairs("train")
    item_ids = prepared.data.node_ids[s.item_set]
    n, new = added_counts(*old, prepared.data.node_ids[s.user_set][users], item_ids[items],
                          item_ids)
    valid = prepared.csr("valid")
    valid_users = (valid[0][1:] > valid[0][:-1]).nonzero()[0]
    metric = config.eval.early_stop

    def valid_metric(score_fn: ScoreFn) -> float:
        return evaluate(score_fn, prepared, config.eval.ks, splits=("valid",))["valid"][metric]

    c = config.fresh
    (w, v), report = choose_prior(base_fn, prepared.num_users, valid_users, n, new,
                                  c.recency, c.newness, valid_metric)
    report = {"metric": metric, "added_pairs": int(n.sum()),
              "items_with_added_pairs": int((n > 0).sum()), "first_trained": int(new.sum()),
              **report, "seconds": round(time.perf_counter() - start, 1)}
    if (w, v) == (0.0, 0.0):
        log(f"fresh: no recency prior beats the model alone on valid {metric} "
            f"({report['valid_model_alone']:.4f})")
        return None, report
    log(f"fresh: recency prior w {w:g} x log(1 + added pairs) + v {v:g} x first trained "
        f"({int(new.sum())} items, {int(n.sum())} added pairs): valid {metric} "
        f"{report['chosen']['valid']:.4f} (model alone {report['valid_model_alone']:.4f})")
    return prior_vector(n, new, w, v), report


def with_prior(item_bias: np.ndarray | None, prior: np.ndarray | None) -> np.ndarray | None:
    """The item bias [I] with the prior [I] added (either may be None: no term)."""
    if prior is None:
        return item_bias
    return prior if item_bias is None else (np.asarray(item_bias, np.float32) + prior)
