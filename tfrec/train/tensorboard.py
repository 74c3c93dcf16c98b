"""TensorBoard output of a run: one TensorBoard run per run folder, in RUN_DIR/logs/.

    per epoch      "loss/<component>", "learning_rate", "valid/<metric>"
    at the end     the config as HParams; the final model's (the best epoch's) metrics as
                   "final/valid/<metric>", "final/test/<metric>", "final/test_cold/<metric>"
    projector      the item embeddings, with item id and title columns

Every event file sits directly in that folder (training's per-epoch writer and the final
one); the HParams record and the metrics it declares (only "final/valid/*": runs are compared
and ranked on validation, never on test) are written by one writer, so
`tensorboard --logdir RUN_DIR/logs` shows one run with its metrics, and `tensorboard --logdir`
on a folder of run folders compares them side by side (each RUN_DIR/logs is one run).
"""

import dataclasses
from pathlib import Path

import numpy as np
import tensorflow as tf

FINAL = "final"


class Board:
    """The event files of one run, all under `logdir`, written by one writer."""

    def __init__(self, logdir: Path):
        self.logdir = logdir
        self.writer = tf.summary.create_file_writer(str(logdir))

    def epoch(self, epoch: int, losses: dict, learning_rate: float, valid: dict) -> None:
        with self.writer.as_default(step=epoch):
            for name, value in losses.items():
                tf.summary.scalar(f"loss/{name}", value)
            tf.summary.scalar("learning_rate", learning_rate)
            for name, value in valid.items():
                if name.startswith("num_"):
                    continue
                tf.summary.scalar(f"valid/{name}", value)
        self.writer.flush()

    def hparams(self, config, metrics: dict, step: int) -> None:
        """The run's HParams record: `config` (a tfrec Config) as hparams, and `metrics`
        ({"valid": {...}, "test": {...}, "test_cold": {...}} of the final model) as scalars
        "final/<split>/<metric>" at `step` (the best epoch). Only the validation metrics are
        declared to HParams, the early-stopping one first."""
        from tensorboard.plugins.hparams import api as hp

        hparams, values = hparam_specs(config)
        lead = config.eval.early_stop
        names = sorted((n for n in metrics["valid"] if not n.startswith("num_")),
                       key=lambda n: n != lead)
        declared = [hp.Metric(f"{FINAL}/valid/{n}", display_name=f"valid {n}",
                              description=f"validation {n} of the final model (its best epoch)",
                              dataset_type=hp.Metric.VALIDATION) for n in names]
        with self.writer.as_default(step=step):
            hp.hparams_config(hparams=hparams, metrics=declared)
            hp.hparams(values)
            for split, split_metrics in metrics.items():
                for name, value in split_metrics.items():
                    if split != "info" and not name.startswith("num_"):
                        tf.summary.scalar(f"{FINAL}/{split}/{name}", value)
        self.writer.flush()

    def projector(self, item_emb: np.ndarray, item_ids, titles) -> None:
        """Item embeddings [I, D] for the embedding projector, with metadata columns item id
        and title (a header row, then one tab-separated row per item)."""
        from tensorboard.plugins import projector

        def cell(value) -> str:  # no tab or line break inside a cell
            return " ".join(str(value).split())

        rows = ["item_id\ttitle"] + [f"{cell(i)}\t{cell(t)}" for i, t in zip(item_ids, titles)]
        (self.logdir / "metadata.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        checkpoint = tf.train.Checkpoint(item_embedding=tf.Variable(item_emb))
        checkpoint.save(str(self.logdir / "embedding.ckpt"))
        config = projector.ProjectorConfig()
        e = config.embeddings.add()
        e.tensor_name = "item_embedding/.ATTRIBUTES/VARIABLE_VALUE"
        e.metadata_path = "metadata.tsv"
        projector.visualize_embeddings(str(self.logdir), config)


def hparam_specs(config) -> tuple[list, dict]:
    """([hp.HParam], {name: value}) of every config key, named "<section>.<key>". A key's
    domain is its complete set of allowed values (choices, true/false, a range) where the
    config declares one, so no run of another value is filtered out when runs are compared."""
    from tensorboard.plugins.hparams import api as hp

    specs, values = [], {}
    for section in dataclasses.fields(config):
        part = getattr(config, section.name)
        for field in dataclasses.fields(part):
            name, value = f"{section.name}.{field.name}", getattr(part, field.name)
            if not isinstance(value, (bool, int, float, str)):
                value = str(list(value) if isinstance(value, tuple) else value)
            domain = None
            choices = field.metadata.get("choices", ())
            if choices and len({type(c) for c in choices}) == 1:
                domain = hp.Discrete(list(choices))
            elif isinstance(value, bool):
                domain = hp.Discrete([False, True])
            elif "range" in field.metadata and field.metadata["range"][1] is not None:
                low, high = field.metadata["range"][:2]
                domain = (hp.IntInterval(low, high) if isinstance(value, int)
                          else hp.RealInterval(float(low), float(high)))
            specs.append(hp.HParam(name, domain))
            values[name] = value
    return specs, values
