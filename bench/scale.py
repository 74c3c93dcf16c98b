"""Full-graph vs sampled training cost on synthetic e-commerce graphs of growing size.

Run: TF_USE_LEGACY_KERAS=1 .venv/bin/python bench/scale.py [--sizes 1e5,1e6,1e7] [--steps 5]
         [--modes sampled,full] [--optimizers adam,lazy_adam] [--fanouts 10,10,5] [--layers 3]
         [--batch 8192] [--negatives all] [--parallel 1] [--full-up-to 1.5e6] [--whole-epoch]
         [--out /tmp/tfrec-scale2]
Each size is the e-commerce generator (tfrec.data.ecommerce) scaled up: its catalogue with
items = interactions / 50 (2,000 to 20,000) and users drawn 1,000 at a time from the same
catalogue up to POOL interactions, then clones of those users with a third of their items
swapped within the leaf category (`clones`: the generator's draw costs ~3 CPU-s per 1,000 users
at 20,000 items), until about `size` interactions, knowledge graph included (brands,
categories, materials, uses); streamed once to --out/<size>/ with a copy of
schemas/ecommerce.pbtxt. Each (size, mode) runs in its own process (so peak memory is its own)
with the built-in defaults except text.mode "off" (no MiniLM: graph cost only) and the flags
(model.layers, train.batch_size / negatives / optimizer, sample.fanouts / parallel): prepare
the graph, build the trainer, then
  sampled: draw 3 subgraphs directly (the sampling time), then run `--steps` steps through the
           prefetched tf.data pipeline after a first, traced one;
  full:    run `--steps` full-graph steps after a first, traced one (not above --full-up-to).
Seconds per epoch = steps per epoch x measured seconds per step: EXTRAPOLATED from `--steps`
steps (labelled so), training only (no validation pass). CPU seconds are the process's CPU
time (every thread) over the same steps: comparable across machine load, unlike wall time;
`uptime` is printed before and after, and the 1-minute load beside each row. Peak memory is
the process's maximum resident set. Prints one table and, between successive sizes, the growth
of the sampled epoch against the growth of the interactions (linear: equal factors); and for
every run the wall s, CPU s and peak RSS (by its end) of each phase: prepare (tables -> model
graph), build (model, optimizer slots, sampler), first_step (traced), steps.
--whole-epoch: instead of the timed steps, the whole first epoch as `tfrec train` runs it
(Trainer._train_epoch: the prefetched sampled pipeline) and then its validation pass
(Trainer._validate: batched sampled inference above sample.auto_edges, full ranking of the
valid users), each timed as a phase: no extrapolation.
"""

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
USERS_PER_DRAW = 1000
POOL = 200_000  # interactions drawn by the generator; beyond: clones()
CLONE_SWAP = 1 / 3


def generate(out: Path, size: int, seed: int = 0) -> Path:
    """Writes a scaled-up e-commerce catalogue of about `size` interactions to `out`, streamed
    (each draw of users is appended to users.tsv and interactions.tsv); returns its schema
    file (written last: its presence marks a complete folder). Up to POOL interactions the
    users are drawn by the generator; beyond, `clones` re-draws them (see there)."""
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
    pool = []
    while interactions < min(size, POOL):  # users in draws of 1,000 from the same catalogue
        drawn_users, drawn = ecommerce._interactions(rng, facts, sizes)
        pool.append((drawn_users, drawn))
        users, interactions = _append(out, users, drawn_users, drawn), interactions + len(drawn)
    for drawn_users, drawn in clones(pool, facts, size - interactions, rng):
        users = _append(out, users, drawn_users, drawn)
    text = (ROOT / "schemas/ecommerce.pbtxt").read_text().replace("tfrec:ecommerce/", "")
    schema.write_text(text)
    return schema


def _append(out: Path, first: int, drawn_users, drawn) -> int:
    """Appends a draw's users (renamed U<first + k>) and their interactions; returns the next
    free user number."""
    from tfrec.data import ecommerce

    rename = {u[0]: f"U{first + k:08d}" for k, u in enumerate(drawn_users)}
    ecommerce.append_rows(out / "users.tsv", ((rename[u[0]], *u[1:]) for u in drawn_users))
    ecommerce.append_rows(out / "interactions.tsv", ((rename[r[0]], *r[1:]) for r in drawn))
    return first + len(drawn_users)


