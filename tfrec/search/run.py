"""`tfrec search`: one orchestration function, in one of three roles.

    single   (no KERASTUNER_* variables) the oracle and the trials in this process
    chief    (KERASTUNER_TUNER_ID contains "chief") serves the oracle over gRPC at
             KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT, runs no trial, then reports
    worker   (any other KERASTUNER_TUNER_ID) asks the chief for trials and runs them
"""

import dataclasses
import json
import os
import time
from pathlib import Path

from tfrec.atomic import write_text_atomic
from tfrec.config import Config, SearchConfig
from tfrec.errors import TfrecError
from tfrec.train.run_dir import RunDir


@dataclasses.dataclass
class SearchResult:
    leaderboard: list[dict]  # one row per trial (tfrec.search.leaderboard.rows)
    best_trial: str | None
    best_valid: float | None
    metrics: dict | None  # the winner's valid / test / test_cold metrics (reported once)
    seconds: float


def role() -> str:
    """"single", "chief" or "worker", from Keras Tuner's environment variables."""
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID", "")
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "single"
    if not (tuner_id and os.environ.get("KERASTUNER_ORACLE_PORT")):
        raise TfrecError("KERASTUNER_ORACLE_IP is set, so this is a distributed search, but "
                         "KERASTUNER_ORACLE_PORT or KERASTUNER_TUNER_ID is not: set all three")
    return "chief" if "chief" in tuner_id else "worker"


def _resumable(config: Config) -> Config:
    """The config a search folder records: budgets at their defaults (a resumed search may
    be given more trials or minutes, not another space or strategy)."""
    d = SearchConfig()
    return dataclasses.replace(config, search=dataclasses.replace(
        config.search, trials=d.trials, budget_minutes=d.budget_minutes))


def search(schema: str, config: Config, run_dir: str,
           log=lambda line: print(line, flush=True)) -> SearchResult | None:
    """Stages:
      1. check the space against the base config and the schema (one sentence if invalid),
         and prepare the graph side once (tables, split, training graph);
      2. lock and claim RUN_DIR (run.json: schema + config, budgets aside; a resumed search
         must match it);
      3. the oracle of search.strategy (reloaded from RUN_DIR/tuner: finished trials are not
         re-run, an interrupted one resumes from its checkpoint);
      4. trials until search.trials or budget_minutes: each trains one config early-stopped
         (and median-stopped) on the VALIDATION split, recorded as completed or failed;
      5. RUN_DIR/leaderboard.csv, the table, RUN_DIR/best.toml;
      6. the winner's valid and test metrics, computed once (its trial checkpoint is reused,
         or it is trained here if another machine ran it), in RUN_DIR/winner.json.
    A worker does stages 1, 3 and 4 only and returns None."""
    from tfrec.search.tuner import ModelInputs

    start = time.time()
    inputs = ModelInputs(schema, config)
    if role() == "worker":
        _check(config, inputs)
        _wait_for_chief(log)  # the chief claims RUN_DIR first, if it is the same folder
        _tuner(inputs, RunDir(run_dir).path, start, log).search()
        log(f"search worker {os.environ['KERASTUNER_TUNER_ID']}: no trial left")
        return None
    with RunDir(run_dir).training(schema, _resumable(config)) as run:
        _check(config, inputs)
        run.claim(schema, _resumable(config))
        if config.blend.item_item != "off":
            log(f"blend.item_item = \"{config.blend.item_item}\": every trial is scored on the "
                "model alone (the blend is refitted on a finished model, not searched); "
                "best.toml keeps [blend], so tfrec train blends the winner")
        tuner = _tuner(inputs, run.path, start, log)
        done = len(tuner.oracle.end_order)
        if done:
            log(f"resuming the search in {run.path}: {done} trials finished")
        tuner.search(verbose=0)
        return _report(schema, config, run.path, tuner.oracle, time.time() - start, log)


def _check(config: Config, inputs) -> None:
    """Prepares the graph side (bad data fails before any trial) and checks the space
    against the base config and the schema."""
    from tfrec.search.space import check_base

    check_base(config, len(inputs.graph().data.schema.text_features))


def _wait_for_chief(log) -> None:
    """Blocks until the chief's oracle accepts connections (it serves once RUN_DIR is claimed)."""
    import grpc

    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    log(f"search worker {os.environ['KERASTUNER_TUNER_ID']}: waiting for the chief at {address}")
    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result()


def _tuner(inputs, path: Path, start: float, log):
    from tfrec.search.oracles import make_oracle
    from tfrec.search.tuner import TrialTuner

    config = inputs.config
    minutes = config.search.budget_minutes
    oracle = make_oracle(config, f"valid_{config.eval.early_stop}",
                         start + 60 * minutes if minutes else None, log)
    return TrialTuner(oracle, inputs, path, log)


def _report(schema: str, config: Config, path: Path, oracle, seconds: float,
            log) -> SearchResult:
    from tfrec.search import leaderboard as lb
    from tfrec.train.run import evaluate_run, train

    table = lb.rows(oracle)
    lb.write_csv(path / "leaderboard.csv", table)
    name = oracle.objective.name
    log("\n" + lb.format_table(table, name))
    best = lb.best_config(config, oracle)
    if best is None:
        log(f"no trial completed: no best.toml (see {path / 'leaderboard.csv'})")
        return SearchResult(table, None, None, None, seconds)
    trial_id, best_cfg = best
    score = oracle.trials[trial_id].score
    lb.write_best(path / "best.toml", trial_id, best_cfg, score, name)
    trial_dir = path / "trials" / trial_id
    if (trial_dir / "checkpoints" / "best").is_dir():  # the winner's own checkpoint
        metrics = evaluate_run(str(trial_dir))
    else:  # trained on another machine: train it here
        metrics = train(schema, best_cfg, str(path / "winner"), progress=False, log=log).metrics
    write_text_atomic(path / "winner.json", json.dumps(
        {"trial": trial_id, name: score, "metrics": metrics}, indent=1))
    return SearchResult(table, trial_id, score, metrics, seconds)
