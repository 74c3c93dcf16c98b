"""`tfrec train` and `tfrec evaluate`, one orchestration function each."""

import dataclasses
import json
import time

import numpy as np

from tfrec.config import Config
from tfrec.errors import TfrecError
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

    def on_epoch(epoch, user_emb, item_emb):
        from tfrec.evaluate.metrics import full_ranking_metrics

        return full_ranking_metrics(embedding_score_fn(user_emb, item_emb), valid[1], valid[0],
                                    (20,))["ndcg@20"]

    user_emb, item_emb = train_mf(users, items, prepared.num_users, prepared.num_items, mf,
                                  eval_fn=on_epoch)
    return embedding_score_fn(user_emb, item_emb), {}


def train(schema: str, config: Config, run_dir: str, progress: bool = True,
          log=lambda line: print(line, flush=True)) -> RunResult:
    """Stages:
      1. lock and check the run folder (refuse another trainer, schema or config; resume the
         same run; damaged checkpoints are refused naming the file);
      2. prepare: tables -> GraphData -> split -> text embeddings -> model inputs;
      3. claim the run folder (run.json), now that the data is valid;
      4. fit (GNN) or compute the baseline (popularity, MF);
      5. evaluate the best model on valid, test and the cold-start slice of test;
      6. write metrics.json, the TensorBoard HParams record and embedding projector.
    """
    with RunDir(run_dir).training(schema, config) as run:
        return _train(schema, config, run, progress, log)


def _train(schema: str, config: Config, run: RunDir, progress: bool, log) -> RunResult:
    import resource

    start = time.perf_counter()
    prepared = prepare(schema, config, progress)
    _check_validation_split(prepared, config)
    run.claim(schema, config)
    info = {"kind": config.model.kind}
    if config.model.kind == "gnn":
        from tfrec.train.fit import embeddings, fit
        from tfrec.train.tensorboard import Board

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
    if config.model.kind == "gnn":
        board = Board(run.logs)
        board.hparams(config.to_dict(), {f"test/{k}": v for k, v in metrics["test"].items()
                                         if not k.startswith("num_")})
        item_set = prepared.data.schema.item_set
        titles = item_titles(prepared)
        board.projector(item_emb, titles if titles is not None else
                        list(prepared.data.node_ids[item_set]))
    run.write_metrics({**metrics, "info": info})
    return RunResult(metrics, info)


def _check_validation_split(prepared: Prepared, config: Config) -> None:
    """Early stopping and the best checkpoint need validation pairs: refuse a split without."""
    if config.model.kind == "popularity" or len(prepared.split.pairs("valid")[0]):
        return
    total = len(prepared.split.pair_split)
    raise TfrecError(f"the validation split of {prepared.data.schema.path} is empty (0 of "
                     f"{total} interaction pairs; users with fewer than 3 pairs only train), but "
                     "training stops early on it: give it pairs (split.ratios, --ratios or "
                     "--split-dir)")


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
