"""The Keras Tuner Tuner of `tfrec search`: `run_trial` trains the trial's tfrec config.

    trial values --space.trial_config--> Config --ModelInputs (cached per data-side choice)-->
    Prepared --Trainer (early stop on valid; median stop)--> best valid score, reported to the
    oracle every epoch --> HParams record of the trial (valid metrics only)
Each trial is a run folder of its own, RUN_DIR/trials/<id> (checkpoints, logs, run.json), so
a trial interrupted with the search resumes from its last epoch, and `tensorboard --logdir
RUN_DIR/trials` ranks every trial side by side on validation. The test split is never
evaluated here.
"""

import time
from pathlib import Path

import keras_tuner as kt
import numpy as np
import tensorflow as tf
from keras_tuner.engine.trial import TrialStatus

from tfrec.config import Config
from tfrec.errors import TfrecError
from tfrec.evaluate.harness import evaluate
from tfrec.evaluate.scoring import embedding_score_fn
from tfrec.model.recommender import resolved
from tfrec.search.oracles import below_median, best_so_far
from tfrec.search.space import trial_config
from tfrec.train.fit import Trainer, TrainingDiverged, embeddings
from tfrec.train.prepare import Prepared, prepare_graph, with_model_graph
from tfrec.train.run_dir import RunDir
from tfrec.train.tensorboard import Board


class ModelInputs:
    """The graph side prepared once per search (tables, split, training graph) and the model
    inputs (text embeddings, model graph) once per distinct data-side choice of the trials."""

    def __init__(self, schema: str, config: Config):
        self.schema, self.config, self.base = schema, config, None
        self.cache: dict[tuple, Prepared] = {}

    def graph(self) -> Prepared:
        """The graph side (read, checked and split on first use)."""
        if self.base is None:
            self.base = prepare_graph(self.schema, self.config)
        return self.base

    def __call__(self, config: Config) -> Prepared:
        m = resolved(config.model)
        key = (m.use_text, m.use_kg, m.use_features, m.edge_gates)
        if key not in self.cache:
            self.cache[key] = with_model_graph(self.graph(), config, progress=False)
        return self.cache[key]


class _TrialTrainer(Trainer):
    """The Trainer, reporting each epoch's best-so-far to the oracle and stopping (as early
    stopping does) when `stop(epoch, best)` says so."""

    def __init__(self, *args, stop, **kwargs):
        super().__init__(*args, **kwargs)
        self.stop, self.stopped_at = stop, 0

    def _checkpoint(self, epoch: int, score: float) -> bool:
        improved = super()._checkpoint(epoch, score)
        ckpt = self.trained.checkpoint
        if self.stop(epoch, float(ckpt.best.numpy())):
            ckpt.bad_epochs.assign(self.config.train.patience)
            self.stopped_at = epoch
        return improved


class TrialTuner(kt.Tuner):
    """One trial = one tfrec training run of the trial's config (TF_USE_LEGACY_KERAS=1)."""

    def __init__(self, oracle, inputs: ModelInputs, run_dir: Path, log=print):
        super().__init__(oracle, directory=str(run_dir), project_name="tuner", overwrite=False)
        self.inputs, self.run_dir, self.log = inputs, run_dir, log
        self.schema, self.config = inputs.schema, inputs.config

    def run_trial(self, trial, *args, **kwargs):
        name = self.oracle.objective.name
        config = trial_config(self.config, trial.hyperparameters.values)
        start = time.perf_counter()
        tf.keras.backend.clear_session()
        try:
            with RunDir(self.run_dir / "trials" / trial.trial_id).training(
                    self.schema, config) as run:
                prepared = self.inputs(config)
                run.claim(self.schema, config)
                trainer = _TrialTrainer(prepared, config, run, False,
                                        lambda line: self.log(f"  trial {trial.trial_id}: {line}"),
                                        stop=self._stopper(trial.trial_id, name))
                trained, report = trainer.fit()
                valid = evaluate(embedding_score_fn(*embeddings(trained)), prepared,
                                 config.eval.ks, splits=("valid",))
                Board(run.logs).hparams(config, valid, report.best_epoch)
        except TrainingDiverged as e:
            raise kt.errors.FailedTrialError(f"diverged: {e}") from None
        except (tf.errors.ResourceExhaustedError, MemoryError) as e:
            raise kt.errors.FailedTrialError(f"out of memory: {str(e).splitlines()[0]}") from None
        except TfrecError as e:
            raise kt.errors.FailedTrialError(f"refused: {e}") from None
        params = sum(int(np.prod(v.shape)) for v in trained.model.trainable_variables)
        metrics = {name: report.best_valid, "seconds": time.perf_counter() - start,
                   "parameters": float(params), "best_epoch": float(report.best_epoch),
                   "epochs": float(report.epochs_run), "median_stopped": float(
                       trainer.stopped_at > 0)}
        # the history already holds the objective (one value per epoch): the final extras
        # join it at the best epoch, and Keras Tuner takes the trial's score from it
        self.oracle.update_trial(trial.trial_id, metrics, step=report.best_epoch)
        return metrics

    def _stopper(self, trial_id: str, name: str):
        """stop(epoch, best so far): reports the best so far to the oracle, then applies the
        median stopping rule against the other completed trials."""
        def stop(epoch: int, best: float) -> bool:
            self.oracle.update_trial(trial_id, {name: best}, step=epoch)
            grace = self.config.search.median_stop
            if grace == 0 or epoch <= grace:
                return False
            others = [t for t in self.oracle.get_best_trials(self.oracle.max_trials)
                      if t.status == TrialStatus.COMPLETED and t.trial_id != trial_id]
            curves = [best_so_far(t.metrics.get_history(name)) for t in others]
            if below_median(best, epoch, curves, grace):
                self.log(f"  trial {trial_id}: median stop at epoch {epoch} (best {best:.4f} "
                         "is below the median of the finished trials')")
                return True
            return False

        return stop
