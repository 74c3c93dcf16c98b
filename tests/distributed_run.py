"""A few training steps of the Trainer on the planted graph under one train.strategy, in a
process of its own (logical devices and clusters must be set before TensorFlow starts), for
tests/test_train_distribute.py.

    python tests/distributed_run.py FOLDER OUT STRATEGY [--cpus N] [--workers W --ps P]
        [--init CKPT]

FOLDER: the planted tables (test_model_planted.planted); --cpus: logical CPU devices;
--workers/--ps: an in-process cluster on loopback (tf.distribute.Server per task, TF_CONFIG
naming this process the chief); --init: a checkpoint of the model to start from (else it is
written there). Writes OUT/result.json ({"losses": per step {name: value}, "shards": shards
of each ID table}), OUT/embeddings.npz (user, item after training) and the trained model's
checkpoint OUT/trained.
"""

import argparse
import json
import os
import socket
import sys
from pathlib import Path

import numpy as np

import tfrec  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf

EPOCHS = 3
CONFIG = {"model": {"dim": 16, "layers": 2}, "text": {"mode": "off"},
          "train": {"epochs": EPOCHS, "batch_size": 200, "chunk": 100, "learning_rate": 0.05,
                    "weight_decay": 0.01, "patience": 40, "ranking_weight": 0.0}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def start_cluster(workers: int, ps: int) -> list:
    """Starts `workers` worker and `ps` ps servers in this process; TF_CONFIG names this
    process the chief. Returns the servers (keep them alive)."""
    cluster = {job: [f"localhost:{_free_port()}" for _ in range(n)]
               for job, n in (("chief", 1), ("worker", workers), ("ps", ps))}
    spec = tf.train.ClusterSpec(cluster)
    # The servers share this process's inter-op thread pool (one thread per core): a remote
    # step holds a thread while it waits for the ps to answer, so with fewer threads than
    # workers + 1 the in-process cluster deadlocks (as TensorFlow's in-process cluster guide
    # warns); a real cluster runs each task in a process of its own.
    config = tf.compat.v1.ConfigProto(inter_op_parallelism_threads=workers + 1)
    servers = [tf.distribute.Server(spec, job_name=job, task_index=i, protocol="grpc",
                                    config=config)
               for job in ("worker", "ps") for i in range(len(cluster[job]))]
    os.environ["TF_CONFIG"] = json.dumps({"cluster": cluster,
                                          "task": {"type": "chief", "index": 0}})
    return servers


def main(argv) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("folder", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("strategy")
    p.add_argument("--cpus", type=int, default=1)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--ps", type=int, default=0)
    p.add_argument("--init", type=Path)
    a = p.parse_args(argv)
    if a.cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * a.cpus)
    servers = start_cluster(a.workers, a.ps) if a.workers else []  # noqa: F841 (kept alive)

    from tfrec.config import config_from_dict
    from tfrec.train.distribute import make_strategy
    from tfrec.train.fit import Trainer, embeddings
    from tfrec.train.prepare import prepare
    from tfrec.train.run_dir import RunDir

    train = {**CONFIG["train"], "strategy": a.strategy, "shard_bytes": 1024}
    make_strategy(a.strategy, train["shard_bytes"])  # before any op (multi_worker needs it)
    config = config_from_dict({**CONFIG, "train": train, "split": {
        "method": "files", "split_dir": str(a.folder / "splits")}})
    prepared = prepare(str(a.folder / "schema.pbtxt"), config, progress=False)
    a.out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(prepared, config, RunDir(a.out / "run"), False, lambda line: None)
    model = tf.train.Checkpoint(model=trainer.trained.model)
    if a.init and a.init.with_suffix(".index").exists():
        model.read(str(a.init)).assert_existing_objects_matched()
    elif a.init:
        model.write(str(a.init))
    losses = [{k: float(v) for k, v in step.items()}
              for epoch in range(1, EPOCHS + 1) for step in trainer._steps(epoch)]
    user, item, _ = embeddings(trainer.trained)
    np.savez(a.out / "embeddings.npz", user=user, item=item)
    model.write(str(a.out / "trained"))
    shards = {name: len(getattr(e.ids.embeddings, "variables", [None]))
              for name, e in trainer.trained.model.encoders.items()}
    (a.out / "result.json").write_text(json.dumps({"losses": losses, "shards": shards,
                                                   "replicas": trainer.replicas}))


if __name__ == "__main__":
    main(sys.argv[1:])
