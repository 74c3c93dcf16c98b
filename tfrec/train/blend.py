"""The [blend] stage of `tfrec train`: an item-item model fitted on the training interactions,
blended with the trained model, the blend chosen on the VALIDATION split.

Stages (`fit_blend`):
  1. X^T X of the training interactions (tfrec.evaluate.item_item.gram);
  2. for every blend.regs / blend.methods / blend.weights point, the validation metric
     (eval.early_stop, the one training stops on) of the blended scores
     (tfrec.evaluate.blend.choose_blend); test is not read;
  3. the best point, or the model alone when no point beats it.
"""

import time

from tfrec.config import Config
from tfrec.errors import TfrecError
from tfrec.evaluate.blend import Blend, choose_blend
from tfrec.evaluate.harness import evaluate
from tfrec.evaluate.item_item import ease_weights, gram
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

    g = gram(history, prepared.num_items)
    blend, report = choose_blend(base_fn, history, lambda reg: ease_weights(g, reg), users,
                                 c.regs, c.weights, c.methods, valid_metric)
    metric = config.eval.early_stop
    if blend is None:
        log(f"blend: no item-item blend beats the model alone on valid {metric} "
            f"({report['valid_model_alone']:.4f}); the model ranks alone")
    else:
        log(f"blend: item-item EASE reg {blend.reg:g}, weight {blend.weight:g}, {blend.method} "
            f"scale: valid {metric} {report['chosen']['valid']:.4f} (model alone "
            f"{report['valid_model_alone']:.4f})")
    return blend, {"item_item": c.item_item, "metric": metric, **report,
                   "seconds": round(time.perf_counter() - start, 1)}
