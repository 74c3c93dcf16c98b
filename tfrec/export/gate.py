"""The export gate (`tfrec export --only-if-better`): a new run replaces the served model only if
it ranks the NEW run's validation split at least as well (within a margin).

Stages of `gated_export`:
  1. restore the new run at its best epoch, with its data and split (tfrec.export.from_run);
  2. its validation metrics (full ranking, training items excluded: tfrec.evaluate.harness);
  3. load the newest version under the model base (a SavedModel, as TF Serving loads it) and
     rank the same users and items by the retrieval score its `serving_default` ranks by
     (`served_score_fn`, from its own embeddings, bias and id tables);
  4. print both figures; if new >= old - margin, export the new version, else write nothing
     and exit GATE_DECLINED.
Both models rank the same candidates for the same users: every item of the new run but the
user's training items. The served model can only score what it knows: a user it does not know
gets no ranking (every item -inf: 0 for that user; serving_default refuses the id) and an item
it does not know is never recommended (-inf: never a hit), which is what it would answer in
production. Its own seen-item exclusion (every interaction it was exported with) is not
applied, so a validation pair it already knew is not held against it. Both sides are scored
by their retrieval scores alone: an item-item blend ([blend]) is not part of the comparison
(it would need the served model's own history remapped onto the new ids). A recency prior
([fresh], tfrec.train.recency_prior) is part of each side's item bias: the new run's as chosen
on its valid, the served version's as it was exported.
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


def served_score_fn(saved_model, user_ids: np.ndarray, item_ids: np.ndarray):
    """A score_fn (user rows [B] -> [B, I] float32) for the given users [U] and items [I] (ids
    as str) from a loaded tfrec SavedModel: the retrieval score serving_default ranks by,
    user_embeddings[u] . item_embeddings[i] + item_bias[i], with its own rows (its user id
    table, its item_ids). Unknown users and items score -inf. Its own seen-item exclusion is
    not applied: the harness excludes the new run's training items for both models."""
    import tensorflow as tf

    users = tf.raw_ops.LookupTableFindV2(
        table_handle=saved_model.user_table.resource_handle,
        keys=tf.constant(np.asarray(user_ids).astype(str).astype(object)),
        default_value=tf.constant(-1, tf.int64)).numpy()
    served = {i: r for r, i in enumerate(saved_model.item_ids.numpy().astype(str))}
    items = np.array([served.get(i, -1) for i in np.asarray(item_ids).astype(str)])
    user_emb = saved_model.user_embeddings.numpy()
    item_emb = saved_model.item_embeddings.numpy()[np.maximum(items, 0)]  # [I, D]
    bias = np.where(items >= 0, saved_model.item_bias.numpy()[np.maximum(items, 0)], -np.inf)
    dense = embedding_score_fn(user_emb, item_emb, bias.astype(np.float32))

    def score(rows):
        rows = users[rows]
        out = dense(np.maximum(rows, 0))
        out[rows < 0] = -np.inf
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
    new = evaluate(embedding_score_fn(*restored.embeddings()), prepared, ks,
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
