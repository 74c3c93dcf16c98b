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
Prints, per run: test NDCG@20 and Recall@20, Recall@20 on the test pairs of the items first
seen in this update (new since the previous point's tables), best epoch / epochs run, and wall
seconds (of the whole `tfrec train`: tables, text embeddings, training, evaluation).
"""

import argparse
import dataclasses
import importlib.resources
import json
import os
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
    new_item_recall: float
    new_item_pairs: int
    best_epoch: int
    epochs: int
    seconds: float


def new_item_recall(run_dir: Path, previous: set[str]) -> tuple[float, int]:
    """Recall@20 on the test pairs whose item is not in `previous` (ids), and their count."""
    from tfrec.evaluate.metrics import filter_targets, full_ranking_metrics
    from tfrec.evaluate.scoring import embedding_score_fn
    from tfrec.export.from_run import restore_run
    from tfrec.train.fit import embeddings

    r = restore_run(str(run_dir))
    p = r.prepared
    ids = p.data.node_ids[p.data.schema.item_set].astype(str)
    mask = np.array([i not in previous for i in ids])
    targets = filter_targets(p.csr("test"), mask)
    count = int(np.sum(mask[p.split.pairs("test")[1]]))
    if not count:
        return float("nan"), 0
    m = full_ranking_metrics(embedding_score_fn(*embeddings(r.trained)), p.csr("train", "valid"),
                             targets, (20,))
    return m["recall@20"], count


def run(point: int, how: str, folder: Path, config_path: Path, run_dir: Path,
        warm_from: Path | None, previous: set[str]) -> Row:
    from tfrec.config import load_config
    from tfrec.train.run import train

    config = load_config(str(config_path))
    start = time.perf_counter()
    result = train(str(folder / "schema.pbtxt"), config, str(run_dir), progress=False,
                   log=lambda line: print(f"    {line}", flush=True),
                   warm_start=None if warm_from is None else str(warm_from))
    seconds = time.perf_counter() - start
    recall_new, count = new_item_recall(run_dir, previous) if previous else (float("nan"), 0)
    test, info = result.metrics["test"], result.info
    return Row(point, how, test["ndcg@20"], test["recall@20"], recall_new, count,
               info.get("best_epoch", 0), info.get("epochs_run", 0), seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "movielens.toml"))
    parser.add_argument("--kind", default="gnn", choices=["gnn", "mf"])
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--out", default="/tmp/tfrec-freshness")
    args = parser.parse_args()
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    sys.path.insert(0, str(ROOT))
    out = Path(args.out)
    if out.exists():
        sys.exit(f"{out} exists: choose a new --out")

    _, inter = read(FILES["inter"])
    inter.sort(key=lambda r: (float(r[3]), r[0], r[1]))
    base = tomllib.loads(Path(args.config).read_text())
    rows: list[Row] = []
    warm_from, previous = None, set()
    for t in range(3):
        folder = out / f"point{t}"
        write_point(folder, t, inter)
        config = {**base, "model": {**base.get("model", {}), "kind": args.kind},
                  "train": {**base.get("train", {}), "epochs": args.epochs,
                            "patience": args.patience},
                  "split": {"method": "files", "split_dir": str(folder / "splits")}}
        config_path = folder / "config.toml"
        config_path.write_text(_toml(config))
        hows = ["scratch"] if t == 0 else ["scratch", "warm"]
        for how in hows:
            print(f"point {t}: {how}", flush=True)
            row = run(t, how, folder, config_path, out / f"run{t}-{how}",
                      warm_from if how == "warm" else None, previous)
            rows.append(row)
            print(f"  {row}", flush=True)
        warm_from = out / (f"run{t}-warm" if t else "run0-scratch")
        previous = set((folder / FILES["item"]).read_text().split("\n")[1:])
        previous = {line.split("\t")[0] for line in previous if line}

    print(f"\nMovieLens-100K by time, model kind {args.kind}, {args.config}, epochs <= "
          f"{args.epochs}, patience {args.patience}; test = newer half of the slice after "
          "the training data")
    print(f"{'point':<6}{'run':<9}{'test NDCG@20':>13}{'Recall@20':>11}{'new items R@20':>16}"
          f"{'(pairs)':>8}{'best/epochs':>13}{'seconds':>9}")
    for r in rows:
        print(f"{r.point:<6}{r.how:<9}{r.ndcg:>13.4f}{r.recall:>11.4f}"
              f"{r.new_item_recall:>16.4f}{r.new_item_pairs:>8}"
              f"{f'{r.best_epoch}/{r.epochs}':>13}{r.seconds:>9.0f}")
    for t in (1, 2):
        s, w = (next(r for r in rows if r.point == t and r.how == h) for h in ("scratch", "warm"))
        print(f"update {t}: warm/scratch NDCG@20 {w.ndcg / s.ndcg:.3f}, time "
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
