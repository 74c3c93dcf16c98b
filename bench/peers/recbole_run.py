"""Runs ONE RecBole model on pre-split atomic files; executed by the peers' venv python.

    python recbole_run.py SPEC_JSON  ->  last stdout line: "PEER_RESULT {json}"

SPEC: {"model", "data_path", "dataset", "work_dir", "config": {RecBole settings}, "budget":
seconds of training per grid point (then the best epoch so far is kept) or null,
"grid": [{settings}, ...] (tried in order, the best on valid NDCG@20 is kept), "dump_scores":
path or null}. Every grid point is trained with early stopping on valid; test is evaluated once,
for the chosen point. RESULT: {"valid": {metric: value}, "test": {...}, "chosen": {settings},
"grid": [[settings, valid ndcg@20], ...], "epochs_run", "best_epoch", "out_of_time",
"seconds": wall time from dataset loading to the test result}. With dump_scores, the chosen
model's full score matrix [users, items] (original ids in `users`, `items`) is saved there
(.npz) with RecBole's own test metrics, for the evaluator-agreement check. This file imports
RecBole and torch, never tfrec.
"""

import json
import logging
import sys
import time
from pathlib import Path


# What RecBole's graph-library models import, and why it is not in the peers' venv (checked
# with `pip index versions` / `pip download --only-binary :all:` on 2026-12-01).
MISSING = {
    "KGAT": ("dgl", "PyPI's newest dgl, 2.1.0, was built for the torch releases of early 2024; "
             "it is not installed beside torch 2.13 (not tried)"),
    "KGIN": ("torch_scatter", "PyPI has torch-scatter only as source (no wheel): it would have "
             "to be compiled against torch 2.13"),
}


def _importable_or_reason(model: str) -> str | None:
    """Why RecBole's `model` cannot run here (a library its code imports is missing), or None."""
    if model not in MISSING:
        return None
    module, why = MISSING[model]
    try:
        __import__(module)
    except ImportError:
        return f"RecBole's {model} imports {module}, which is missing: {why}"
    return None


class _OutOfTime(Exception):
    pass


def _with_budget(trainer, seconds: float | None):
    """Makes `trainer` raise _OutOfTime before an epoch that would start after `seconds`; the
    best epoch on valid so far stays saved (RecBole saves at every valid improvement)."""
    if not seconds:
        return
    start, train_epoch = time.time(), trainer._train_epoch

    def limited(*args, **kwargs):
        if time.time() - start > seconds:
            raise _OutOfTime
        return train_epoch(*args, **kwargs)

    trainer._train_epoch = limited


def _scores(model, dataset, config):
    """[users, items] float32 full_sort_predict scores for every user (row 0, item 0 = padding)."""
    import numpy as np
    import torch
    from recbole.data.interaction import Interaction

    uid = dataset.uid_field
    users = torch.arange(1, dataset.user_num)
    rows = []
    model.eval()
    with torch.no_grad():
        for chunk in users.split(256):
            inter = Interaction({uid: chunk}).to(config["device"])
            rows.append(model.full_sort_predict(inter).view(len(chunk), -1).cpu().numpy())
    return users.numpy(), np.concatenate(rows).astype(np.float32)


def run(spec: dict) -> dict:
    reason = _importable_or_reason(spec["model"])
    if reason:
        return {"error": reason}
    import torch

    # One thread: on a shared, oversubscribed 2-core machine torch's 2 spinning intra-op threads
    # made 40 BPR batches take 17-22 s instead of 0.5-0.7 s (measured here, 2026-12-01).
    torch.set_num_threads(1)
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    start = time.time()
    grid = spec.get("grid") or [{}]
    # RecBole's full-ranking evaluation scores eval_batch_size // items users per batch (its
    # default, 4096, is 2 MovieLens users): score up to ~4M entries per batch instead.
    spec["config"].setdefault("eval_batch_size", 1 << 22)
    config = Config(model=spec["model"], dataset=spec["dataset"],
                    config_dict={"data_path": spec["data_path"], **spec["config"], **grid[0]})
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logging.getLogger().setLevel(logging.INFO)
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    tried = []
    for i, point in enumerate(grid):
        for key, value in point.items():
            config[key] = value
        config["checkpoint_dir"] = str(Path(spec["work_dir"]) / f"saved{i}")
        init_seed(config["seed"], config["reproducibility"])
        model = get_model(config["model"])(config, train._dataset).to(config["device"])
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
        _with_budget(trainer, spec.get("budget"))
        try:
            trainer.fit(train, valid, saved=True, show_progress=False)
        except _OutOfTime:
            print(f"stopped by the {spec['budget']:.0f} s budget", flush=True)
            trainer.out_of_time = True
        result = trainer.best_valid_result
        tried.append((point, float(result["ndcg@20"]), trainer, dict(result)))
        print(f"grid {point}: valid ndcg@20 {result['ndcg@20']:.4f}", flush=True)
    point, _, trainer, valid_result = max(tried, key=lambda t: t[1])
    test_result = trainer.evaluate(test, load_best_model=True, show_progress=False)
    seconds = time.time() - start
    out = {"valid": {k: float(v) for k, v in valid_result.items()},
           "test": {k: float(v) for k, v in test_result.items()},
           "chosen": point, "grid": [[p, s] for p, s, _, _ in tried],
           "epochs_run": len(trainer.train_loss_dict),
           "best_epoch": len(trainer.train_loss_dict) - trainer.cur_step * config["eval_step"],
           "out_of_time": getattr(trainer, "out_of_time", False),
           "seconds": seconds}
    if spec.get("dump_scores"):
        import numpy as np

        users, scores = _scores(trainer.model, train._dataset, config)
        np.savez(spec["dump_scores"], scores=scores[:, 1:],
                 users=dataset.id2token(dataset.uid_field, users),
                 items=dataset.id2token(dataset.iid_field, np.arange(1, dataset.item_num)),
                 recbole_test=json.dumps(out["test"]))
    return out


if __name__ == "__main__":
    result = run(json.loads(Path(sys.argv[1]).read_text()))
    print("PEER_RESULT " + json.dumps(result), flush=True)
