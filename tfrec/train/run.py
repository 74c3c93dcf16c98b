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


def _popularity_scores(prepared: Prepared):
    from tfrec.evaluate.baselines import popularity_score_fn, popularity_scores

    _, items = prepared.split.pairs("train")
    return popularity_score_fn(popularity_scores(items, prepared.num_items))


def train(schema: str, config: Config, run_dir: str, progress: bool = True,
          log=lambda line: print(line, flush=True)) -> RunResult:
    """Stages:
      1. claim the run folder (refuse another schema/config; resume the same one);
      2. prepare: tables -> GraphData -> split -> text embeddings -> model inputs;
      3. fit (the GNN, or MF: the same model without message passing) or count popularity;
      4. evaluate the best model on valid, test and the cold-start slice of test;
      5. write metrics.json, the TensorBoard HParams record and embedding projector.
    """
    import resource

    run = RunDir(run_dir)
    run.claim(schema, config)
    start = time.perf_counter()
    prepared = prepare(schema, config, progress)
    info = {"kind": config.model.kind}
    trains = config.model.kind != "popularity"
    if trains:
        from tfrec.train.fit import embeddings, fit

        trained, report = fit(prepared, config, run, progress, log)
        user_emb, item_emb, item_bias = embeddings(trained)
        scores = embedding_score_fn(user_emb, item_emb, item_bias)
        info.update(dataclasses.asdict(report))
    else:
        scores = _popularity_scores(prepared)
    metrics = evaluate(scores, prepared, config.eval.ks)
    info["train_seconds"] = round(time.perf_counter() - start, 1)
    info["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if 0 < info.get("epochs_run", 0) == info["resumed_from"] and (earlier := run.read_metrics()):
        info = earlier["info"]  # a finished run, re-run: its figures are those of its training
    if trains:
        from tfrec.train.tensorboard import Board

        board = Board(run.logs)
        board.hparams(config.to_dict(), {f"test/{k}": v for k, v in metrics["test"].items()
                                         if not k.startswith("num_")})
        item_set = prepared.data.schema.item_set
        titles = item_titles(prepared)
        board.projector(item_emb, titles if titles is not None else
                        list(prepared.data.node_ids[item_set]))
    run.write_metrics({**metrics, "info": info})
    return RunResult(metrics, info)


def item_titles(prepared: Prepared) -> list[str] | None:
    """The first text feature of the items (their title), if any."""
    schema = prepared.data.schema
    for node_set, feature in schema.text_features:
        if node_set == schema.item_set:
            return [str(t) for t in prepared.data.node_features[node_set][feature]]
    return None


def evaluate_run(run_dir: str, progress: bool = False) -> dict:
    """Re-computes the metrics of a finished run from its best checkpoint."""
    run = RunDir(run_dir)
    schema, config = run.schema_and_config()
    prepared = prepare(schema, config, progress)
    if config.model.kind == "popularity":
        scores = _popularity_scores(prepared)
    else:
        from tfrec.train.fit import build, embeddings, restore_best

        trained = build(prepared, config)
        restore_best(trained, run)
        scores = embedding_score_fn(*embeddings(trained))
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
