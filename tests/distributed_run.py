"""A few training steps of the Trainer on the planted graph under train.strategy values, in
a process of their own (logical devices and clusters must be set before TensorFlow starts),
for tests/test_train_distribute.py.

    python tests/distributed_run.py FOLDER OUT STRATEGY[,STRATEGY...] [--cpus N]
        [--workers W --ps P] [--init CKPT]

FOLDER: the planted tables (test_model_planted.planted); --cpus: logical CPU devices;
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
    a = p.parse_args(argv)
    if a.cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * a.cpus)
    servers = start_cluster(a.workers, a.ps) if a.workers else []  # noqa: F841 (kept alive)
    from tfrec.train.distribute import make_strategy

    for strategy in a.strategies.split(","):  # multi_worker must join before any op
        make_strategy(strategy, SHARD_BYTES)
    for strategy in a.strategies.split(","):
        run(a.folder, a.out / strategy, strategy, a.init)


def config(folder: Path, strategy: str):
    from tfrec.config import config_from_dict

    train = {**CONFIG["train"], "strategy": strategy, "shard_bytes": SHARD_BYTES}
    return config_from_dict({**CONFIG, "train": train, "split": {
        "method": "files", "split_dir": str(folder / "splits")}})


def run(folder: Path, out: Path, strategy: str, init: Path | None) -> None:
    from tfrec.train.fit import Trainer, embeddings
    from tfrec.train.prepare import prepare
    from tfrec.train.run_dir import RunDir

    prepared = prepare(str(folder / "schema.pbtxt"), config(folder, strategy), progress=False)
    out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(prepared, config(folder, strategy), RunDir(out / "run"), False,
                      lambda line: None)
    model = tf.train.Checkpoint(model=trainer.trained.model)
    if init and init.with_suffix(".index").exists():
        model.read(str(init)).assert_existing_objects_matched()
    elif init:
        model.write(str(init))
    losses = [{k: float(v) for k, v in step.items()}
              for epoch in range(1, EPOCHS + 1) for step in trainer._steps(epoch)]
    user, item, _ = embeddings(trainer.trained)
    np.savez(out / "embeddings.npz", user=user, item=item)
    model.write(str(out / "trained"))
    shards = {name: len(getattr(e.ids.embeddings, "variables", [None]))
              for name, e in trainer.trained.model.encoders.items()}
    (out / "result.json").write_text(json.dumps({"losses": losses, "shards": shards,
                                                 "replicas": trainer.replicas}))


if __name__ == "__main__":
    main(sys.argv[1:])
