"""A model's scores blended with an item-item component (tfrec.evaluate.item_item), and the
choice of that blend on the VALIDATION split.

Both models' scores over all items are first put on one scale per user (`method`):
    "zscore": (s - mean_u) / std_u over the user's [I] scores (std 0, e.g. an empty history:
              the row becomes 0 and the other model alone ranks);
    "rank":   the item's position in the user's ascending order over (I - 1): best 1, worst 0
              (ties: the lower item row first, a stable sort);
    "max":    s / max_u |s|: the user's largest score magnitude becomes 1 (an all-zero row
              stays 0);
then  blended = (1 - weight) * norm(model) + weight * norm(history x B).
Evaluation (`Blend.score_fn`) and the exported SavedModel (tfrec.export.serving_module) compute
the same thing.
"""

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tfrec.errors import TfrecError
from tfrec.evaluate.item_item import history_scores
from tfrec.evaluate.metrics import Csr, ScoreFn

__all__ = ["METHODS", "Blend", "choose_blend", "normalize"]

METHODS = ("zscore", "rank", "max")
_EPS = 1e-12


def normalize(scores: np.ndarray, method: str) -> np.ndarray:
    """scores [B, I] -> [B, I] float32 on the per-user scale of `method` (module doc)."""
    s = np.asarray(scores, np.float32)
    if method == "zscore":
        centred = s - s.mean(axis=1, keepdims=True)
        std = np.sqrt((centred * centred).mean(axis=1, keepdims=True))
        return centred / np.maximum(std, np.float32(_EPS))
    if method == "rank":
        order = np.argsort(s, axis=1, kind="stable")
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(s.shape[1])[np.newaxis, :], axis=1)
        return ranks.astype(np.float32) / np.float32(max(s.shape[1] - 1, 1))
    if method == "max":
        return s / np.maximum(np.abs(s).max(axis=1, keepdims=True), np.float32(_EPS))
    raise TfrecError(f"unknown blend method {method!r} (known: {', '.join(METHODS)})")


@dataclasses.dataclass(frozen=True)
class Blend:
    """A chosen blend: item_item B [I, I] float32, the users' history CSR it multiplies (the
    training items, indptr [U + 1], indices [nnz]), weight in [0, 1] of the item-item part,
    the normalisation method, and the item-item model B was fitted with: its name and
    parameters, e.g. {"model": "ease", "reg": 250.0} (tfrec.evaluate.item_item)."""

    item_item: np.ndarray
    history: Csr
    weight: float
    method: str
    fit: dict

    def scores(self, base: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """base [B, I] scores of user `rows` [B] -> blended [B, I] float32."""
        other = history_scores(self.item_item, self.history, rows)
        return _mix(normalize(base, self.method), normalize(other, self.method), self.weight)

    def score_fn(self, base_fn: ScoreFn) -> ScoreFn:
        """The blended score function of the model's score function."""
        return lambda rows: self.scores(base_fn(rows), rows)

    # === Files: item_item.npy and blend.json in a folder ===

    def save(self, folder: Path) -> None:
        np.save(folder / "item_item.npy", self.item_item)
        (folder / "blend.json").write_text(json.dumps(
            {"weight": self.weight, "method": self.method, "item_item": self.fit}) + "\n")

    @classmethod
    def load(cls, folder: Path, history: Csr) -> "Blend":
        try:
            params = json.loads((folder / "blend.json").read_text())
            weights = np.load(folder / "item_item.npy")
            # blend.json files written before RP3beta hold EASE's "reg" alone
            fit = params.get("item_item") or {"model": "ease", "reg": float(params["reg"])}
            return cls(weights, history, float(params["weight"]), params["method"], fit)
        except (OSError, ValueError, KeyError) as e:
            raise TfrecError(f"the blend in {folder} is damaged or incomplete ({e}): train the "
                             "run again to refit it") from None


def _mix(a: np.ndarray, b: np.ndarray, weight: float) -> np.ndarray:
    return (np.float32(1.0 - weight) * a + np.float32(weight) * b).astype(np.float32)


def choose_blend(base_fn: ScoreFn, history: Csr, item_item: Callable[[dict], np.ndarray],
                 fits: Sequence[dict], users: np.ndarray, weights: Sequence[float],
                 methods: Sequence[str], valid_metric: Callable[[ScoreFn], float]
                 ) -> tuple[Blend | None, dict]:
    """Tries every (item-item fit, method, weight > 0) of the grid on the validation metric.

    base_fn: the model's score function; history: training CSR; item_item: fit -> B [I, I]
    fitted on that history, for each of `fits` (e.g. {"model": "ease", "reg": 250.0}:
    `ease_weights(gram(history), 250.0)`); users: the rows `valid_metric` scores (users with a
    validation target); valid_metric: score_fn -> the validation metric (higher is better; it
    must read no test data). Returns (the best blend, or None when no blend beats the model
    alone (weight 0), and a report: the model alone, the chosen point, every grid point).
    """
    users = np.asarray(users, np.int64)
    position = np.full(len(history[0]) - 1, -1, np.int64)
    position[users] = np.arange(len(users))
    base = base_fn(users)  # [V, I]: only the scored users are kept, scored once
    alone = valid_metric(lambda rows: base[position[rows]])
    best, best_value, grid = None, alone, []
    own = {method: normalize(base, method) for method in methods}
    for fit in fits:
        b = item_item(fit)
        raw = history_scores(b, history, users)
        for method in methods:
            other = normalize(raw, method)
            for weight in weights:
                if weight == 0.0:
                    continue  # the model alone
                mixed = _mix(own[method], other, weight)
                value = valid_metric(lambda rows, m=mixed: m[position[rows]])
                grid.append([fit, method, weight, round(value, 6)])
                if value > best_value:
                    best_value = value
                    best = Blend(b, history, weight, method, fit)
    report = {"valid_model_alone": round(alone, 6), "grid": grid,
              "chosen": None if best is None else
              {"item_item": best.fit, "method": best.method, "weight": best.weight,
               "valid": round(best_value, 6)}}
    return best, report
