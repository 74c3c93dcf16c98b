"""Regularised ("ageing") evolution (Real et al., AAAI 2019) as a Keras Tuner Oracle.

    the first `population` trials: random values
    then, per trial: population = the last `population` COMPLETED trials (by end order: the
      oldest dies as each new one arrives, however good it was: ageing) -> draw `sample` of
      them at random -> the best one is the parent -> the child changes ONE of the parent's
      choices to another of its values
Failed trials never join the population. The oracle's state (trials, end order, seed state)
is Keras Tuner's own, so an interrupted search resumes with the same population.
"""

import random

import keras_tuner as kt
from keras_tuner.engine.trial import TrialStatus

from tfrec.search.space import options


class EvolutionOracle(kt.Oracle):
    def __init__(self, objective, max_trials: int, population: int, sample: int, **kwargs):
        super().__init__(objective=objective, max_trials=max_trials, **kwargs)
        self.population_size, self.sample_size = population, sample

    def population(self) -> list:
        """The last `population_size` completed trials, oldest first."""
        done = [self.trials[t] for t in self.end_order
                if self.trials[t].status == TrialStatus.COMPLETED]
        return done[-self.population_size:]

    def tournament(self, population: list, rng: random.Random):
        """The best (highest score; the first of equals) of `sample_size` trials drawn at
        random from `population`."""
        return max(rng.sample(population, self.sample_size), key=lambda t: t.score)

    def mutate(self, values: dict, rng: random.Random) -> dict:
        """`values` with one active, changeable hyperparameter set to another of its values;
        keys that the change activates take a random value, those it deactivates go."""
        hps = self.hyperparameters.copy()
        hps.values = dict(values)
        changeable = [h for h in hps.space if hps.is_active(h) and len(options(h)) > 1]
        if not changeable:
            return dict(values)
        h = rng.choice(changeable)
        hps.values[h.name] = rng.choice([v for v in options(h) if v != values[h.name]])
        out = {}
        for h in hps.space:  # in declaration order: parents before the keys they condition
            if hps.is_active(h):
                out[h.name] = hps.values[h.name] if h.name in hps.values \
                    else rng.choice(options(h))
                hps.values[h.name] = out[h.name]
        return out

    def populate_space(self, trial_id):
        rng = random.Random(self._seed_state)
        self._seed_state += 1
        population = self.population()
        values = None
        if len(population) >= self.population_size:
            for _ in range(self._max_collisions):  # a child not tried before
                child = self.mutate(self.tournament(population, rng).hyperparameters.values, rng)
                if not self._duplicate(child):
                    values = child
                    break
        values = values or self._random_values()
        if values is None:  # the space is exhausted
            return {"status": TrialStatus.STOPPED, "values": None}
        return {"status": TrialStatus.RUNNING, "values": values}
