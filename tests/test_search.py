"""`tfrec search`: the evolution oracle on a hand-checked toy, the median stopping rule, the
space, and tiny searches on tests/data/tiny through the real CLI (leaderboard, best.toml round
trip, HParams, resume, a failing trial, up-front refusals, a chief with two workers)."""

import csv
import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import keras_tuner as kt
import pytest
import tensorflow as tf
from keras_tuner.engine.trial import TrialStatus

from tfrec.cli import main
from tfrec.config import Config, SearchConfig
from tfrec.search import tuner as tuner_module
from tfrec.search.evolution import EvolutionOracle
from tfrec.search.oracles import below_median, best_so_far
from tfrec.search.space import hyperparameters, trial_config
from tfrec.train.fit import TrainingDiverged

TINY = str(Path(__file__).parent / "data" / "tiny" / "schema.pbtxt")
# a small space that trains in seconds on the tiny graph: LightGCN, 1 epoch per trial
TINY_SEARCH = """
[model]
dim = 8
[text]
mode = "off"
[train]
batch_size = 4
[split]
method = "temporal"
ratios = [0.6, 0.2, 0.2]
[search]
epochs = 1
conv = ["lightgcn"]
layers = [1, 2]
dim = [8]
combine = ["mean", "last"]
use_text = [false]
use_kg = [true]
temperature = [0.3]
learning_rate = [0.01, 0.05]
"""


def toy_space() -> kt.HyperParameters:
    """conv in {lightgcn, sage}, layers in {1, 2, 3}, residual (lightgcn only); the rest fixed."""
    return hyperparameters(SearchConfig(
        conv=("lightgcn", "sage"), layers=(1, 2, 3), dim=(8,), combine=("mean",),
        dropout=(0.0,), residual=(False, True), use_text=(False,), use_kg=(True,),
        temperature=(0.3,), learning_rate=(0.01,)))


def one_step_apart(parent: dict, child: dict) -> bool:
    """Whether `child` changes exactly one choice of `parent` (a conv change also swaps the
    conditional keys: residual for lightgcn, dropout for sage)."""
    changed = {k for k in parent.keys() & child.keys() if parent[k] != child[k]}
    if "conv" in changed:
        return changed == {"conv"} and (parent.keys() ^ child.keys()) == {"residual", "dropout"}
    return len(changed) == 1 and parent.keys() == child.keys()


def test_regularised_evolution_selects_mutates_and_ages(tmp_path):
    oracle = EvolutionOracle(kt.Objective("score", "max"), max_trials=20, population=3,
                             sample=3, hyperparameters=toy_space(), seed=1)
    oracle._set_project_dir(str(tmp_path), "toy")
    oracle.verbose = 0
    trials = []

    def finish(score):  # create the next trial and end it with `score` (None: it failed)
        trial = oracle.create_trial("tuner0")
        if score is None:
            trial.status = TrialStatus.FAILED
        else:
            oracle.update_trial(trial.trial_id, {"score": score})
            trial.status = TrialStatus.COMPLETED
        oracle.end_trial(trial)
        trials.append(trial.hyperparameters.values)

    for score in (0.1, 0.5, 0.3):  # the first `population` trials are random
        finish(score)
    assert [t.trial_id for t in oracle.population()] == ["00", "01", "02"]
    # sample = population: the tournament is the whole population, so the parent is the best:
    # trial 01 (0.5). Its child (trial 03) changes one choice of it.
    finish(0.2)
    assert one_step_apart(trials[1], trials[3])
    assert [t.trial_id for t in oracle.population()] == ["01", "02", "03"]  # 00 aged out
    finish(None)  # trial 04, again a child of 01, fails: it never joins the population
    assert one_step_apart(trials[1], trials[4])
    assert [t.trial_id for t in oracle.population()] == ["01", "02", "03"]
    finish(0.0)  # trial 05, child of 01
    assert one_step_apart(trials[1], trials[5])
    # ageing: 01, still the best (0.5), is now the oldest of the last three and dies
    assert [t.trial_id for t in oracle.population()] == ["02", "03", "05"]
    finish(0.4)  # trial 06: the best left is 02 (0.3), its parent
    assert one_step_apart(trials[2], trials[6])
    assert len({json.dumps(t, sort_keys=True) for t in trials}) == len(trials)  # no repeats

    # a tournament of 2: the better of the two a same-seeded draw picks
    oracle.sample_size = 2
    population = oracle.population()
    drawn = random.Random(7).sample(population, 2)
    assert oracle.tournament(population, random.Random(7)) is max(drawn, key=lambda t: t.score)


