"""The search's results from the oracle's trials: RUN_DIR/leaderboard.csv (one row per trial,
in trial order), the table printed at the end (best first) and RUN_DIR/best.toml.

Columns: trial, status ("completed", "median-stopped" or "failed"), one per searched key
(empty where the trial's conv does not use it), the validation score, best epoch, epochs run,
seconds, trainable parameters, and for a failed trial why.
"""

import csv
import dataclasses
import io
from pathlib import Path

from keras_tuner.engine.trial import TrialStatus

from tfrec.atomic import write_text_atomic
from tfrec.config import Config, SearchConfig, to_toml
from tfrec.search.space import trial_config

KEYS = SearchConfig.MODEL_KEYS + SearchConfig.TRAIN_KEYS


def _last(trial, name: str):
    return trial.metrics.get_last_value(name) if trial.metrics.exists(name) else None


def _why(message: str | None) -> str:
    """The last line of a failed trial's traceback, without the exception's module path."""
    lines = [line for line in (message or "").splitlines() if line.strip()]
    if not lines:
        return ""
    last = lines[-1]
    return last.split("FailedTrialError: ", 1)[-1]


def rows(oracle) -> list[dict]:
    """One dict per trial the oracle created, in trial order."""
    name = oracle.objective.name
    out = []
    for trial_id in sorted(oracle.trials):
        t = oracle.trials[trial_id]
        done = t.status == TrialStatus.COMPLETED
        status = {TrialStatus.COMPLETED: "completed", TrialStatus.FAILED: "failed",
                  TrialStatus.INVALID: "failed"}.get(t.status, t.status.lower())
        if done and _last(t, "median_stopped"):
            status = "median-stopped"
        row = {"trial": trial_id, "status": status}
        row.update({k: t.hyperparameters.values.get(k, "") for k in KEYS})
        row[name] = round(t.score, 6) if done and t.score is not None else ""
        for k in ("best_epoch", "epochs", "seconds", "parameters"):
            v = _last(t, k) if done else None
            row[k] = "" if v is None else (round(v, 1) if k == "seconds" else int(v))
        row["error"] = "" if done else _why(t.message)
        out.append(row)
    return out


def write_csv(path: Path, table: list[dict]) -> None:
    if not table:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(table[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    write_text_atomic(path, buffer.getvalue())


def format_table(table: list[dict], objective: str) -> str:
    """The trials as aligned text, the best validation score first, failures last."""
    def rank(row):
        return (row[objective] == "", -(row[objective] or 0.0))

    columns = ["trial", "status", *KEYS, objective, "epochs", "seconds", "parameters"]
    shown = [[str(r[c]) for c in columns] for r in sorted(table, key=rank)]
    widths = [max(len(c), *(len(r[i]) for r in shown)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in shown]
    return "\n".join(lines)


def best_config(base: Config, oracle) -> tuple[str, Config] | None:
    """(trial id, config) of the best completed trial, or None if none completed; the base's
    model.members (the trial trained one)."""
    best = [t for t in oracle.get_best_trials(1) if t.status == TrialStatus.COMPLETED]
    if not best:
        return None
    config = trial_config(base, best[0].hyperparameters.values)
    return best[0].trial_id, dataclasses.replace(config, model=dataclasses.replace(
        config.model, members=base.model.members))


def write_best(path: Path, trial_id: str, config: Config, score: float, objective: str) -> None:
    header = (f"# The best trial of `tfrec search` ({trial_id}): {objective} {score:.4f} on the "
              "VALIDATION split.\n# Train it: tfrec train --schema SCHEMA --config "
              f"{path.name}\n")
    if config.blend.item_item != "off":
        header += (f"# The search scored the model alone; the [blend] kept from the base config "
                   f"(item_item = \"{config.blend.item_item}\")\n# is refitted on valid after "
                   "training: tfrec train reports the blended score (the model alone's in "
                   "metrics.json info.blend.model_alone).\n")
    if config.model.members > 1:
        header += (f"# The search scored one training; model.members = {config.model.members} "
                   "(from the base config) trains that many and scores their mean.\n")
    write_text_atomic(path, header + to_toml(config))
