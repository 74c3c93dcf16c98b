"""Where the time of sampled training goes: a few steps of `[train] mode = "sampled"`.

Run: TF_USE_LEGACY_KERAS=1 .venv/bin/python bench/profile_sampled.py
         [--schema schemas/movielens.pbtxt] [--config configs/movielens.toml] [--steps 6]
Prints, in order: preparing the graph; building the Trainer (the sampler included); for each of
`--steps` batches the time to draw its subgraph (`SampledGraph.batch`: the sampler and the
GraphTensor built from it) and to run the training step on it, with the subgraph's sizes and the
step function's trace count (1 = compiled once, never retraced); then the means without the
first batch (the first call traces the sampler and the step).
"""

import argparse
import tempfile
import time
import tomllib

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", default="schemas/movielens.pbtxt")
    parser.add_argument("--config", default="configs/movielens.toml")
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()

    import tensorflow as tf

    from tfrec.config import config_from_dict
    from tfrec.train.fit import Trainer
    from tfrec.train.prepare import prepare
    from tfrec.train.run_dir import RunDir

    with open(args.config, "rb") as f:
        values = tomllib.load(f)
    values.setdefault("train", {}).update(mode="sampled", epochs=1)
    config = config_from_dict(values)
    clock = time.perf_counter()
    prepared = prepare(args.schema, config, progress=False)
    print(f"prepare                      {time.perf_counter() - clock:7.2f} s", flush=True)
    clock = time.perf_counter()
    trainer = Trainer(prepared, config, RunDir(tempfile.mkdtemp() + "/run"), False,
                      lambda line: None)
    print(f"Trainer (sampler built)      {time.perf_counter() - clock:7.2f} s", flush=True)
    times = []
    for s, (u, i, y) in zip(range(args.steps), trainer.batches.epoch(1)):
        clock = time.perf_counter()
        view = trainer.graphs.batch(u, i)
        sample = time.perf_counter() - clock
        candidates = trainer.objective.candidates(view)
        clock = time.perf_counter()
        losses = trainer.step(view.graph, tf.constant(view.users), tf.constant(view.items),
                              tf.constant(y), tf.zeros([0], tf.int32), tf.constant(candidates),
                              tf.constant(view.item_rows))
        float(losses["total"])
        step = time.perf_counter() - clock
        times.append((sample, step))
        sizes = {n: int(e.total_size) for n, e in view.graph.edge_sets.items()}
        print(f"batch {s}: subgraph {sample:7.2f} s  step {step:6.2f} s  traces "
              f"{trainer.step.experimental_get_tracing_count()}  edges {sizes}", flush=True)
    if len(times) > 1:
        sample, step = np.mean(times[1:], axis=0)
        print(f"mean after the first: subgraph {sample:.2f} s, step {step:.2f} s, "
              f"{len(u) / (sample + step):.0f} examples/s")


if __name__ == "__main__":
    main()