def test_mutation_changes_one_choice_to_another_value():
    oracle = EvolutionOracle(kt.Objective("score", "max"), max_trials=5, population=2,
                             sample=1, hyperparameters=toy_space(), seed=1)
    parent = {"conv": "lightgcn", "layers": 2, "dim": 8, "combine": "mean", "residual": True,
              "use_text": False, "use_kg": True, "temperature": 0.3, "learning_rate": 0.01}
    rng = random.Random(0)
    children = [oracle.mutate(parent, rng) for _ in range(200)]
    assert all(one_step_apart(parent, c) for c in children)
    # every move is reachable: conv -> sage (residual dropped, sage's dropout fixed at 0),
    # layers -> 1 or 3, residual -> False
    moves = {(k, c.get(k)) for c in children for k in ("conv", "layers", "residual")
             if c.get(k) != parent.get(k)}
    assert moves == {("conv", "sage"), ("layers", 1), ("layers", 3), ("residual", False),
                     ("residual", None)}  # None: sage has no residual key
    assert all("dropout" in c for c in children if c["conv"] == "sage")


def test_search_seeds_are_far_apart_in_keras_tuners_seed_states():
    from tfrec.search.oracles import SEED_STRIDE, oracle_seed

    # 0 -> 1 (Keras Tuner reads 0 as no seed); 2 -> 1 + 2 * 100,003 = 200,007
    assert [oracle_seed(s) for s in (0, 1, 2)] == [1, 100_004, 200_007]
    assert SEED_STRIDE == 100_003
    # the largest search.seed still gives numpy a seed below 2**32: 1 + (2**32 - 1) * 100,003
    # mod (2**32 - 2) = 1 + 100,003 (as 2**32 - 1 = 1 mod 2**32 - 2)
    assert oracle_seed(2**32 - 1) == 100_004 < 2**32
    # the seeds 0 and 1 of a random search propose different first trials
    first = [kt.oracles.RandomSearchOracle(max_trials=1, hyperparameters=toy_space(),
                                           seed=oracle_seed(s)).populate_space("t")["values"]
             for s in (0, 1)]
    assert first[0] != first[1]


def test_median_stopping_rule_worked_example(tmp_path):
    # best so far of three finished trials; at epoch 3: 0.4, 0.2 (ended at 2), 0.6
    curves = [{1: 0.1, 2: 0.3, 3: 0.4}, {1: 0.2, 2: 0.2}, {1: 0.05, 2: 0.5, 3: 0.6}]
    assert below_median(0.39, 3, curves, grace=2)  # median 0.4
    assert not below_median(0.40, 3, curves, grace=2)  # equal is not below
    assert not below_median(0.0, 2, curves, grace=2)  # within the grace epochs
    assert not below_median(0.0, 3, curves[:2], grace=2)  # fewer than 3 finished trials
    assert not below_median(0.0, 3, curves, grace=0)  # 0 = off
    # a trial's history as the oracle keeps it: per-epoch values -> best so far
    oracle = kt.oracles.RandomSearchOracle(kt.Objective("s", "max"), max_trials=1,
                                           hyperparameters=toy_space(), seed=1)
    oracle._set_project_dir(str(tmp_path), "p")
    trial = oracle.create_trial("t")
    for epoch, value in ((1, 0.2), (2, 0.1), (3, 0.3)):
        oracle.update_trial(trial.trial_id, {"s": value}, step=epoch)
    assert best_so_far(trial.metrics.get_history("s")) == {1: 0.2, 2: 0.2, 3: 0.3}


def test_conditional_keys_and_trial_config():
    space = toy_space()
    assert space.is_active("residual")  # conv defaults to lightgcn
    space.values["conv"] = "sage"
    assert not space.is_active("residual") and space.is_active("dropout")
    base = Config()
    config = trial_config(base, {"conv": "sage", "layers": 1, "learning_rate": 0.05})
    assert (config.model.conv, config.model.layers, config.train.learning_rate) == \
        ("sage", 1, 0.05)
    assert (config.train.epochs, config.train.patience) == (base.search.epochs,
                                                           base.search.patience)
    assert config.model.residual == base.model.residual  # not searched for sage: base value


