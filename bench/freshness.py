"""Benchmark: keeping a model fresh. Warm-started updates vs training from scratch on
MovieLens-100K ordered by time.

Run: .venv/bin/python bench/freshness.py [--config configs/movielens.toml] [--kind gnn|mf]
         [--epochs 25] [--patience 3] [--out /tmp/tfrec-freshness]
The interactions, sorted by timestamp, are cut into the oldest 70% and three 10% slices.
Point 0 trains on the 70% from scratch; updates 1 and 2 add the next slice each to the training
data. At each point the tables hold only what has happened by then: the interactions up to the
end of the evaluation slice and the users and items they name (so users and items appear over
time; the knowledge graph is kept whole). The slice after the training data is the evaluation:
its older half is the validation split (early stopping), its newer half the test split,
reported here (split method "files"). At updates 1 and 2 two runs train on the same tables:
  scratch  `tfrec train` from zero,
  warm     `tfrec train --warm-start` from the previous point's warm run (point 0 for update 1).
Both runs read the same config; a warm run trains with train.warm_learning_rate and
train.warm_patience where the config sets them.
Prints, per run: test NDCG@20 and Recall@20; Recall@20 (and the number of test pairs) of two
groups of items: "first trained" (items with training pairs at this point but none at the
previous one: new ids and ids the old run only knew without interactions) and "cold" (items
with no training pair at all: first seen in this point's evaluation slice, reachable only
through text, features and the knowledge graph); best epoch / epochs run; and two times:
  to target  seconds from the start of `train()` (tables, text embeddings, model, tracing
             included) until the epoch whose validation NDCG@20 first reaches the target,
             read from the per-epoch validation log the trainer writes (RUN_DIR/logs, the
             wall time of each epoch's "valid/ndcg@20"; a warm run's epoch 0 is its model
             before any step). Scratch's target is its own best
             valid NDCG@20 (time to its best epoch); warm's is scratch's best minus 1%
             (x 0.99), "-" if never reached;
  whole run  seconds of the whole `train()` (patience epochs and final evaluation included).
Every training runs in a process of its own, as a user's `tfrec train` does, so no run finds
what another one paid for (TensorFlow's first ops, the text encoder, AutoGraph's cache); the
clock of each starts after that process's imports (TensorFlow, TF-GNN, keras-nlp and tfrec's
training modules), at the call of `train()`. The machine load (`uptime`) is printed at the end.
`--only-update 2 --previous OLD_OUT` runs update 2 alone (both runs), warm-started from the
update-1 warm run of an earlier bench output OLD_OUT (`--only-update 1`: from its point-0 run);
the warm run goes first.
`--no-neighbours` (an ablation, with --only-update): the warm run alone, its new item rows left
at their fresh initialisation instead of starting from their text and knowledge-graph
neighbours (bench/fresh_items.py then compares the two warm runs' first-trained items).
"""

import argparse
import dataclasses
import importlib.resources
import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FILES = {"user": "ml-100k.user", "item": "ml-100k.item", "inter": "ml-100k.inter",
         "link": "ml-100k.link"}
CUTS = (0.7, 0.8, 0.9, 1.0)  # training data ends at CUTS[t]; evaluation is CUTS[t]..CUTS[t+1]


def source(name: str) -> Path:
    return Path(str(importlib.resources.files("recbole") / "dataset_example" / "ml-100k" / name))


def read(name: str) -> tuple[str, list[list[str]]]:
    lines = source(name).read_text(encoding="utf-8").splitlines()
    return lines[0], [line.split("\t") for line in lines[1:] if line]


