"""`tfrec train` and `tfrec evaluate`, one orchestration function each."""

import dataclasses
import time

from tfrec.config import Config
from tfrec.errors import TfrecError
from tfrec.evaluate.harness import evaluate
from tfrec.evaluate.scoring import embedding_score_fn
from tfrec.model.inputs import feature_vocabularies
from tfrec.train.blend import check_blend_size, fit_blend
from tfrec.train.members import check_members, combine, fit_members, restore_members
from tfrec.train.prepare import Prepared, prepare, prepare_graph, with_model_graph
from tfrec.train.recency_prior import fit_prior, with_prior
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
          log=lambda line: print(line, flush=True), warm_start: str | None = None) -> RunResult:
    """Stages:
      1. lock and check the run folder (refuse another trainer, schema or config; resume the
         same run; damaged checkpoints are refused naming the file); with `warm_start` (an old
         run folder), check it against the schema and config (tfrec.train.warm_start);
      2. join the cluster of train.strategy, if any (tfrec.train.distribute: before the first
         TensorFlow op), and prepare: tables -> GraphData -> split -> text embeddings -> model
         inputs; map the old run's vocabularies onto the new ones;
      3. claim the run folder (run.json, vocab/), now that the data and mapping are valid;
      4. fit (from the old run's weights with `warm_start`; the GNN, or MF: the same model
         without message passing; early-stopped on the validation metric `eval.early_stop`)
         or count popularity; with model.members = K, K - 1 more fits with other seeds into
         RUN_DIR/members/k/, scored as one (tfrec.train.members);
      5. a warm run ([fresh] prior "auto"): the recency prior of the items the update
         brought in, chosen on valid and folded into the item bias (tfrec.train.recency_prior);
         with [blend] item_item on, fit the item-item model on the training interactions and
         choose the blend on valid (tfrec.train.blend; the model alone if nothing beats it);
      6. evaluate the best model (blended) on valid, test and the cold-start slice of test;
      7. write metrics.json (the model alone's valid/test beside, under info.blend; the prior's
         grid under info.fresh), blend/, fresh/ and, in RUN_DIR/logs, the HParams record (the config, ranked by the
         final model's VALIDATION metrics; test is logged beside, never declared to HParams)
         and the item embeddings for the projector (item id and display title).
    """
    check_members(config, warm_start)
    warm = None
    if warm_start is not None:
        from tfrec.train.warm_start import WarmStart

        warm = WarmStart.open(warm_start, run_dir, schema, config)
    with RunDir(run_dir).training(schema, config) as run:
        return _train(schema, config, run, progress, log, warm)


def _train(schema: str, config: Config, run: RunDir, progress: bool, log,
           warm=None) -> RunResult:
    import resource

    start = time.perf_counter()
    distributed = config.model.kind != "popularity" and config.train.strategy != "default"
    if distributed:
        from tfrec.train.distribute import make_strategy

        make_strategy(config.train.strategy, config.train.shard_bytes)  # before any op
    base = prepare_graph(schema, config)
    _check_validation_split(base, config)  # before the text embeddings, the costly part
    prepared = with_model_graph(base, config, progress)
    features = feature_vocabularies(prepared.graph, prepared.data.schema)
    if warm is not None:
        warm.map(prepared.data.node_ids, features)
    check_blend_size(prepared, config)
    if config.model.kind != "popularity" and config.sample.examples:
        from tfrec.train.fit import sampled_files

        sampled_files(prepared, config)  # a bad folder is refused before the run is claimed
    run.claim(schema, config)
    s = prepared.data.schema
    users, items = prepared.split.pairs("train")
    run.write_vocab(prepared.data.node_ids, features, {s.user_set: users, s.item_set: items})
    info = {"kind": config.model.kind}
    prior, prior_info = None, None  # the recency prior of a warm run ([fresh])
    trains = config.model.kind != "popularity"
    if trains:
        from tfrec.train.fit import embeddings, fit

        init, fit_config = None, config
        if warm is not None:
            def init(trained, optimizer, variables):
                warm.apply(trained, optimizer, variables)
                log(warm.summary())
            fit_config = warm.training_config(config)
        trained, report = fit(prepared, fit_config, run, progress, log, init=init,
                              start_step=0 if warm is None else warm.start_step)
        user_emb, item_emb, item_bias = embeddings(trained)
        if config.model.members > 1:
            (user_emb, item_emb, item_bias), more = fit_members(
                prepared, config, run, (user_emb, item_emb, item_bias), progress, log)
            info["members"] = [dataclasses.asdict(report), *more]  # each one's fit alone
        if warm is not None and config.fresh.prior != "off":
            prior, prior_info = fit_prior(prepared, config, warm.old, embedding_score_fn(
                user_emb, item_emb, item_bias), log)
            item_bias = with_prior(item_bias, prior)
        scores = embedding_score_fn(user_emb, item_emb, item_bias)
        info.update(dataclasses.asdict(report))
    else:
        scores = _popularity_scores(prepared)
    run.write_item_prior(prior)
    blend, blend_info = None, None
    if config.blend.item_item != "off":
        blend, blend_info = fit_blend(prepared, config, scores, log)
        if blend is not None:
            alone = evaluate(scores, prepared, config.eval.ks, splits=("valid", "test"))
            blend_info["model_alone"] = {s: alone[s] for s in ("valid", "test")}
            scores = blend.score_fn(scores)
    run.write_blend(blend)
    metrics = evaluate(scores, prepared, config.eval.ks)
    if warm is not None:
        info["warm_start"] = warm.report
    info["train_seconds"] = round(time.perf_counter() - start, 1)
    info["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if 0 < info.get("epochs_run", 0) == info["resumed_from"] and (earlier := run.read_metrics()):
        info = earlier["info"]  # a finished run, re-run: its figures are those of its training
    info.pop("blend", None)
    info.pop("fresh", None)
    if blend_info is not None:
        info["blend"] = blend_info
    if prior_info is not None:
        info["fresh"] = prior_info
    from tfrec.train.tensorboard import Board

    board = Board(run.logs)
    board.hparams(config, metrics, info.get("best_epoch", 0))
    if trains:
        item_set = prepared.data.schema.item_set
        board.projector(item_emb, prepared.data.node_ids[item_set],
                        prepared.data.titles(item_set))
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


def evaluate_run(run_dir: str, progress: bool = False) -> dict:
    """Re-computes the metrics of a finished run from its best checkpoint (and its blend/)."""
    run = RunDir(run_dir)
    schema, config = run.schema_and_config()
    prepared = prepare(schema, config, progress)
    if config.model.kind == "popularity":
        scores = _popularity_scores(prepared)
    else:
        from tfrec.train.fit import build, embeddings, restore_best

        trained = build(prepared, config)
        restore_best(trained, run)
        user_emb, item_emb, item_bias = combine(
            [embeddings(t) for t in [trained, *restore_members(prepared, config, run)]])
        scores = embedding_score_fn(user_emb, item_emb,
                                    with_prior(item_bias, run.read_item_prior()))
    blend = run.read_blend(prepared.csr("train"))
    if blend is not None:
        scores = blend.score_fn(scores)
    return evaluate(scores, prepared, config.eval.ks)
