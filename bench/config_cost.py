"""What one epoch of a tfrec config costs on a real schema, from a few timed steps.

Run: TF_USE_LEGACY_KERAS=1 .venv/bin/python bench/config_cost.py --schema SCHEMA \
         [--config BASE.toml] [--variant "NAME:section.key=value;section.key=value" ...] \
         [--steps 3]
Each variant (BASE plus its overrides; "base" alone when none is given) runs in its own
process, so its peak memory is its own: prepare the data and model graph -> build the
trainer -> one traced step -> `--steps` timed steps -> one validation pass (embed every user
and item, full ranking of the valid split). Seconds per epoch = steps per epoch x seconds per
step + the validation pass: EXTRAPOLATED from `--steps` steps (labelled so). Peak memory is
the process's maximum resident set. Chooses nothing about accuracy: speed only.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


def override(values: dict, assignments: str) -> dict:
    """`values` ({section: {key: value}}) with "section.key=value;..." applied; each value is
    parsed as TOML (e.g. `sample.fanouts=[5,5]`, `model.use_text=false`)."""
    import tomllib

    out = {s: dict(v) for s, v in values.items()}
    for item in filter(None, assignments.split(";")):
        name, value = item.split("=", 1)
        section, key = name.strip().split(".")
        out.setdefault(section, {})[key] = tomllib.loads(f"v = {value}")["v"]
    return out


def measure(schema: str, base: str | None, assignments: str, steps: int) -> dict:
    """Times `steps` training steps and one validation pass of one config."""
    import tomllib

    from tfrec.config import config_from_dict
    from tfrec.train.fit import Trainer
    from tfrec.train.prepare import prepare
    from tfrec.train.run_dir import RunDir

    values = tomllib.loads(open(base).read()) if base else {}
    config = config_from_dict(override(values, assignments))
    figures = {}
    clock = time.perf_counter()
    prepared = prepare(schema, config, progress=False)
    figures["prepare_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    trainer = Trainer(prepared, config, RunDir(tempfile.mkdtemp() + "/run"), False,
                      lambda line: None)
    figures["build_s"] = time.perf_counter() - clock
    figures["mode"] = trainer.mode
    times, clock = [], time.perf_counter()
    for _, losses in zip(range(steps + 1), trainer._steps(1)):
        float(losses["total"])  # waits for the step
        times.append(time.perf_counter() - clock)
        clock = time.perf_counter()
    clock = time.perf_counter()
    valid = trainer._validate()
    figures["valid_s"] = time.perf_counter() - clock
    figures["valid_ndcg@20_untrained"] = valid["ndcg@20"]
    batches = trainer.batches
    figures["first_step_s"], figures["step_s"] = times[0], float(np.mean(times[1:]))
    figures["batch"], figures["steps_per_epoch"] = batches.batch, batches.steps
    figures["examples_per_s"] = batches.batch / figures["step_s"]
    figures["epoch_s_extrapolated"] = batches.steps * figures["step_s"] + figures["valid_s"]
    figures["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", required=True)
    parser.add_argument("--config")
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME:section.key=value;section.key=value (TOML values)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.schema, args.config, args.one, args.steps)))
        return
    rows = []
    for variant in args.variant or ["base:"]:
        name, assignments = variant.split(":", 1)
        cmd = [sys.executable, __file__, "--schema", args.schema, "--steps", str(args.steps),
               "--one", assignments] + (["--config", args.config] if args.config else [])
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            print(f"   {name}: failed\n{done.stderr[-3000:]}", flush=True)
            continue
        rows.append({"name": name, "set": assignments,
                     **json.loads(done.stdout.strip().splitlines()[-1])})
        print("   " + json.dumps(rows[-1]), flush=True)
    print(f"\n{args.schema}, base {args.config or 'defaults'}; {args.steps} timed steps after a "
          "traced one; s/epoch EXTRAPOLATED (steps x s/step + one validation pass)")
    print(f"{'variant':<14}{'mode':>8}{'batch':>7}{'steps':>6}{'step s':>8}{'ex/s':>8}"
          f"{'valid s':>8}{'s/epoch*':>9}{'peak GiB':>9}{'1st step s':>11}")
    for r in rows:
        print(f"{r['name']:<14}{r['mode']:>8}{r['batch']:>7}{r['steps_per_epoch']:>6}"
              f"{r['step_s']:>8.2f}{r['examples_per_s']:>8.0f}{r['valid_s']:>8.1f}"
              f"{r['epoch_s_extrapolated']:>9.0f}{r['peak_mib'] / 1024:>9.2f}"
              f"{r['first_step_s']:>11.1f}")


if __name__ == "__main__":
    main()