def clones(pool, facts, size: int, rng):
    """Yields draws (users, interactions) of about `size` more interactions made from the
    generator's `pool` of draws, vectorised (the generator's [users, items] Gumbel draw costs
    ~3 CPU-s per 1,000 users at 20,000 items: ~25 CPU-minutes for 1e7): a copy of each pooled
    user (same features, tastes as shown by its items) whose every item is, with probability
    CLONE_SWAP, swapped for an item of the same leaf category drawn uniformly (repeats within
    the user dropped), its times shifted by up to 30 days. Item degrees and user activity keep
    the generator's shape; the users are new."""
    seen = np.unique([int(r[1][1:]) for _, drawn in pool for r in drawn])  # not cold
    leaf = facts["leaf"]
    by_leaf = seen[np.argsort(leaf[seen], kind="stable")]  # seen items, grouped by leaf
    counts = np.bincount(leaf[seen], minlength=leaf.max() + 1)
    starts = np.cumsum(counts) - counts
    done = 0
    while done < size:
        for drawn_users, drawn in pool:
            if done >= size:
                return
            item = np.array([int(r[1][1:]) for r in drawn])
            swap = rng.random(len(item)) < CLONE_SWAP
            group = leaf[item[swap]]
            item[swap] = by_leaf[starts[group] + (rng.random(swap.sum()) * counts[group]
                                                  ).astype(int)]
            user = np.array([int(r[0][1:]) for r in drawn])
            _, first = np.unique(user * len(leaf) + item, return_index=True)
            shift = rng.integers(0, 30 * 86400, len(drawn_users))
            rows = [(drawn[k][0], f"P{item[k]:05d}", drawn[k][2], drawn[k][3],
                     drawn[k][4] + int(shift[user[k]])) for k in np.sort(first)]
            done += len(rows)
            yield drawn_users, rows


class Phases:
    """Wall seconds, CPU seconds (every thread of the process) and peak resident memory so
    far (the process's maximum RSS by the phase's end) of each timed phase, in `figures`."""

    def __init__(self, figures: dict):
        self.figures = figures

    def __call__(self, name: str, fn):
        clock, cpu = time.perf_counter(), time.process_time()
        out = fn()
        self.figures[f"{name}_s"] = time.perf_counter() - clock
        self.figures[f"{name}_cpu_s"] = time.process_time() - cpu
        self.figures[f"{name}_peak_mib"] = _peak_mib()
        return out


