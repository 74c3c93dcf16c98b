"""A few training steps of the Trainer on the planted graph under train.strategy values, in
a process of their own (logical devices and clusters must be set before TensorFlow starts),
for tests/test_train_distribute.py.

    python tests/distributed_run.py FOLDER OUT STRATEGY[,STRATEGY...] [--cpus N]
        [--workers W --ps P] [--init CKPT] [--sampled] [--optimizer NAME]

FOLDER: the planted tables (test_model_planted.planted); --cpus: logical CPU devices;
--optimizer: train.optimizer (default "sgd", see CONFIG); --sampled: train.mode "sampled", fan-outs above every degree (every edge within 2 hops is
drawn: the subgraph of a set of pairs does not depend on the draws); STRATEGY "shares": one
device taking the steps of --cpus replicas, each on the subgraph of its share of the batch
(the steps a sampled mirrored run must take);
--workers/--ps: an in-process cluster on loopback (tf.distribute.Server per task, TF_CONFIG
naming this process the chief); --init: a checkpoint of the model to start from (written
there by the first run if it is missing). Writes, for each STRATEGY, in OUT/STRATEGY:
result.json ({"losses": per step {name: value}, "shards": shards of each ID table,
"replicas"}), embeddings.npz (user, item after training) and the trained model's checkpoint
"trained".
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

EPOCHS = 3  # of 2 steps
SHARD_BYTES = 1024  # cuts the user and item tables ([40 | 46, 16] float32) in 2 over 2 ps
# SGD, not Adam: Adam's updates hardly change when every gradient is scaled, so only SGD
# shows a wrongly reduced loss (without the 1 / R scaling, mirrored step 2's loss is off 1.3%)
CONFIG = {"model": {"dim": 16, "layers": 2}, "text": {"mode": "off"},
          "train": {"epochs": EPOCHS, "batch_size": 200, "chunk": 100, "optimizer": "sgd",
                    "learning_rate": 0.5, "schedule": "constant",
                    "weight_decay": 0.01, "patience": 40, "ranking_weight": 0.0}}
EVERY_EDGE = [50, 50]  # fan-outs above every degree of the planted graph (40 at most)


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
    p.add_argument("strategies")
    p.add_argument("--cpus", type=int, default=1)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--ps", type=int, default=0)
    p.add_argument("--init", type=Path)
    p.add_argument("--sampled", action="store_true")
    p.add_argument("--optimizer", default=CONFIG["train"]["optimizer"])
    a = p.parse_args(argv)
    if a.cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * a.cpus)
    servers = start_cluster(a.workers, a.ps) if a.workers else []  # noqa: F841 (kept alive)
    from tfrec.train.distribute import make_strategy

    for strategy in a.strategies.split(","):  # multi_worker must join before any op
        if strategy != "shares":
            make_strategy(strategy, SHARD_BYTES)
    for strategy in a.strategies.split(","):
        run(a.folder, a.out / strategy, strategy, a.init, a.sampled, a.cpus, a.optimizer)


def config(folder: Path, strategy: str, sampled: bool = False, optimizer: str = "sgd"):
    from tfrec.config import config_from_dict

    train = {**CONFIG["train"], "strategy": strategy, "shard_bytes": SHARD_BYTES,
             "mode": "sampled" if sampled else "full", "optimizer": optimizer}
    return config_from_dict({**CONFIG, "train": train, "sample": {"fanouts": EVERY_EDGE},
                             "split": {"method": "files", "split_dir": str(folder / "splits")}})


def shared_steps(trainer, epoch: int, replicas: int):
    """Yields the losses of each step of `epoch` that `replicas` replicas take together, taken
    on one device: the mean of the losses of the batch's `replicas` shares, each on the
    subgraph sampled around it, and one optimizer step on the gradient of that mean."""
    model, objective = trainer.trained.model, trainer.objective
    optimizer, variables = trainer.optimizers["optimizer"], model.trainable_variables
    none = tf.zeros([0], tf.int32)
    for users, items, labels in trainer.batches.epoch(epoch):
        with tf.GradientTape() as tape:
            losses = []
            for u, i, y in zip(*(np.split(a, replicas) for a in (users, items, labels))):
                view = trainer.graphs.batch(u, i)
                e = model.embed(view.graph, training=True, fresh_items=none)
                losses.append(objective(e, view.users, view.items, y,
                                        objective.candidates(view.item_rows), view.item_rows))
            mean = {k: tf.add_n([loss[k] for loss in losses]) / replicas for k in losses[0]}
        optimizer.apply_gradients(zip(tape.gradient(mean["total"], variables), variables))
        yield mean


def run(folder: Path, out: Path, strategy: str, init: Path | None, sampled: bool,
        cpus: int, optimizer: str) -> None:
    from tfrec.train.fit import Trainer, embeddings
    from tfrec.train.prepare import prepare
    from tfrec.train.run_dir import RunDir

    name = "default" if strategy == "shares" else strategy
    conf = config(folder, name, sampled, optimizer)
    prepared = prepare(str(folder / "schema.pbtxt"), conf, progress=False)
    out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(prepared, conf, RunDir(out / "run"), False, lambda line: None)
    model = tf.train.Checkpoint(model=trainer.trained.model)
    if init and init.with_suffix(".index").exists():
        model.read(str(init)).assert_existing_objects_matched()
    elif init:
        model.write(str(init))
    steps = (lambda e: shared_steps(trainer, e, cpus)) if strategy == "shares" \
        else trainer._steps
    losses = [{k: float(v) for k, v in step.items()}
              for epoch in range(1, EPOCHS + 1) for step in steps(epoch)]
    user, item, _ = embeddings(trainer.trained)
    np.savez(out / "embeddings.npz", user=user, item=item)
    model.write(str(out / "trained"))
    shards = {name: len(getattr(e.ids.embeddings, "variables", [None]))
              for name, e in trainer.trained.model.encoders.items()}
    (out / "result.json").write_text(json.dumps({"losses": losses, "shards": shards,
                                                 "replicas": trainer.replicas}))


if __name__ == "__main__":
    main(sys.argv[1:])
