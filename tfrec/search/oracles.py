"""The three strategies as Keras Tuner oracles, each with what a tfrec search adds: the
minute budget (no trial starts after the deadline), a progress line per finished trial (done,
failed, left, best so far), and failures that never stop the search. The oracle lives in the
single search process, or in the chief of a distributed one (workers ask it over gRPC).

The median stopping rule (Golovin et al., "Google Vizier", KDD 2017) reads the trials'
per-epoch histories the oracle keeps: `below_median`.
"""

import statistics
import time

import keras_tuner as kt
from keras_tuner.engine.trial import TrialStatus

from tfrec.config import Config
from tfrec.search.evolution import EvolutionOracle
from tfrec.search.space import hyperparameters

MEDIAN_OF = 3  # finished trials needed before the median stopping rule applies


class SearchOracle:
    """Mixin over a Keras Tuner Oracle: budget, progress, failures recorded (never fatal)."""

    deadline: float | None = None  # time.time() after which no trial starts
    log = staticmethod(print)

    def populate_space(self, trial_id):
        if self.deadline is not None and time.time() >= self.deadline:
            self.log("search: the minute budget is spent; no new trial starts")
            return {"status": TrialStatus.STOPPED, "values": None}
        return super().populate_space(trial_id)

    def end_trial(self, trial):
        super().end_trial(trial)
        self.log(progress_line(self, self.trials[trial.trial_id]))


def progress_line(oracle, trial) -> str:
    """"trial 03 completed: valid ndcg@20 0.2100 | 4 done (1 failed), 6 left | best 0.2300
    (trial 01)"."""
    name = oracle.objective.name
    ended = [oracle.trials[t] for t in oracle.end_order]
    failed = sum(t.status == TrialStatus.FAILED for t in ended)
    done = trial.status == TrialStatus.COMPLETED
    line = f"search: trial {trial.trial_id} " + (
        f"completed: {name} {trial.score:.4f}" if done else "FAILED")
    left = max(0, oracle.max_trials - len(oracle.trials))
    line += f" | {len(ended)} done ({failed} failed), {left} left"
    best = [t for t in oracle.get_best_trials(1) if t.status == TrialStatus.COMPLETED]
    if best:
        line += f" | best {best[0].score:.4f} (trial {best[0].trial_id})"
    return line


SEED_STRIDE = 100_003  # Keras Tuner seed states between two search seeds


def oracle_seed(seed: int) -> int:
    """Keras Tuner's seed for search.seed. Its oracles draw each value with the seed state and
    then add 1 to it (~13 states a trial here), so the seeds 0, 1, 2 themselves would draw from
    one shifted sequence: two searches fall in step as soon as one trial used two states more
    than the other's (a MtAlbis trial draws dropout and normalization, a LightGCN one does not),
    and repeat the same trials from then on. Seeds SEED_STRIDE states apart (~7,000 trials) do
    not; 0 is Keras Tuner's "no seed", so search.seed 0 is 1. Below 2**32 (numpy's limit)."""
    return 1 + seed * SEED_STRIDE % (2**32 - 2)


def make_oracle(config: Config, objective: str, deadline: float | None, log=print):
    """The strategy of config.search as an oracle over its space; failed trials are recorded
    and the search goes on (no limit on consecutive failures, no retries)."""
    s = config.search
    common = dict(objective=kt.Objective(objective, "max"), max_trials=s.trials,
                  hyperparameters=hyperparameters(s), allow_new_entries=False,
                  tune_new_entries=False, seed=oracle_seed(s.seed),
                  max_consecutive_failed_trials=s.trials + 1)
    if s.strategy == "evolution":
        base, extra = EvolutionOracle, dict(population=s.population, sample=s.sample)
    elif s.strategy == "bayesian":
        base, extra = kt.oracles.BayesianOptimizationOracle, dict(
            num_initial_points=min(s.population, s.trials))
    else:
        base, extra = kt.oracles.RandomSearchOracle, {}
    oracle = type(f"Search{base.__name__}", (SearchOracle, base), {})(**common, **extra)
    oracle.deadline, oracle.log = deadline, log
    return oracle


def best_so_far(history) -> dict[int, float]:
    """{epoch: best value up to it} of a trial's metric history (MetricObservations)."""
    out, best = {}, float("-inf")
    for obs in sorted(history, key=lambda o: o.step):
        best = max(best, max(obs.value) if isinstance(obs.value, list) else obs.value)
        out[int(obs.step)] = best
    return out


def below_median(score: float, epoch: int, curves: list[dict[int, float]], grace: int) -> bool:
    """Whether a trial whose best so far at `epoch` is `score` should stop: after `grace`
    epochs, with at least MEDIAN_OF finished trials, if it is below the median of their best
    so far at `epoch` (a trial that ended earlier counts with its final best)."""
    if grace == 0 or epoch <= grace or len(curves) < MEDIAN_OF:
        return False
    at = [c[max(e for e in c if e <= epoch)] for c in curves if any(e <= epoch for e in c)]
    return len(at) >= MEDIAN_OF and score < statistics.median(at)
