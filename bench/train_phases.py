"""Where the seconds of one `tfrec train` go: a phase breakdown of `train()`.

Run: TF_USE_LEGACY_KERAS=1 .venv/bin/python bench/train_phases.py --schema SCHEMA
         --config CONFIG --run-dir NEW_RUN [--warm-start OLD_RUN] [--epochs N]
As bench/freshness.py's runs: in this process, imports first, then the clock and `train()`
(`--epochs` overrides train.epochs). Phases are timed by wrapping tfrec's functions (each
phase's own time, the phases it calls excluded):
  tables, split, graph tensor, text embeddings (the disk cache), model graph   prepare
  warm map, model build, warm weights, neighbours, objective                   before step 1
  trace      the training step's tf.function traced (`get_concrete_function`, Python only)
  first call its first run: graph optimisation (Grappler), instantiation and one step
  steps      every later step; validate, checkpoint, refresh text   per epoch (epoch 0 too)
  prior, blend, evaluate   after training; "other" is the rest of `train()`.
Each phase in wall and process CPU seconds (all threads; steadier than wall time on a shared
machine); the log lines with their clock; the first call's cost above a later step, and the
machine load (`uptime`).
"""

import argparse
import collections
import dataclasses
import importlib
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SPENT: dict[str, np.ndarray] = collections.defaultdict(lambda: np.zeros(2))  # wall, CPU
CALLS: dict[str, int] = collections.defaultdict(int)
_STACK: list[np.ndarray] = []  # (wall, CPU) seconds of the phases called by each running one


def _now() -> np.ndarray:
    return np.array([time.perf_counter(), time.process_time()])


def timed(name: str, fn):
    """`fn` adding its own wall and process CPU seconds (nested phases excluded) to
    SPENT[name]."""
    def wrapper(*args, **kwargs):
        _STACK.append(np.zeros(2))
        start = _now()
        try:
            return fn(*args, **kwargs)
        finally:
            total = _now() - start
            SPENT[name] += total - _STACK.pop()
            CALLS[name] += 1
            if _STACK:
                _STACK[-1] += total
    return wrapper


PATCHES = {  # (module, attribute) -> phase
    ("tfrec.train.prepare", "load_graph_data"): "tables",
    ("tfrec.train.prepare", "split_interactions"): "split",
    ("tfrec.train.prepare", "training_graph"): "graph tensor",
    ("tfrec.train.prepare", "node_texts"): "text embeddings",
    ("tfrec.train.prepare", "model_graph"): "model graph",
    ("tfrec.train.warm_start.WarmStart", "map"): "warm map",
    ("tfrec.train.fit", "build"): "model build",
    ("tfrec.train.warm_start.WarmStart", "apply"): "warm weights",
    ("tfrec.train.warm_start.WarmStart", "init_from_neighbours"): "neighbours",
    ("tfrec.train.fit.Objective", "__init__"): "objective",
    ("tfrec.train.fit.Trainer", "_validate"): "validate",
    ("tfrec.train.fit.Trainer", "_checkpoint"): "checkpoint",
    ("tfrec.model.recommender.GraphRecommender", "refresh_text"): "refresh text",
    ("tfrec.train.run", "fit_prior"): "prior",
    ("tfrec.train.run", "fit_blend"): "blend",
    ("tfrec.train.run", "evaluate"): "evaluate",
}


def _owner(path: str):
    """The module or class named `path` ("package.module" or "package.module.Class")."""
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError:
        module, _, cls = path.rpartition(".")
        return getattr(importlib.import_module(module), cls)


class StepClock:
    """The Trainer's step: its first call split into trace and first call, then the steps."""

    def __init__(self, step):
        self.step, self.first = step, True

    def __call__(self, *args):
        if self.first:
            self.first = False
            timed("trace", self.step.get_concrete_function)(*args)
            return timed("first call", self.step)(*args)
        return timed("steps", self.step)(*args)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schema", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--warm-start")
    parser.add_argument("--epochs", type=int)
    args = parser.parse_args()
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    from freshness import PRELOAD

    from tfrec.text._imports import import_keras_nlp

    for name in PRELOAD:
        importlib.import_module(name)
    import_keras_nlp()
    from tfrec.config import load_config
    from tfrec.train import fit
    from tfrec.train.run import train

    for (path, attr), phase in PATCHES.items():
        owner = _owner(path)
        setattr(owner, attr, timed(phase, getattr(owner, attr)))
    make_step = fit.Trainer._step_function
    fit.Trainer._step_function = lambda self: StepClock(make_step(self))
    config = load_config(args.config)
    if args.epochs:
        config = dataclasses.replace(config, train=dataclasses.replace(
            config.train, epochs=args.epochs))
    start = _now()

    def log(line):
        print(f"  {time.perf_counter() - start[0]:7.1f}s  {line}", flush=True)

    train(args.schema, config, args.run_dir, progress=False, log=log,
          warm_start=args.warm_start)
    total = _now() - start
    print(f"\n{'phase':<16}{'wall s':>9}{'CPU s':>9}{'calls':>7}")
    for phase, (wall, cpu) in SPENT.items():
        print(f"{phase:<16}{wall:>9.2f}{cpu:>9.2f}{CALLS[phase]:>7}")
    other = total - sum(SPENT.values())
    print(f"{'other':<16}{other[0]:>9.2f}{other[1]:>9.2f}")
    print(f"{'train()':<16}{total[0]:>9.2f}{total[1]:>9.2f}")
    if CALLS["steps"]:
        mean = SPENT["steps"] / CALLS["steps"]
        above = SPENT["trace"] + SPENT["first call"] - mean
        print(f"later step mean {mean[0]:.3f} s (CPU {mean[1]:.3f} s); trace + first call "
              f"above one step {above[0]:.2f} s (CPU {above[1]:.2f} s)")
    print(f"uptime: {os.popen('uptime').read().strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