def write_point(folder: Path, t: int, inter: list[list[str]]) -> None:
    """The tables, schema and split files of point t (see the module docstring)."""
    n = len(inter)
    train_end, eval_end = int(CUTS[t] * n), int(CUTS[t + 1] * n)
    valid_end = (train_end + eval_end) // 2
    rows = inter[:eval_end]
    users = {r[0] for r in rows}
    items = {r[1] for r in rows}
    folder.mkdir(parents=True, exist_ok=True)
    header = read(FILES["inter"])[0]
    (folder / FILES["inter"]).write_text(header + "\n" + "".join(
        "\t".join(r) + "\n" for r in rows), encoding="utf-8")
    for key, keep, col in (("user", users, 0), ("item", items, 0), ("link", items, 0)):
        head, body = read(FILES[key])
        (folder / FILES[key]).write_text(head + "\n" + "".join(
            "\t".join(r) + "\n" for r in body if r[col] in keep), encoding="utf-8")
    schema = (ROOT / "schemas" / "movielens.pbtxt").read_text(encoding="utf-8")
    for name in FILES.values():
        schema = schema.replace(f"recbole:ml-100k/{name}", name)
    (folder / "schema.pbtxt").write_text(schema, encoding="utf-8")
    splits = folder / "splits"
    splits.mkdir(exist_ok=True)
    for name, part in (("train", rows[:train_end]), ("valid", rows[train_end:valid_end]),
                       ("test", rows[valid_end:eval_end])):
        (splits / f"{name}.tsv").write_text("user_id\titem_id\n" + "".join(
            f"{r[0]}\t{r[1]}\n" for r in part), encoding="utf-8")


@dataclasses.dataclass
class Row:
    point: int
    how: str
    ndcg: float
    recall: float
    groups: dict  # group -> [Recall@20, test pairs]
    best_epoch: int
    epochs: int
    seconds: float  # whole train()
    best_valid: float
    curve: list  # [epoch, seconds since the start of train(), valid NDCG@20]
    to_target: float | None = None  # seconds to the target (see the module docstring)
    target_epoch: int | None = None


def item_recall(run_dir: Path, groups: dict[str, set[str]]) -> dict[str, list]:
    """group -> [Recall@20 on the test pairs whose item is in the group (ids), their count]."""
    from tfrec.evaluate.metrics import filter_targets, full_ranking_metrics
    from tfrec.evaluate.scoring import embedding_score_fn
    from tfrec.export.from_run import restore_run

    r = restore_run(str(run_dir))
    p = r.prepared
    ids = p.data.node_ids[p.data.schema.item_set].astype(str)
    score = embedding_score_fn(*r.embeddings())  # the recency prior of a warm run included
    out = {}
    for name, group in groups.items():
        mask = np.array([i in group for i in ids])
        count = int(np.sum(mask[p.split.pairs("test")[1]]))
        out[name] = [float("nan"), 0] if not count else [full_ranking_metrics(
            score, p.csr("train", "valid"), filter_targets(p.csr("test"), mask),
            (20,))["recall@20"], count]
    return out


