"""`tfrec train` and `tfrec evaluate`, one orchestration function each."""

import dataclasses
import json
import time

import numpy as np

from tfrec.config import Config
from tfrec.evaluate.baselines import embedding_score_fn
from tfrec.evaluate.harness import evaluate
from tfrec.train.prepare import Prepared, prepare
from tfrec.train.run_dir import RunDir


@dataclasses.dataclass
class RunResult:
    metrics: dict  # {"valid": {...}, "test": {...}, "test_cold": {...}}
    info: dict  # kind, best epoch, epochs run, seconds, peak memory


def _baseline_scores(prepared: Prepared, config: Config):
    users, items = prepared.split.pairs("train")
    if config.model.kind == "popularity":
        from tfrec.evaluate.baselines import popularity_score_fn, popularity_scores

        return popularity_score_fn(popularity_scores(items, prepared.num_items)), {}
    from tfrec.evaluate.baselines import MFConfig, train_mf

    mf = MFConfig(dim=config.model.dim, epochs=config.train.epochs,
                  batch_size=min(config.train.batch_size, 2048),
                  learning_rate=config.train.learning_rate, l2=config.train.weight_decay,
                  seed=config.train.seed, temperature=config.train.temperature,
                  patience=config.train.patience)
    valid = prepared.csr("valid"), prepared.csr("train")
    metric = config.eval.early_stop  # MF's best epoch is chosen on valid, like the GNN's
    k = int(metric.partition("@")[2])

    def on_epoch(epoch, user_emb, item_emb):
        from tfrec.evaluate.metrics import full_ranking_metrics

        return full_ranking_metrics(embedding_score_fn(user_emb, item_emb), valid[1], valid[0],
                                    (k,))[metric]

    user_emb, item_emb = train_mf(users, items, prepared.num_users, prepared.num_items, mf,
                                  eval_fn=on_epoch)
    return embedding_score_fn(user_emb, item_emb), {}


def train(schema: str, config: Config, run_dir: str, progress: bool = True,
          log=lambda line: print(line, flush=True)) -> RunResult:
    """Stages:
      1. claim the run folder (refuse another schema/config; resume the same one);
      2. prepare: tables -> GraphData -> split -> text embeddings -> model inputs;
      3. fit (GNN, early-stopped on the validation metric `eval.early_stop`) or compute the
         baseline (popularity, MF);
      4. evaluate the best model on valid, test and the cold-start slice of test;
      5. write metrics.json and, in RUN_DIR/logs, the HParams record (the config, ranked by the
         final model's VALIDATION metrics; test is logged beside, never declared to HParams)
         and the item embeddings for the projector (item id and display title).
    """
    import resource

    run = RunDir(run_dir)
    run.claim(schema, config)
    start = time.perf_counter()
    prepared = prepare(schema, config, progress)
    info = {"kind": config.model.kind}
    if config.model.kind == "gnn":
        from tfrec.train.fit import embeddings, fit

        trained, report = fit(prepared, config, run, progress, log)
        user_emb, item_emb, item_bias = embeddings(trained.model)
        scores = embedding_score_fn(user_emb, item_emb, item_bias)
        info.update(dataclasses.asdict(report))
    else:
        scores, _ = _baseline_scores(prepared, config)
    metrics = evaluate(scores, prepared, config.eval.ks)
    info["train_seconds"] = round(time.perf_counter() - start, 1)
    info["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if 0 < info.get("epochs_run", 0) == info["resumed_from"] and (earlier := run.read_metrics()):
        info = earlier["info"]  # a finished run, re-run: its figures are those of its training
    from tfrec.train.tensorboard import Board

    board = Board(run.logs)
    board.hparams(config, metrics, info.get("best_epoch", 0))
    if config.model.kind == "gnn":
        item_set = prepared.data.schema.item_set
        board.projector(item_emb, prepared.data.node_ids[item_set],
                        prepared.data.titles(item_set))
    run.write_metrics({**metrics, "info": info})
    return RunResult(metrics, info)


def evaluate_run(run_dir: str, progress: bool = False) -> dict:
    """Re-computes the metrics of a finished run from its best checkpoint."""
    run = RunDir(run_dir)
    schema, config = run.schema_and_config()
    prepared = prepare(schema, config, progress)
    if config.model.kind != "gnn":
        scores, _ = _baseline_scores(prepared, config)
    else:
        from tfrec.train.fit import build, embeddings, restore_best

        trained = build(prepared, config)
        restore_best(trained, run)
        scores = embedding_score_fn(*embeddings(trained.model))
    return evaluate(scores, prepared, config.eval.ks)


def format_metrics(metrics: dict, ks=(10, 20)) -> str:
    names = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg", "precision", "hit", "mrr")]
    lines = [f"{'split':<10}{'users':>7}" + "".join(f"{n:>13}" for n in names)]
    for split, values in metrics.items():
        if split == "info":
            continue
        if values["num_users"] == 0:
            why = ("no test target is an item without training interactions (hold some out "
                   "with --cold-items)" if split == "test_cold" else "no user has a target")
            lines.append(f"{split:<10}{0:>7}   {why}")
            continue
        lines.append(f"{split:<10}{values['num_users']:>7}"
                     + "".join(f"{values.get(n, np.nan):>13.4f}" for n in names))
    return "\n".join(lines)


def metrics_json(metrics: dict) -> str:
    return json.dumps({s: v for s, v in metrics.items() if s != "info"}, indent=2)