def measure(schema: str, mode: str, steps: int, settings: dict, whole_epoch: bool = False
            ) -> dict:
    """Trains `steps` steps of `mode` on the graph of `schema` with the config `settings`
    ({section: {key: value}}); returns the figures. whole_epoch: instead of timed steps, the
    whole first epoch as `tfrec train` runs it, then the validation pass."""
    import tensorflow as tf

    from tfrec.config import config_from_dict
    from tfrec.train.fit import Trainer
    from tfrec.train.prepare import prepare
    from tfrec.train.run_dir import RunDir

    settings = {k: dict(v) for k, v in settings.items()}
    settings.setdefault("train", {})["mode"] = mode
    config = config_from_dict(settings)
    figures = {"mode": mode, "optimizer": config.train.optimizer}
    phase = Phases(figures)
    prepared = phase("prepare", lambda: prepare(schema, config, progress=False))
    graph = prepared.model_graph
    figures["interactions"] = int(graph.edge_sets[prepared.data.schema.interactions].total_size)
    figures["edges"] = sum(int(e.total_size) for e in graph.edge_sets.values())
    trainer = phase("build", lambda: Trainer(prepared, config, RunDir(tempfile.mkdtemp() + "/run"),
                                             False, lambda line: None))
    batches = trainer.batches
    figures["steps_per_epoch"] = batches.steps
    if whole_epoch:
        losses = phase("epoch", lambda: trainer._train_epoch(1, bar=None))
        figures["loss"] = losses["total"]
        valid = phase("validate", trainer._validate)
        figures["valid"] = {k: float(v) for k, v in valid.items()}
        figures["peak_mib"], figures["load"] = _peak_mib(), os.getloadavg()[0]
        return figures
    if mode == "sampled":
        draws, cpu = [], []
        for k, (u, i, _) in zip(range(4), batches.epoch(0)):
            clock, process = time.perf_counter(), time.process_time()
            view = trainer.graphs.batch(u, i)
            int(tf.reduce_sum(view.item_rows))
            draws.append(time.perf_counter() - clock)
            cpu.append(time.process_time() - process)
        figures["sample_trace_s"], figures["sample_s"] = draws[0], float(np.mean(draws[1:]))
        figures["sample_cpu_s"] = float(np.mean(cpu[1:]))
        figures["subgraph_edges"] = sum(int(e.total_size) for e in view.graph.edge_sets.values())
    views = itertools.chain.from_iterable(  # epochs 1, 2, ...: small graphs have few steps
        trainer.graphs.epoch(batches, epoch, trainer.objective) for epoch in itertools.count(1))
    fresh = tf.zeros([0], tf.int32)

    def step():
        view, labels, candidates = next(views)
        losses = trainer.step(view.graph, tf.convert_to_tensor(view.users),
                              tf.convert_to_tensor(view.items), tf.convert_to_tensor(labels),
                              fresh, candidates, view.item_rows)
        float(losses["total"])

    phase("first_step", step)  # traces the step
    phase("steps", lambda: [step() for _ in range(steps)])
    figures["step_s"] = figures["steps_s"] / steps
    figures["step_cpu_s"] = figures["steps_cpu_s"] / steps  # every thread's
    figures["examples_per_s"] = batches.batch / figures["step_s"]
    figures["epoch_s_extrapolated"] = batches.steps * figures["step_s"]
    figures["epoch_cpu_s_extrapolated"] = batches.steps * figures["step_cpu_s"]
    figures["peak_mib"] = _peak_mib()
    figures["load"] = os.getloadavg()[0]
    return figures


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e5,1e6,1e7")
    parser.add_argument("--modes", default="sampled,full")
    parser.add_argument("--full-up-to", type=float, default=1.5e6,
                        help="full-graph runs only up to this many interactions")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--fanouts", default="10,10,5")
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8192)
    parser.add_argument("--negatives", default="all")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--optimizers", default="adam",
                        help="train.optimizer values, each measured at every size")
    parser.add_argument("--whole-epoch", action="store_true",
                        help="time the whole first epoch and the validation pass, not --steps")
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "tfrec-scale2"))
    parser.add_argument("--one", nargs=3, metavar=("SCHEMA", "MODE", "SETTINGS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], args.one[1], args.steps, json.loads(args.one[2]),
                                 args.whole_epoch)))
        return
    fanouts = [int(f) for f in args.fanouts.split(",")]
    settings = {"text": {"mode": "off"}, "model": {"layers": args.layers},
                "sample": {"fanouts": fanouts, "parallel": args.parallel},
                "train": {"batch_size": args.batch, "chunk": 1024, "negatives": args.negatives}}
    print(f"uptime: {_uptime()}", flush=True)
    rows = []
    for size in (int(float(s)) for s in args.sizes.split(",")):
        clock = time.perf_counter()
        schema = generate(Path(args.out) / f"{size:.0e}", size)
        print(f"== {size:.0e} interactions: tables in {schema.parent} "
              f"({time.perf_counter() - clock:.0f} s)", flush=True)
        for mode, optimizer in itertools.product(args.modes.split(","),
                                                 args.optimizers.split(",")):
            if mode == "full" and size > args.full_up_to:
                print(f"   full: not run above {args.full_up_to:,.0f} interactions (a full-graph "
                      "step embeds every edge: hours an epoch, and memory beyond this host's "
                      "share)", flush=True)
                continue
            settings["train"]["optimizer"] = optimizer
            done = subprocess.run(
                [sys.executable, __file__, "--one", str(schema), mode, json.dumps(settings),
                 "--steps", str(args.steps)] + (["--whole-epoch"] if args.whole_epoch else []),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if done.returncode != 0:
                print(f"   {mode} {optimizer}: failed\n{done.stderr[-2000:]}", flush=True)
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print("   " + json.dumps(rows[-1]), flush=True)
    print(f"\nuptime: {_uptime()}")
    del settings["train"]["optimizer"]
    print(f"config: {json.dumps(settings)}")
    _phases(rows)
    if not args.whole_epoch:
        _steps(rows, args.steps)


def _phases(rows: list[dict]) -> None:
    """Prints wall s, CPU s and peak RSS (GiB, by the phase's end) of each row's phases."""
    names = [p for p in ("prepare", "build", "first_step", "steps", "epoch", "validate")
             if any(f"{p}_s" in r for r in rows)]
    print("phases: wall s / CPU s (all threads) / peak RSS GiB so far")
    print(f"{'interactions':>12}{'mode':>8}{'optimizer':>10}"
          + "".join(f"{p:>22}" for p in names) + f"{'load':>6}")
    for r in rows:
        cells = "".join(f"{r[p + '_s']:>8.0f}/{r[p + '_cpu_s']:>6.0f}/"
                        f"{r[p + '_peak_mib'] / 1024:>6.2f}" if f"{p}_s" in r else f"{'-':>22}"
                        for p in names)
        print(f"{r['interactions']:>12}{r['mode']:>8}{r['optimizer']:>10}{cells}"
              f"{r['load']:>6.1f}")
    for r in rows:
        if "valid" in r:
            print(f"{r['interactions']} {r['mode']} {r['optimizer']}: epoch + validation "
                  f"{r['epoch_s'] + r['validate_s']:.0f} s wall, prepare to validated "
                  f"{sum(r[p + '_s'] for p in ('prepare', 'build', 'epoch', 'validate')):.0f} s;"
                  f" loss {r['loss']:.4f}, valid NDCG@20 {r['valid']['ndcg@20']:.4f}, "
                  f"Recall@20 {r['valid']['recall@20']:.4f} (one epoch)")


def _steps(rows: list[dict], steps: int) -> None:
    """Prints the timed steps' table and the growth between successive sizes."""
    print(f"{steps} timed steps after a traced one; s/epoch EXTRAPOLATED = steps per epoch x "
          "s/step (wall), cpu s = process CPU time (all threads) per step; training only")
    print(f"{'interactions':>12}{'edges':>10}{'mode':>8}{'optimizer':>10}{'sub edges':>10}"
          f"{'sample s':>9}{'step s':>8}{'cpu s':>7}{'ex/s':>8}{'steps':>7}{'s/epoch*':>10}"
          f"{'cpu s/ep*':>10}{'peak GiB':>9}{'load':>6}")
    for r in rows:
        sample = f"{r['sample_s']:.2f}" if "sample_s" in r else "-"
        sub = f"{r['subgraph_edges']}" if "subgraph_edges" in r else "-"
        print(f"{r['interactions']:>12}{r['edges']:>10}{r['mode']:>8}{r['optimizer']:>10}"
              f"{sub:>10}{sample:>9}"
              f"{r['step_s']:>8.2f}{r['step_cpu_s']:>7.2f}{r['examples_per_s']:>8.0f}"
              f"{r['steps_per_epoch']:>7}{r['epoch_s_extrapolated']:>10.0f}"
              f"{r['epoch_cpu_s_extrapolated']:>10.0f}{r['peak_mib'] / 1024:>9.2f}"
              f"{r['load']:>6.1f}")
    for optimizer in dict.fromkeys(r["optimizer"] for r in rows):
        sampled = sorted((r for r in rows if r["mode"] == "sampled"
                          and r["optimizer"] == optimizer), key=lambda r: r["interactions"])
        for a, b in zip(sampled, sampled[1:]):
            grow = b["interactions"] / a["interactions"]
            print(f"sampled {optimizer} {a['interactions']} -> {b['interactions']} interactions "
                  f"(x{grow:.1f}): s/epoch x{b['epoch_s_extrapolated'] / a['epoch_s_extrapolated']:.1f}"
                  f", CPU s/epoch "
                  f"x{b['epoch_cpu_s_extrapolated'] / a['epoch_cpu_s_extrapolated']:.1f}"
                  f", CPU s/step x{b['step_cpu_s'] / a['step_cpu_s']:.2f} (linear: epoch factors "
                  f"x{grow:.1f}, step factor x1)")


def _uptime() -> str:
    return subprocess.run(["uptime"], stdout=subprocess.PIPE, text=True).stdout.strip()


if __name__ == "__main__":
    main()
