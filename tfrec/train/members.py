"""An ensemble of K trainings of one model ([model] members = K): member 0 is the run itself,
member k (1 <= k < K) is the same config with train.seed + k, trained into RUN/members/k/.

The ensemble's score is the mean of the members' retrieval scores:
    s(u, i) = 1/K sum_k (user_k[u] . item_k[i] + bias_k[i])
            = [user_1 ... user_K][u] / K . [item_1 ... item_K][i] + mean_k bias_k[i],
one dot product of concatenated tables (`combine`), so the blend, evaluation and the exported
SavedModel treat an ensemble as one model with K*D-wide embeddings.
"""

import dataclasses
from pathlib import Path

import numpy as np

from tfrec.config import Config
from tfrec.errors import TfrecError
from tfrec.train.run_dir import RunDir

__all__ = ["check_members", "combine", "fit_members", "member_config", "member_run",
           "restore_members"]

Embeddings = tuple[np.ndarray, np.ndarray, np.ndarray | None]  # user [U, D], item [I, D], bias


def member_config(config: Config, k: int) -> Config:
    """Member k's training config: train.seed + k, one member."""
    return dataclasses.replace(
        config, model=dataclasses.replace(config.model, members=1),
        train=dataclasses.replace(config.train, seed=config.train.seed + k))


def member_run(run: RunDir, k: int) -> RunDir:
    """Member k's folder (checkpoints, logs): the run itself for k = 0."""
    return run if k == 0 else RunDir(Path(run.path) / "members" / str(k))


def check_members(config: Config, warm_start: str | None) -> None:
    """Refuses what an ensemble does not support, before anything trains."""
    k = config.model.members
    if k > 1 and warm_start is not None:
        raise TfrecError(f"--warm-start starts one model from an old run's weights, but "
                         f"model.members is {k}: warm-start a run with members = 1")
    if k > 1 and config.train.strategy != "default":
        raise TfrecError(f"model.members = {k} trains its members one after another on one "
                         f"device, but train.strategy is {config.train.strategy!r}: set it to "
                         "\"default\"")
    if k > 1 and config.text.mode == "finetune":
        raise TfrecError(f"model.members = {k} would fine-tune one shared text encoder in turn "
                         "for every member: set text.mode to \"frozen\" or members = 1")


def combine(members: list[Embeddings]) -> Embeddings:
    """K members' (user [U, D_k], item [I, D_k], bias [I] or None) -> the ensemble's
    (user [U, sum D_k] / K, item [I, sum D_k], mean bias [I] or None): its dot products are
    the mean of the members' scores (module doc)."""
    if len(members) == 1:
        return members[0]
    k = np.float32(len(members))
    user = np.concatenate([np.asarray(m[0], np.float32) for m in members], axis=1) / k
    item = np.concatenate([np.asarray(m[1], np.float32) for m in members], axis=1)
    biases = [m[2] for m in members if m[2] is not None]
    bias = None if not biases else (np.sum(biases, axis=0, dtype=np.float32) / k)
    return user.astype(np.float32), item, bias


def fit_members(prepared, config: Config, run: RunDir, first: Embeddings, progress: bool,
                log) -> tuple[Embeddings, list[dict]]:
    """Trains members 1 .. K-1 (each resumes from its folder) after member 0 (`first`, its
    embeddings); returns (the ensemble's embeddings, each later member's fit report)."""
    from tfrec.train.fit import embeddings, fit

    out, reports = [first], []
    for k in range(1, config.model.members):
        member = member_config(config, k)
        log(f"member {k + 1} of {config.model.members} (train.seed {member.train.seed}): "
            f"{member_run(run, k).path}")
        trained, report = fit(prepared, member, member_run(run, k), progress, log)
        out.append(embeddings(trained))
        reports.append(dataclasses.asdict(report))
    return combine(out), reports


def restore_members(prepared, config: Config, run: RunDir) -> list:
    """The best checkpoints of members 1 .. K-1 (tfrec.train.fit.Trained each)."""
    from tfrec.train.fit import build, restore_best

    out = []
    for k in range(1, config.model.members):
        trained = build(prepared, member_config(config, k))
        restore_best(trained, member_run(run, k))
        out.append(trained)
    return out
