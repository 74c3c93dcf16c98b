"""The export gate (`tfrec export --only-if-better`): a new run replaces the served model only if
it ranks the NEW run's validation split at least as well (within a margin).

Stages of `gated_export`:
  1. restore the new run at its best epoch, with its data and split (tfrec.export.from_run);
  2. its validation metrics (full ranking, training items excluded: tfrec.evaluate.harness);
  3. load the newest version under the model base (a SavedModel, as TF Serving loads it) and
     rank the same users and items through its `serving_default` signature
     (`served_score_fn`): what it would answer in production;
  4. print both figures; if new >= old - margin, export the new version, else write nothing
     and exit GATE_DECLINED.
The served model can only score what it knows: a user it does not know gets no ranking (every
item -inf: 0 for that user), an item it does not know is never recommended (-inf: never a
hit), and the items it excludes as already seen are -inf too. These are exactly the answers it
would give in production, so the comparison is fair to the model as served.
"""

import dataclasses
from pathlib import Path

import numpy as np

from tfrec.errors import TfrecError
from tfrec.evaluate.harness import evaluate
from tfrec.evaluate.scoring import embedding_score_fn
from tfrec.export.from_run import artifacts_of, restore_run
from tfrec.export.versions import export_model, list_versions

__all__ = ["GATE_DECLINED", "GateResult", "gated_export", "served_score_fn"]

GATE_DECLINED = 4  # exit code of `tfrec export --only-if-better` when it declines
METRIC = "ndcg@20"


@dataclasses.dataclass(frozen=True)
class GateResult:
    """new, old: the METRIC of the new run and of the served version on the new run's
    validation split (old None when nothing is served); path: the exported version or None."""

    new: float
    old: float | None
    served_version: int | None
    margin: float
    path: Path | None = None

    @property
    def passed(self) -> bool:
        return self.old is None or self.new >= self.old - self.margin


def served_score_fn(saved_model, user_ids: np.ndarray, item_ids: np.ndarray,
                    batch_size: int = 256):
    """A score_fn (user rows [B] -> [B, I] float32) ranking the given users [U] and items [I]
    (ids as str) through a loaded SavedModel's serving_default: each user's top-k over every
    item it knows (k = its item count) is scattered into the item columns; unknown users (the
    signature refuses them) and items, and the items it excludes as seen, score -inf."""
    import tensorflow as tf

    column = {i: c for c, i in enumerate(np.asarray(item_ids).astype(str))}
    users = np.asarray(user_ids).astype(str)
    k = tf.constant(len(saved_model.item_ids.numpy()), tf.int32)
    recommend = saved_model.signatures["serving_default"]

    def answer(batch: np.ndarray):
        """item ids [B, k], scores [B, k] of the users `batch` [B], or None for unknown ones."""
        try:
            result = recommend(user_id=tf.constant(batch), k=k)
            return list(zip(result["item_ids"].numpy().astype(str), result["scores"].numpy()))
        except tf.errors.InvalidArgumentError:  # an unknown user id in the batch
            if len(batch) == 1:
                return [None]
            return [a for user in batch for a in answer(np.array([user]))]

    def score(rows):
        out = np.full((len(rows), len(column)), -np.inf, np.float32)
        for start in range(0, len(rows), batch_size):
            part = rows[start:start + batch_size]
            for r, got in enumerate(answer(users[part]), start):
                if got is None:
                    continue
                cols = np.array([column.get(i, -1) for i in got[0]])
                keep = (cols >= 0) & np.isfinite(got[1])
                out[r, cols[keep]] = got[1][keep]
        return out

    return score


def _load_served(path: Path):
    import tensorflow as tf

    try:
        import tensorflow_text  # noqa: F401  (registers the ops of an item_text signature)
    except ImportError:
        pass
    try:
        return tf.saved_model.load(str(path))
    except Exception as e:  # noqa: BLE001  (TF raises parse, not-found and op errors alike)
        reason = (getattr(e, "message", None) or str(e)).strip().splitlines()[0][:120]
        raise TfrecError(f"the served version {path} cannot be loaded ({reason}); remove it "
                         "or export without --only-if-better") from None


def gated_export(run_dir: str, model_base: str, margin: float = 0.0,
                 version: int | None = None, log=print) -> GateResult:
    """Runs the stages of the module docstring; exports only if the gate passes."""
    if margin < 0:
        raise TfrecError(f"--margin must be >= 0, got {margin}")
    restored = restore_run(run_dir)
    prepared, ks = restored.prepared, restored.config.eval.ks
    if not len(prepared.split.pairs("valid")[0]):
        raise TfrecError(f"run {run_dir} has an empty validation split, so the gate has "
                         "nothing to compare on")
    from tfrec.train.fit import embeddings

    new = evaluate(embedding_score_fn(*embeddings(restored.trained)), prepared, ks,
                   splits=("valid",))["valid"][METRIC]
    served = list_versions(model_base)
    old = None
    if served:
        s = prepared.data.schema
        score = served_score_fn(_load_served(Path(model_base) / str(served[-1])),
                                prepared.data.node_ids[s.user_set],
                                prepared.data.node_ids[s.item_set])
        old = evaluate(score, prepared, ks, splits=("valid",))["valid"][METRIC]
        log(f"valid {METRIC} on {run_dir}'s validation split: served version {served[-1]} "
            f"{old:.4f}, new run {new:.4f} (margin {margin})")
    else:
        log(f"valid {METRIC} of the new run {new:.4f}; nothing is served under {model_base} yet")
    result = GateResult(new, old, served[-1] if served else None, margin)
    if not result.passed:
        return result
    path = export_model(artifacts_of(restored), model_base, version=version)
    return dataclasses.replace(result, path=path)