def with_keys(text: str, section: str, **values: str) -> str:
    """The TOML `text` with `values` (TOML literals) set in [section] (replacing its keys)."""
    lines = text.splitlines()
    lines = [line for line in lines if line.split(" = ")[0] not in values] \
        if f"[{section}]" in lines else lines + [f"[{section}]"]
    at = lines.index(f"[{section}]") + 1
    return "\n".join(lines[:at] + [f"{k} = {v}" for k, v in values.items()] + lines[at:]) + "\n"


@pytest.mark.parametrize("section, values, message", [
    ("search", {"conv": '["gcn"]'}, "config key search.conv lists 'gcn', but it must be one of"),
    ("search", {"use_text": "[true, false]"}, "search.use_text lists true, but text.mode is"),
    ("model", {"kind": '"mf"'}, "tfrec search searches GNN designs, but model.kind is 'mf'"),
    ("search", {"population": "2", "sample": "3"}, "config key search.sample is 3, but"),
])
def test_bad_space_is_refused_up_front(tmp_path, capsys, section, values, message):
    path, run = tmp_path / "c.toml", tmp_path / "run"
    path.write_text(with_keys(TINY_SEARCH, section, **values))
    assert main(["search", "--schema", TINY, "--config", str(path), "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not run.exists()  # nothing half-written


def read_leaderboard(run: Path) -> list[dict]:
    with open(run / "leaderboard.csv", newline="") as f:
        return list(csv.DictReader(f))


def event_tags(logdir: Path) -> set[str]:
    return {v.tag for f in logdir.glob("events.out.tfevents.*")
            for e in tf.compat.v1.train.summary_iterator(str(f)) for v in e.summary.value}


def test_search_writes_leaderboard_and_a_best_toml_that_train_repeats(tmp_path, capsys):
    config, run = tmp_path / "c.toml", tmp_path / "search"
    # the base config blends: trials are scored on the model alone, best.toml keeps [blend]
    config.write_text(TINY_SEARCH + '[blend]\nitem_item = "ease"\n')
    assert main(["search", "--schema", TINY, "--config", str(config), "--trials", "2",
                 "--strategy", "random", "--run-dir", str(run)]) == 0
    out = capsys.readouterr().out
    rows = read_leaderboard(run)
    assert [r["trial"] for r in rows] == ["0", "1"]
    assert all(r["status"] == "completed" and 0 < float(r["valid_ndcg@20"]) <= 1
               and int(r["parameters"]) > 0 and float(r["seconds"]) > 0 for r in rows)
    best = max(rows, key=lambda r: float(r["valid_ndcg@20"]))
    assert f"best: trial {best['trial']}, valid ndcg@20 {float(best['valid_ndcg@20']):.4f}" in out
    assert out.count("\ntest ") == 1  # the test split, reported once, for the winner
    assert "every trial is scored on the model alone" in out
    # every trial in HParams with its validation metrics only
    for r in rows:
        tags = event_tags(run / "trials" / r["trial"] / "logs")
        assert {"_hparams_/session_start_info", "final/valid/ndcg@20"} <= tags
        assert not any(t.startswith("final/test") for t in tags)
    # best.toml carries the winning choices, and `tfrec train --config` repeats the trial
    again = tmp_path / "again"
    assert main(["train", "--schema", TINY, "--config", str(run / "best.toml"), "--run-dir",
                 str(again), "--no-progress"]) == 0
    metrics = json.loads((again / "metrics.json").read_text())
    alone = metrics["info"]["blend"].get("model_alone", metrics)  # there if a blend was chosen
    assert alone["valid"]["ndcg@20"] == pytest.approx(float(best["valid_ndcg@20"]), abs=1e-5)
    assert metrics["valid"]["ndcg@20"] >= alone["valid"]["ndcg@20"]  # chosen on valid
    trained = json.loads((again / "run.json").read_text())["config"]
    assert trained["blend"]["item_item"] == "ease"
    assert trained["model"]["layers"] == int(best["layers"])
    assert trained["train"]["learning_rate"] == float(best["learning_rate"])


def test_interrupted_search_resumes_without_rerunning_and_records_a_failed_trial(
        tmp_path, monkeypatch):
    """Trial 1 diverges (recorded failed, the search goes on), the search is interrupted
    during trial 2; started again, only trial 2 trains."""
    config, run = tmp_path / "c.toml", tmp_path / "search"
    config.write_text(TINY_SEARCH)
    fitted, interrupt = [], [True]
    real_fit = tuner_module._TrialTrainer.fit

    def fit(self):
        trial = self.run.path.name
        fitted.append(trial)
        if trial == "1":
            raise TrainingDiverged("the training loss became nan at epoch 1, step 1")
        if trial == "2" and interrupt[0]:
            raise KeyboardInterrupt
        return real_fit(self)

    monkeypatch.setattr(tuner_module._TrialTrainer, "fit", fit)
    argv = ["search", "--schema", TINY, "--config", str(config), "--trials", "3",
            "--run-dir", str(run)]
    assert main(argv) == 130
    assert fitted == ["0", "1", "2"]
    interrupt[0] = False
    fitted.clear()
    assert main(argv) == 0
    assert fitted == ["2"]  # finished trials (completed or failed) are not re-run
    rows = read_leaderboard(run)
    assert [(r["trial"], r["status"]) for r in rows] == [
        ("0", "completed"), ("1", "failed"), ("2", "completed")]
    assert rows[1]["error"].startswith("diverged: the training loss became nan")


@pytest.mark.slow
def test_a_chief_and_two_workers_search_together(tmp_path):
    config, run = tmp_path / "c.toml", tmp_path / "search"
    config.write_text(TINY_SEARCH)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    code = "import sys; from tfrec.cli import main; sys.exit(main())"
    argv = [sys.executable, "-c", code, "search", "--schema", TINY, "--config", str(config),
            "--trials", "3", "--run-dir", str(run)]
    root = str(Path(__file__).parent.parent)
    env = {**os.environ, "PYTHONPATH": root, "KERASTUNER_ORACLE_IP": "127.0.0.1",
           "KERASTUNER_ORACLE_PORT": port}
    procs = [subprocess.Popen(argv, env={**env, "KERASTUNER_TUNER_ID": who}, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for who in ("chief", "worker0", "worker1")]
    try:
        outs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    rows = read_leaderboard(run)
    assert [(r["trial"], r["status"]) for r in rows] == [(str(i), "completed") for i in range(3)]
    assert (run / "best.toml").is_file() and "\ntest " in outs[0]
    assert "no trial left" in outs[1] and "no trial left" in outs[2]
    assert all((run / "trials" / str(i) / "checkpoints" / "best").is_dir() for i in range(3))
    ran = [out.count(" epoch   1 ") for out in outs[1:]]  # the trials each worker trained
    assert sum(ran) == 3 and min(ran) >= 1, ran


@pytest.mark.parametrize("strategy", [  # a Bayesian proposal takes ~10-30 s (scipy L-BFGS)
    "evolution", "random", pytest.param("bayesian", marks=pytest.mark.slow)])
def test_each_strategy_proposes_designs_of_the_space_and_honours_the_budgets(tmp_path,
                                                                               strategy):
    from tfrec.search.oracles import make_oracle
    from tfrec.search.space import USED_BY

    # 3 initial (random) designs, then 2 of the strategy's own
    config = Config(search=SearchConfig(strategy=strategy, trials=5, population=3, sample=2))
    oracle = make_oracle(config, "score", deadline=None, log=lambda line: None)
    oracle._set_project_dir(str(tmp_path), strategy)
    oracle.verbose = 0
    space = config.search
    for _ in range(5):
        trial = oracle.create_trial("tuner0")
        values = trial.hyperparameters.values
        for key in SearchConfig.MODEL_KEYS + SearchConfig.TRAIN_KEYS:
            used = values["conv"] in USED_BY.get(key, space.conv)
            assert (key in values) == used, (key, values)
            assert not used or values[key] in getattr(space, key)
        oracle.update_trial(trial.trial_id, {"score": values["layers"] / 10})
        trial.status = TrialStatus.COMPLETED
        oracle.end_trial(trial)
    assert oracle.create_trial("tuner0").status == TrialStatus.STOPPED  # --trials 5
    late = make_oracle(config, "score", deadline=0.0, log=lambda line: None)  # minutes spent
    late._set_project_dir(str(tmp_path), strategy + "-late")
    assert late.create_trial("tuner0").status == TrialStatus.STOPPED


def test_print_config_documents_the_space_with_the_flags_on_top(capsys):
    assert main(["search", "--schema", TINY, "--print-config", "--strategy", "random",
                 "--trials", "7", "--budget-minutes", "30"]) == 0
    out = capsys.readouterr().out
    search = out[out.index("[search]"):]
    assert 'strategy = "random"' in search and "trials = 7\n" in search
    assert "budget_minutes = 30.0  # no trial starts after this" in search
    assert 'conv = ["lightgcn", "sage", "gatv2", "mt_albis"]  # the space' in search
    assert 'normalization = ["none", "layer"]  # with mt_albis' in search