def valid_curve(run_dir: Path, start: float) -> list[list]:
    """[[epoch, seconds since `start` (time.time()), valid NDCG@20]] from the run's per-epoch
    TensorBoard log (the wall time each epoch's validation figure was written)."""
    import tensorflow as tf

    points = {}
    for path in sorted((run_dir / "logs").glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for v in event.summary.value:
                if v.tag == "valid/ndcg@20":
                    points[event.step] = [event.step, event.wall_time - start,
                                          float(tf.make_ndarray(v.tensor))]
    return [points[e] for e in sorted(points)]


def reach(curve: list[list], target: float) -> tuple[float | None, int | None]:
    """(seconds, epoch) of the first epoch of `curve` whose valid NDCG@20 >= target."""
    return next(((s, e) for e, s, v in curve if v >= target), (None, None))


PRELOAD = ("tensorflow", "tensorflow_gnn", "tfrec.train.run", "tfrec.train.fit",
           "tfrec.train.warm_start", "tfrec.train.neighbours", "tfrec.text.embedding_cache",
           "tfrec.text.graph_texts", "tfrec.text.preset", "tfrec.text.batch_encoder",
           "tfrec.data.graph_tensor", "tfrec.export.from_run")


def run(point: int, how: str, folder: Path, config_path: Path, run_dir: Path,
        warm_from: Path | None, groups: dict[str, set[str]], no_neighbours: bool = False) -> Row:
    """One training in a new process (`--child`), as `tfrec train` runs; its Row."""
    spec = {"point": point, "how": how, "folder": str(folder), "config": str(config_path),
            "run_dir": str(run_dir), "warm_from": None if warm_from is None else str(warm_from),
            "groups": {k: sorted(v) for k, v in groups.items()}, "no_neighbours": no_neighbours}
    spec_path = run_dir.parent / f"{run_dir.name}.spec.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}
    subprocess.run([sys.executable, __file__, "--child", str(spec_path)], env=env, check=True)
    return Row(**json.loads((run_dir.parent / f"{run_dir.name}.row.json").read_text()))


def child(spec_path: Path) -> int:
    """The process of one training: imports first, then the clock and `train()`."""
    import importlib

    from tfrec.text._imports import import_keras_nlp

    for name in PRELOAD:
        importlib.import_module(name)
    import_keras_nlp()
    from tfrec.config import load_config
    from tfrec.train.run import train

    spec = json.loads(spec_path.read_text())
    if spec["no_neighbours"]:
        from tfrec.train.warm_start import WarmStart

        WarmStart.init_from_neighbours = lambda self, trained, rows: 0
    run_dir, groups = Path(spec["run_dir"]), {k: set(v) for k, v in spec["groups"].items()}
    config = load_config(spec["config"])
    wall, start = time.time(), time.perf_counter()
    result = train(str(Path(spec["folder"]) / "schema.pbtxt"), config, str(run_dir),
                   progress=False, log=lambda line: print(f"    {line}", flush=True),
                   warm_start=spec["warm_from"])
    seconds = time.perf_counter() - start
    test, info = result.metrics["test"], result.info
    curve = valid_curve(run_dir, wall)
    row = Row(spec["point"], spec["how"], test["ndcg@20"], test["recall@20"],
              item_recall(run_dir, groups) if groups else {}, info.get("best_epoch", 0),
              info.get("epochs_run", 0), seconds, info.get("best_valid", float("nan")), curve)
    if spec["how"] == "scratch":  # its best as logged (float32), the epoch the checkpoint kept
        row.to_target, row.target_epoch = reach(curve, max(v for _, _, v in curve))
    (run_dir.parent / f"{run_dir.name}.row.json").write_text(json.dumps(dataclasses.asdict(row)))
    return 0


def train_items(folder: Path) -> set[str]:
    lines = (folder / "splits" / "train.tsv").read_text().splitlines()[1:]
    return {line.split("\t")[1] for line in lines if line}


def table_items(folder: Path) -> set[str]:
    lines = (folder / FILES["item"]).read_text().splitlines()[1:]
    return {line.split("\t")[0] for line in lines if line}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "movielens.toml"))
    parser.add_argument("--kind", default="gnn", choices=["gnn", "mf"])
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--out", default="/tmp/tfrec-freshness")
    parser.add_argument("--only-update", type=int, choices=[1, 2],
                        help="run this update only, warm-starting from --previous's runs")
    parser.add_argument("--previous", help="an earlier --out (for --only-update)")
    parser.add_argument("--no-neighbours", action="store_true",
                        help="ablation: the warm run alone, new item rows not neighbour-initialised")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one training (see run())
    args = parser.parse_args()
    if args.child:
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        sys.path.insert(0, str(ROOT))
        return child(Path(args.child))
    if args.only_update and not args.previous or args.no_neighbours and not args.only_update:
        sys.exit("--only-update needs --previous OLD_OUT (the runs it warm-starts from), and "
                 "--no-neighbours needs --only-update")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    sys.path.insert(0, str(ROOT))
    out = Path(args.out)
    if out.exists():
        sys.exit(f"{out} exists: choose a new --out")

    _, inter = read(FILES["inter"])
    inter.sort(key=lambda r: (float(r[3]), r[0], r[1]))
    base = tomllib.loads(Path(args.config).read_text())
    rows: list[Row] = []
    warm_from, trained_before = None, set()
    for t in range(3):
        folder = out / f"point{t}"
        write_point(folder, t, inter)
        # one training: a warm start continues one model (model.members > 1 is refused there)
        config = {**base, "model": {**base.get("model", {}), "kind": args.kind, "members": 1},
                  "train": {**base.get("train", {}), "epochs": args.epochs,
                            "patience": args.patience},
                  "split": {"method": "files", "split_dir": str(folder / "splits")}}
        config_path = folder / "config.toml"
        config_path.write_text(_toml(config))
        trained_now = train_items(folder)
        groups = {} if t == 0 else {"first trained": trained_now - trained_before,
                                    "cold": table_items(folder) - trained_now}
        runs = ["scratch"] if t == 0 else ["scratch", "warm"]
        if args.only_update:
            runs = (["warm"] if args.no_neighbours else ["warm", "scratch"]) \
                if t == args.only_update else []
            warm_from = Path(args.previous) / (f"run{t - 1}-warm" if t > 1 else "run0-scratch")
        done = {}
        for how in runs:
            print(f"point {t}: {how}", flush=True)
            done[how] = run(t, how, folder, config_path, out / f"run{t}-{how}",
                            warm_from if how == "warm" else None, groups,
                            args.no_neighbours)
            print(f"  {done[how]}", flush=True)
        if "scratch" in done and "warm" in done:
            best = max(v for _, _, v in done["scratch"].curve)
            w = done["warm"]
            w.to_target, w.target_epoch = reach(w.curve, 0.99 * best)
        rows += [done[h] for h in ("scratch", "warm") if h in done]
        warm_from = out / (f"run{t}-warm" if t else "run0-scratch")
        trained_before = trained_now

    train = base.get("train", {})
    print(f"\nMovieLens-100K by time, model kind {args.kind}, {args.config}, epochs <= "
          f"{args.epochs}, patience {args.patience} (warm: learning rate "
          f"{train.get('warm_learning_rate') or train.get('learning_rate', 'default')}, patience "
          f"{train.get('warm_patience') or args.patience}); test = newer half of the slice "
          "after the training data")
    print(f"{'point':<6}{'run':<8}{'test NDCG@20':>13}{'R@20':>8}{'first-trained R@20':>24}"
          f"{'cold R@20':>17}{'best/ep':>9}{'valid':>8}{'to target':>16}{'whole':>7}")
    for r in rows:
        g = {k: f"{v[0]:.4f} ({v[1]})" for k, v in r.groups.items()}
        target = "-" if r.to_target is None else f"{r.to_target:.0f} (ep {r.target_epoch})"
        print(f"{r.point:<6}{r.how:<8}{r.ndcg:>13.4f}{r.recall:>8.4f}"
              f"{g.get('first trained', '-'):>24}{g.get('cold', '-'):>17}"
              f"{f'{r.best_epoch}/{r.epochs}':>9}{r.best_valid:>8.4f}{target:>16}"
              f"{r.seconds:>7.0f}")
    for t in sorted({r.point for r in rows} - {0} if not args.no_neighbours else ()):
        s, w = (next(r for r in rows if r.point == t and r.how == h) for h in ("scratch", "warm"))
        ratio = "never" if w.to_target is None or s.to_target is None \
            else f"{w.to_target / s.to_target:.2f}"
        print(f"update {t}: warm/scratch test NDCG@20 {w.ndcg / s.ndcg:.3f}; time to scratch's "
              f"best valid NDCG@20 (warm: within 1%) {ratio}; whole run "
              f"{w.seconds / s.seconds:.2f}")
    (out / "results.json").write_text(json.dumps([dataclasses.asdict(r) for r in rows],
                                                 indent=2))
    print(f"uptime: {os.popen('uptime').read().strip()}")
    return 0


def _toml(config: dict) -> str:
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    return "".join(f"[{s}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in body.items()) + "\n"
                   for s, body in config.items())


if __name__ == "__main__":
    raise SystemExit(main())
