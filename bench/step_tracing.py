"""What the first training step of a run costs: tracing the step, and the first call (TF's graph
optimisation and the step itself), against a later step; with and without AutoGraph, with the
lean Grappler passes or TensorFlow's defaults.

Run: TF_USE_LEGACY_KERAS=1 .venv/bin/python bench/step_tracing.py
         [--schema schemas/movielens.pbtxt] [--config configs/movielens.toml] [--steps 3]
Each variant runs in a process of its own (AutoGraph caches what it converted per process):
  shipped   the Trainer's step as tfrec.train.fit builds it: traced without AutoGraph, TFRS's
            retrieval loss a nested tf.function converted by AutoGraph (tfrec.heads);
            Called with the lean Grappler options on CPU (tfrec.train.grappler);
  grappler  the shipped tf.function called with TensorFlow's default Grappler passes (how
            the step was optimised before);
  autograph the same Python step wrapped by tf.function with AutoGraph on (how every step was
            traced before; default Grappler passes), which converts the GNN, heads and Keras
            code it calls.
Per variant: preparing the tables and building the Trainer (model, optimizer slots); "trace":
`get_concrete_function` on the first batch (Python tracing only) and the ops of the traced
graph; "first call": the first run of the traced step (graph optimisation included); "step":
the mean of the next `--steps` steps; "cpu" columns: the same in process CPU seconds (all
threads; steadier than wall time on a shared machine); the step's trace count after them (1 =
never retraced); the validation pass (eager: the full graph embedded once, then numpy
ranking), first and second call; whether the variant's losses, step by step, are those of
"shipped" (bit for bit). Then the ratios shipped / autograph and shipped / grappler and the
machine load (`uptime`).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(schema: str, config_path: str, variant: str, steps: int) -> dict:
    """The figures of one variant (see the module docstring), in this process."""
    import numpy as np
    import tensorflow as tf

    from tfrec.config import load_config
    from tfrec.train.fit import Trainer
    from tfrec.train.prepare import prepare
    from tfrec.train.run_dir import RunDir

    out = {"variant": variant}
    config = load_config(config_path)
    clock = time.perf_counter()
    prepared = prepare(schema, config, False)
    out["prepare"] = time.perf_counter() - clock
    with tempfile.TemporaryDirectory() as folder:
        clock = time.perf_counter()
        trainer = Trainer(prepared, config, RunDir(folder), False, print)
        out["trainer"] = time.perf_counter() - clock
        step = {"shipped": trainer.step, "grappler": getattr(trainer.step, "function", None),
                "autograph": tf.function(trainer.step.python_function)}[variant]
        rng = np.random.default_rng(0)
        batches = trainer.graphs.epoch(trainer.batches, 1, trainer.objective)

        def inputs():
            view, labels, candidates = next(batches)
            return (view.graph, tf.convert_to_tensor(view.users),
                    tf.convert_to_tensor(view.items), tf.convert_to_tensor(labels),
                    tf.constant(trainer._fresh(view.items, rng)), candidates, view.item_rows)

        first = inputs()
        clock = time.perf_counter()
        traced = step.get_concrete_function(*first)
        out["trace"] = time.perf_counter() - clock
        out["ops"] = len(traced.graph.get_operations())
        clock, cpu = time.perf_counter(), time.process_time()
        out["losses"] = [float(step(*first)["total"])]
        out["first_call"] = time.perf_counter() - clock
        out["first_call_cpu"] = time.process_time() - cpu
        times, cpus = [], []
        for _ in range(steps):
            x = inputs()
            clock, cpu = time.perf_counter(), time.process_time()
            out["losses"].append(float(step(*x)["total"]))
            times.append(time.perf_counter() - clock)
            cpus.append(time.process_time() - cpu)
        out["step"], out["step_cpu"] = float(np.mean(times)), float(np.mean(cpus))
        out["traces"] = step.experimental_get_tracing_count()
        for name in ("validate_1", "validate_2"):
            clock = time.perf_counter()
            trainer._validate()
            out[name] = time.perf_counter() - clock
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schema", default=str(ROOT / "schemas" / "movielens.pbtxt"))
    parser.add_argument("--config", default=str(ROOT / "configs" / "movielens.toml"))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--variant", choices=["shipped", "grappler", "autograph"],
                        help="measure this variant only, printing its figures as JSON")
    args = parser.parse_args()
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    sys.path.insert(0, str(ROOT))
    if args.variant:
        print("RESULT " + json.dumps(measure(args.schema, args.config, args.variant,
                                             args.steps)), flush=True)
        return 0
    rows = []
    for variant in ("shipped", "grappler", "autograph"):
        done = subprocess.run(
            [sys.executable, __file__, "--schema", args.schema, "--config", args.config,
             "--steps", str(args.steps), "--variant", variant],
            capture_output=True, text=True, check=True)
        rows.append(json.loads(next(line for line in done.stdout.splitlines()
                                    if line.startswith("RESULT "))[7:]))
    keys = ("prepare", "trainer", "trace", "first_call", "first_call_cpu", "step", "step_cpu",
            "validate_1", "validate_2")
    print(f"{'variant':<11}" + "".join(f"{k:>15}" for k in keys)
          + f"{'ops':>7}{'traces':>8}{'same losses':>13}")
    for r in rows:
        print(f"{r['variant']:<11}" + "".join(f"{r[k]:>15.2f}" for k in keys)
              + f"{r['ops']:>7}{r['traces']:>8}{str(r['losses'] == rows[0]['losses']):>13}")
    shipped, grappler, before = rows
    print(f"shipped / grappler: first call {shipped['first_call'] / grappler['first_call']:.2f} "
          f"({shipped['first_call']:.1f} s vs {grappler['first_call']:.1f} s; cpu "
          f"{shipped['first_call_cpu']:.1f} s vs {grappler['first_call_cpu']:.1f} s), later step "
          f"{shipped['step'] / grappler['step']:.2f} (cpu {shipped['step_cpu']:.2f} s vs "
          f"{grappler['step_cpu']:.2f} s)")
    print(f"shipped / autograph: trace {shipped['trace'] / before['trace']:.2f}, first call "
          f"{shipped['first_call'] / before['first_call']:.2f}, trace + first call "
          f"{(shipped['trace'] + shipped['first_call']) / (before['trace'] + before['first_call']):.2f}"
          f" ({shipped['trace'] + shipped['first_call']:.1f} s vs "
          f"{before['trace'] + before['first_call']:.1f} s), later step "
          f"{shipped['step'] / before['step']:.2f}")
    print(f"uptime: {os.popen('uptime').read().strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
