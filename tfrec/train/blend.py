"""The [blend] stage of `tfrec train`: an item-item model fitted on the training interactions,
blended with the trained model, the blend chosen on the VALIDATION split.

Stages (`fit_blend`):
  1. the item-item fits of blend.item_item: EASE for each of blend.regs (one X^T X of the
     training interactions, one inverse per reg), or RP3beta for each (alpha, beta) of
     blend.alphas x blend.betas (tfrec.evaluate.item_item);
  2. for every fit / blend.methods / blend.weights point, the validation metric
     (eval.early_stop, the one training stops on) of the blended scores
     (tfrec.evaluate.blend.choose_blend); test is not read;
  3. the best point, or the model alone when no point beats it.
"""

import time

from tfrec.config import Config
from tfrec.errors import TfrecError
from tfrec.evaluate.blend import Blend, choose_blend
from tfrec.evaluate.harness import evaluate
from tfrec.evaluate.item_item import ease_weights, gram, rp3beta_weights
from tfrec.evaluate.metrics import ScoreFn
from tfrec.train.prepare import Prepared


def check_blend_size(prepared: Prepared, config: Config) -> None:
    """Refuses, before training, a catalogue too large for the dense [I, I] item-item matrix."""
    limit = config.blend.max_items
    if config.blend.item_item != "off" and prepared.num_items > limit:
        raise TfrecError(f"blend.item_item = \"{config.blend.item_item}\" needs a dense items x "
                         f"items matrix, but {prepared.data.schema.path} has "
                         f"{prepared.num_items} items (blend.max_items = {limit}): set "
                         "blend.item_item = \"off\" or raise blend.max_items")


def fit_blend(prepared: Prepared, config: Config, base_fn: ScoreFn,
              log=lambda line: None) -> tuple[Blend | None, dict]:
    """(the blend chosen on valid, or None for the model alone; a report for metrics.json)."""
    start = time.perf_counter()
    c = config.blend
    history = prepared.csr("train")
    valid = prepared.csr("valid")
    users = (valid[0][1:] > valid[0][:-1]).nonzero()[0]

    def valid_metric(score_fn: ScoreFn) -> float:
        return evaluate(score_fn, prepared, config.eval.ks, splits=("valid",))["valid"][
            config.eval.early_stop]

    fits, item_item = _item_item(c, history, prepared.num_items)
    blend, report = choose_blend(base_fn, history, item_item, fits, users, c.weights,
                                 c.methods, valid_metric)
    metric = config.eval.early_stop
    if blend is None:
        log(f"blend: no item-item blend beats the model alone on valid {metric} "
            f"({report['valid_model_alone']:.4f}); the model ranks alone")
    else:
        fit = ", ".join(f"{k} {v:g}" for k, v in blend.fit.items() if k != "model")
        log(f"blend: item-item {blend.fit['model']} {fit}, weight {blend.weight:g}, {blend.method} "
            f"scale: valid {metric} {report['chosen']['valid']:.4f} (model alone "
            f"{report['valid_model_alone']:.4f})")
    return blend, {"item_item": c.item_item, "metric": metric, **report,
                   "seconds": round(time.perf_counter() - start, 1)}


def _item_item(c, history, num_items):
    """([fit, ...] of the grid, fit -> B [I, I]) for blend.item_item c.item_item."""
    if c.item_item == "rp3beta":
        fits = [{"model": "rp3beta", "alpha": a, "beta": b} for a in c.alphas for b in c.betas]
        return fits, lambda fit: rp3beta_weights(history, num_items, fit["alpha"], fit["beta"])
    g = gram(history, num_items)
    return [{"model": "ease", "reg": reg} for reg in c.regs], lambda fit: ease_weights(
        g, fit["reg"])
