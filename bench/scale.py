"""Full-graph vs sampled training cost on synthetic e-commerce graphs of growing size.

Run: TF_USE_LEGACY_KERAS=1 .venv/bin/python bench/scale.py [--sizes 1e5,1e6] [--steps 5]
         [--modes full,sampled] [--fanouts 10,10,5] [--batch 8192] [--out /tmp/tfrec-scale]
Each size is the e-commerce generator (tfrec.data.ecommerce) scaled up: its catalogue with
items = interactions / 50 (2,000 to 20,000) and users drawn 1,000 at a time from the same
catalogue until about `size` interactions, knowledge graph included (brands, categories,
materials, uses); written once to --out/<size>/ with a copy of schemas/ecommerce.pbtxt.
Each (size, mode) runs in its own process (so peak memory is its own) with the built-in
defaults except text.mode "off" (no MiniLM: graph cost only), `--batch` and `--fanouts`:
prepare the graph, build the trainer, then
  sampled: draw 3 subgraphs directly (the sampling time), then run `--steps` steps through the
           prefetched tf.data pipeline after a first, traced one;
  full:    run `--steps` full-graph steps after a first, traced one.
Seconds per epoch = steps per epoch x measured seconds per step: EXTRAPOLATED from `--steps`
steps (labelled so), training only (no validation pass). Peak memory is the process's maximum
resident set. Prints one table; sampled cost per step should stay flat as the graph grows
(bounded by batch x fan-outs), so its epoch grows linearly with the interactions.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
USERS_PER_DRAW = 1000


def generate(out: Path, size: int, seed: int = 0) -> Path:
    """Writes a scaled-up e-commerce catalogue of about `size` interactions to `out`, streamed
    (each draw of users is appended to users.tsv and interactions.tsv, so memory holds one
    draw); returns its schema file (written last: its presence marks a complete folder)."""
    from tfrec.data import ecommerce

    schema = out / "schema.pbtxt"
    if schema.is_file():
        return schema
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ecommerce.NUM_ITEMS = min(20_000, max(2000, size // 50))
    entities, item_entity, entity_entity, items, facts, sizes = ecommerce._catalogue(rng)
    ecommerce.write_tables(out, entities, item_entity, entity_entity, items, [], [])
    ecommerce.NUM_USERS = USERS_PER_DRAW
    users = interactions = 0
    while interactions < size:  # users in draws of 1,000 from the same catalogue
        drawn_users, drawn = ecommerce._interactions(rng, facts, sizes)
        rename = {u[0]: f"U{users + k:08d}" for k, u in enumerate(drawn_users)}
        ecommerce.append_rows(out / "users.tsv", ((rename[u[0]], *u[1:]) for u in drawn_users))
        ecommerce.append_rows(out / "interactions.tsv",
                              ((rename[r[0]], *r[1:]) for r in drawn))
        users, interactions = users + len(drawn_users), interactions + len(drawn)
    text = (ROOT / "schemas/ecommerce.pbtxt").read_text().replace("tfrec:ecommerce/", "")
    schema.write_text(text)
    return schema


def measure(schema: str, mode: str, steps: int, fanouts: list[int], batch: int) -> dict:
    """Trains `steps` steps of `mode` on the graph of `schema`; returns the figures."""
    import tensorflow as tf

    from tfrec.config import config_from_dict
    from tfrec.train.fit import Trainer
    from tfrec.train.prepare import prepare
    from tfrec.train.run_dir import RunDir

    config = config_from_dict({"text": {"mode": "off"}, "sample": {"fanouts": fanouts},
                               "train": {"mode": mode, "batch_size": batch, "chunk": 1024}})
    figures = {"mode": mode}
    clock = time.perf_counter()
    prepared = prepare(schema, config, progress=False)
    figures["prepare_s"] = time.perf_counter() - clock
    graph = prepared.model_graph
    figures["interactions"] = int(graph.edge_sets[prepared.data.schema.interactions].total_size)
    figures["edges"] = sum(int(e.total_size) for e in graph.edge_sets.values())
    clock = time.perf_counter()
    trainer = Trainer(prepared, config, RunDir(tempfile.mkdtemp() + "/run"), False,
                      lambda line: None)
    figures["build_s"] = time.perf_counter() - clock
    batches = trainer.batches
    if mode == "sampled":
        draws = []
        for k, (u, i, _) in zip(range(4), batches.epoch(0)):
            clock = time.perf_counter()
            view = trainer.graphs.batch(u, i)
            int(tf.reduce_sum(view.item_rows))
            draws.append(time.perf_counter() - clock)
        figures["sample_trace_s"], figures["sample_s"] = draws[0], float(np.mean(draws[1:]))
        figures["subgraph_edges"] = sum(int(e.total_size) for e in view.graph.edge_sets.values())
    views = trainer.graphs.epoch(batches, 1, trainer.objective)
    fresh = tf.zeros([0], tf.int32)
    times = []
    for _ in range(steps + 1):
        clock = time.perf_counter()
        view, labels, candidates = next(views)
        losses = trainer.step(view.graph, tf.convert_to_tensor(view.users),
                              tf.convert_to_tensor(view.items), tf.convert_to_tensor(labels),
                              fresh, candidates, view.item_rows)
        float(losses["total"])
        times.append(time.perf_counter() - clock)
    figures["first_step_s"] = times[0]
    figures["step_s"] = float(np.mean(times[1:]))
    figures["examples_per_s"] = batches.batch / figures["step_s"]
    figures["steps_per_epoch"] = batches.steps
    figures["epoch_s_extrapolated"] = batches.steps * figures["step_s"]
    figures["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e5,1e6")
    parser.add_argument("--modes", default="full,sampled")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--fanouts", default="10,10,5")
    parser.add_argument("--batch", type=int, default=8192)
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "tfrec-scale"))
    parser.add_argument("--one", nargs=2, metavar=("SCHEMA", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    fanouts = [int(f) for f in args.fanouts.split(",")]
    if args.one:
        print(json.dumps(measure(args.one[0], args.one[1], args.steps, fanouts, args.batch)))
        return
    rows = []
    for size in (int(float(s)) for s in args.sizes.split(",")):
        clock = time.perf_counter()
        schema = generate(Path(args.out) / f"{size:.0e}", size)
        print(f"== {size:.0e} interactions: tables in {schema.parent} "
              f"({time.perf_counter() - clock:.0f} s)", flush=True)
        for mode in args.modes.split(","):
            done = subprocess.run(
                [sys.executable, __file__, "--one", str(schema), mode, "--steps",
                 str(args.steps), "--fanouts", args.fanouts, "--batch", str(args.batch)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if done.returncode != 0:
                print(f"   {mode}: failed\n{done.stderr[-2000:]}", flush=True)
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print("   " + json.dumps(rows[-1]), flush=True)
    print(f"\nbatch {args.batch}, fanouts {fanouts}, {args.steps} timed steps after a traced "
          "one; s/epoch EXTRAPOLATED (steps per epoch x s/step), training only")
    print(f"{'interactions':>12}{'edges':>10}{'mode':>8}{'sample s':>9}{'sub edges':>10}"
          f"{'step s':>8}{'ex/s':>8}{'steps':>7}{'s/epoch*':>10}{'peak GiB':>9}"
          f"{'prepare s':>10}{'1st step s':>11}")
    for r in rows:
        sample = f"{r['sample_s']:.2f}" if "sample_s" in r else "-"
        sub = f"{r['subgraph_edges']}" if "subgraph_edges" in r else "-"
        print(f"{r['interactions']:>12}{r['edges']:>10}{r['mode']:>8}{sample:>9}{sub:>10}"
              f"{r['step_s']:>8.2f}{r['examples_per_s']:>8.0f}{r['steps_per_epoch']:>7}"
              f"{r['epoch_s_extrapolated']:>10.0f}{r['peak_mib'] / 1024:>9.2f}"
              f"{r['prepare_s']:>10.1f}{r['first_step_s']:>11.1f}")
    sampled = [r for r in rows if r["mode"] == "sampled"]
    if len(sampled) > 1:
        a, b = sampled[0], sampled[-1]
        print(f"sampled epoch grows x{b['epoch_s_extrapolated'] / a['epoch_s_extrapolated']:.1f}"
              f" for x{b['interactions'] / a['interactions']:.1f} interactions "
              f"(linear: equal factors); per-example cost x"
              f"{a['examples_per_s'] / b['examples_per_s']:.2f}")


if __name__ == "__main__":
    main()
