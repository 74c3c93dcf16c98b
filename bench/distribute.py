"""Seconds per training epoch under each train.strategy that runs on one host.

Run: .venv/bin/python bench/distribute.py [--schema schemas/movielens.pbtxt] [--epochs 3]
         [--cpus 2] [--strategies default,mirrored]
--cpus splits this host's CPU into that many logical devices (MirroredStrategy's replicas
when the host has no GPU; "default" uses the first). Text is off, the rest is the default
config. Prints, per strategy, the replicas, the global batch, the steps per epoch and the
median wall time of the epochs after the first (which traces the step). With only
"default" it also runs on a checkout without train.strategy (to compare the one-device path
before and after it: PYTHONPATH=<that checkout>).
"""

import argparse
import statistics
import tempfile
import time

import tfrec  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--schema", default="schemas/movielens.pbtxt")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=1)
    parser.add_argument("--strategies", default="default,mirrored")
    args = parser.parse_args()
    if args.cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args.cpus)
    from tfrec.config import config_from_dict
    from tfrec.train.fit import Trainer
    from tfrec.train.prepare import prepare
    from tfrec.train.run_dir import RunDir

    print(f"{'strategy':<12}{'replicas':>9}{'batch':>7}{'steps':>7}{'s/epoch':>9}")
    for strategy in args.strategies.split(","):
        train = {"epochs": args.epochs} | ({} if strategy == "default" else
                                           {"strategy": strategy})
        config = config_from_dict({"text": {"mode": "off"}, "train": train})
        prepared = prepare(args.schema, config, progress=False)
        trainer = Trainer(prepared, config, RunDir(tempfile.mkdtemp()), False, print)
        seconds = []
        for epoch in range(1, args.epochs + 1):
            start = time.perf_counter()
            trainer._train_epoch(epoch, None)
            seconds.append(time.perf_counter() - start)
        replicas = getattr(trainer, "replicas", 1)
        print(f"{strategy:<12}{replicas:>9}{trainer.batches.batch:>7}"
              f"{trainer.batches.steps:>7}{statistics.median(seconds[1:] or seconds):>9.2f}")


if __name__ == "__main__":
    main()
