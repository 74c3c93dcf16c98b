"""Where the time of sampled training goes: a few steps of `[train] mode = "sampled"`.

Run: TF_USE_LEGACY_KERAS=1 .venv/bin/python bench/profile_sampled.py
         [--schema schemas/movielens.pbtxt] [--config configs/movielens.toml] [--steps 6]
Prints, in order: preparing the graph; building the Trainer (the sampler included); for each of
`--steps` batches the time to draw its subgraph (`SampledGraph.batch`: the sampler and the
GraphTensor built from it) and to run the training step on it, with the subgraph's sizes and the
step function's trace count (constant after the first step = never retraced); the means
without the first batch (the first call traces the sampler and the step); then `--steps` steps
of the next epoch through the tf.data pipeline (`SampledGraph.epoch`: sampling in
Dataset.map, prefetched, so it overlaps the step).
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
        candidates = trainer.objective.candidates(view.item_rows)
        float(tf.reduce_sum(candidates))
        sample = time.perf_counter() - clock
        clock = time.perf_counter()
        losses = trainer.step(view.graph, view.users, view.items, tf.constant(y),
                              tf.zeros([0], tf.int32), candidates, view.item_rows)
        float(losses["total"])
        step = time.perf_counter() - clock
        times.append((sample, step))
        sizes = {n: int(e.total_size) for n, e in view.graph.edge_sets.items()}
        print(f"batch {s}: subgraph {sample:7.2f} s  step {step:6.2f} s  traces "
              f"{trainer.step.experimental_get_tracing_count()}  edges {sizes}", flush=True)
    sample, step = np.mean(times[1:], axis=0)
    print(f"one after another (mean after the first): subgraph {sample:.2f} s + step "
          f"{step:.2f} s = {sample + step:.2f} s a step, {len(u) / (sample + step):.0f} "
          "examples/s", flush=True)
    steps = trainer.graphs.epoch(trainer.batches, 2, trainer.objective)
    times = []
    for _ in range(args.steps):
        clock = time.perf_counter()
        view, labels, candidates = next(steps)
        losses = trainer.step(view.graph, view.users, view.items, labels,
                              tf.zeros([0], tf.int32), candidates, view.item_rows)
        float(losses["total"])
        times.append(time.perf_counter() - clock)
    steps.close()
    trainer.graphs.close()
    first, seconds = times[0], np.mean(times[1:])
    print(f"tf.data pipeline (sampling in Dataset.map, prefetched, overlapping the step): "
          f"first step {first:.2f} s (the pipeline's own trace), then {seconds:.2f} s a step, "
          f"{len(u) / seconds:.0f} examples/s; step traces "
          f"{trainer.step.experimental_get_tracing_count()}")


if __name__ == "__main__":
    main()
