"""`tfrec search` strategies side by side: regularised evolution vs random vs Bayesian, the
same trial budget, on MovieLens-100K and the e-commerce default, over several seeds.

Run: .venv/bin/python bench/search.py [--datasets movielens,ecommerce]
         [--strategies evolution,random,bayesian] [--seeds 0,1,2] [--trials 4] [--epochs 5]
         [--out runs/bench-search] [--summary]
A cell is one (dataset, strategy, seed) search, or the dataset's default config; the grid is
run seed by seed (every strategy of seed 0 first), so a partial run compares the strategies on
the same seeds. The bench is incremental and resumable: each finished cell is appended as one
JSON line to OUT/trials<T>-epochs<E>/results.jsonl and never run again; an interrupted cell
resumes where `tfrec search` (or `tfrec train`) stopped, in its own folder; the same command
continues the grid, with more --seeds or --strategies when wanted. --summary prints the table
of what exists and runs nothing.

Each search is a `tfrec search` subprocess over the default [search] space (MovieLens on top of
configs/movielens.toml), each trial at most --epochs epochs (patience 2, median stopping after
epoch 2; evolution: population trials/2, tournament 2); --seeds are search.seed (the
strategy's random draws; the split and training seed stay 0). Every choice is made on
validation: the search ranks trials by valid NDCG@20, and the test NDCG@20 is that of the winner
alone (its trial checkpoint, evaluated once). The default config is trained with the same
epochs and patience as a trial, so the rows compare like with like. Trials score the GNN alone,
so [blend] is switched off everywhere here (the default row too): the blend is a refit on a
finished model, not part of the design searched.

Prints, per dataset and strategy: the seeds done, best valid NDCG@20 (mean, then per seed), the
winner's test NDCG@20 (mean, per seed), wall minutes (mean) and the 1-minute load average at the
start and end of the cells; the default config's row; then the cells of the grid still to run.
"""

import argparse
import csv
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tfrec.config import load_config, to_toml  # noqa: E402

DATASETS = {"movielens": ("schemas/movielens.pbtxt", "configs/movielens.toml"),
            "ecommerce": ("schemas/ecommerce.pbtxt", None)}
TFREC = [sys.executable, "-c", "import sys; from tfrec.cli import main; sys.exit(main())"]
WINNER_KEYS = ("conv", "layers", "dim", "combine", "use_text", "use_kg", "temperature",
               "learning_rate")
DEFAULT = "default"


@dataclasses.dataclass(frozen=True)
class Cell:
    dataset: str
    strategy: str  # "evolution", "random", "bayesian" or DEFAULT (the base config alone)
    seed: int | None  # search.seed; None for DEFAULT (one per dataset)

    @property
    def name(self) -> str:
        return DEFAULT if self.strategy == DEFAULT else f"{self.strategy}-{self.seed}"


def grid(datasets: list[str], strategies: list[str], seeds: list[int]) -> list[Cell]:
    """The cells in running order: per dataset the default, then seed by seed each strategy."""
    return [c for d in datasets for c in [Cell(d, DEFAULT, None)]
            + [Cell(d, s, seed) for seed in seeds for s in strategies]]


# === The results file: one JSON line per finished cell ===

def read_results(path: Path) -> dict[Cell, dict]:
    """{cell: its result row} of the finished cells (a torn last line is ignored)."""
    out = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            out[Cell(row["dataset"], row["strategy"], row["seed"])] = row
    return out


def append_result(path: Path, row: dict) -> None:
    """Appends one line (after a torn last line, on a line of its own), synced to disk."""
    text = path.read_text() if path.exists() else ""
    torn = text != "" and not text.endswith("\n")
    with open(path, "a") as f:
        f.write(("\n" if torn else "") + json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


# === Running one cell ===

def bench_configs(dataset: str, trials: int, epochs: int, folder: Path) -> tuple[Path, Path]:
    """(search config, default config) for `dataset`, written to `folder`: the base config with
    [blend] off and one member (trials score one training), plus the bench's [search] budget,
    or a trial's epochs and patience."""
    base = load_config(ROOT / DATASETS[dataset][1] if DATASETS[dataset][1] else None)
    base = dataclasses.replace(base, blend=dataclasses.replace(base.blend, item_item="off"),
                               model=dataclasses.replace(base.model, members=1))
    search = dataclasses.replace(base, search=dataclasses.replace(
        base.search, epochs=epochs, patience=2, median_stop=2,
        population=max(2, trials // 2), sample=2))
    default = dataclasses.replace(base, train=dataclasses.replace(
        base.train, epochs=epochs, patience=2))
    paths = folder / "search.toml", folder / "default.toml"
    for path, config in zip(paths, (search, default)):
        path.write_text(to_toml(config))
    return paths


def run(argv: list[str], folder: Path) -> None:
    """Runs a tfrec command (output appended to FOLDER.log); adds its wall seconds to
    FOLDER.seconds, also when interrupted, so a resumed cell's wall time is the sum."""
    start = time.perf_counter()
    log, seconds = folder.with_suffix(".log"), folder.with_suffix(".seconds")
    try:
        with open(log, "a") as f:
            code = subprocess.call(TFREC + argv, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    finally:
        spent = float(seconds.read_text()) if seconds.exists() else 0.0
        seconds.write_text(f"{spent + time.perf_counter() - start:.1f}\n")
    if code:
        sys.exit(f"{' '.join(argv)} failed with exit {code}: see {log}")


def collect(cell: Cell, folder: Path) -> dict:
    """The result row of a finished cell from its folder (winner.json / metrics.json)."""
    row = {"dataset": cell.dataset, "strategy": cell.strategy, "seed": cell.seed,
           "minutes": round(float(folder.with_suffix(".seconds").read_text()) / 60, 2)}
    if cell.strategy == DEFAULT:
        metrics = json.loads((folder / "metrics.json").read_text())
        return {**row, "valid": metrics["valid"]["ndcg@20"], "test": metrics["test"]["ndcg@20"]}
    winner = json.loads((folder / "winner.json").read_text())
    with open(folder / "leaderboard.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    best = next(r for r in rows if r["trial"] == winner["trial"])
    return {**row, "valid": winner["valid_ndcg@20"],
            "test": winner["metrics"]["test"]["ndcg@20"],
            "trials": len(rows), "failed": sum(r["status"] == "failed" for r in rows),
            "trial_minutes": round(sum(float(r["seconds"] or 0) for r in rows) / 60, 2),
            "winner": {k: best[k] for k in WINNER_KEYS}}


def finished(cell: Cell, folder: Path) -> bool:
    done = "metrics.json" if cell.strategy == DEFAULT else "winner.json"
    return (folder / done).exists() and folder.with_suffix(".seconds").exists()


def run_cell(cell: Cell, out: Path, trials: int, epochs: int) -> dict:
    """Runs (or resumes) one cell in OUT/<dataset>/<cell name>; its result row."""
    schema = DATASETS[cell.dataset][0]
    data = out / cell.dataset
    data.mkdir(parents=True, exist_ok=True)
    search_toml, default_toml = bench_configs(cell.dataset, trials, epochs, data)
    folder = data / cell.name
    load = os.getloadavg()[0]
    if not finished(cell, folder):
        if cell.strategy == DEFAULT:
            run(["train", "--schema", schema, "--config", str(default_toml), "--run-dir",
                 str(folder), "--no-progress"], folder)
        else:
            run(["search", "--schema", schema, "--config", str(search_toml), "--strategy",
                 cell.strategy, "--trials", str(trials), "--seed", str(cell.seed),
                 "--run-dir", str(folder)], folder)
    return {**collect(cell, folder), "load": [round(load, 1), round(os.getloadavg()[0], 1)],
            "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}


# === The table ===

def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def summary(results: dict[Cell, dict], cells: list[Cell]) -> list[str]:
    """The table of the finished cells among `cells` (a row per dataset and strategy), then
    the cells not finished yet."""
    lines = [f"{'data':<10} {'strategy':<10} {'seeds':<6} {'valid NDCG@20':>13} "
             f"{'per seed':<22} {'test NDCG@20':>12} {'per seed':<22} {'minutes':>7} "
             f"{'load':>9}  winner (first seed)"]
    groups: dict[tuple[str, str], list[dict]] = {}
    for cell in cells:
        if cell in results:
            groups.setdefault((cell.dataset, cell.strategy), []).append(results[cell])
    for (dataset, strategy), rows in groups.items():
        rows = sorted(rows, key=lambda r: -1 if r["seed"] is None else r["seed"])
        seeds = "-" if strategy == DEFAULT else ",".join(str(r["seed"]) for r in rows)
        per = [" ".join(f"{r[k]:.4f}" for r in rows) if strategy != DEFAULT else ""
               for k in ("valid", "test")]
        loads = [x for r in rows for x in r.get("load", [])]
        load = f"{min(loads):.0f}-{max(loads):.0f}" if loads else "?"
        winner = rows[0].get("winner")
        lines.append(
            f"{dataset:<10} {strategy:<10} {seeds:<6} {_mean([r['valid'] for r in rows]):>13.4f} "
            f"{per[0]:<22} {_mean([r['test'] for r in rows]):>12.4f} {per[1]:<22} "
            f"{_mean([r['minutes'] for r in rows]):>7.1f} {load:>9}  "
            f"{' '.join(f'{k}={v}' for k, v in winner.items()) if winner else ''}")
    missing = [c for c in cells if c not in results]
    lines.append("cells to run: " + (", ".join(
        f"{c.dataset} {c.name}" for c in missing) if missing else "none"))
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="movielens,ecommerce")
    p.add_argument("--strategies", default="evolution,random,bayesian")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--out", default="runs/bench-search")
    p.add_argument("--summary", action="store_true", help="print the table; run nothing")
    args = p.parse_args()
    cells = grid(args.datasets.split(","), args.strategies.split(","),
                 [int(s) for s in args.seeds.split(",")])
    out = Path(args.out).resolve() / f"trials{args.trials}-epochs{args.epochs}"
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / "results.jsonl"
    results = read_results(results_file)
    if not args.summary:
        for cell in cells:
            if cell in results:
                continue
            print(f"running {cell.dataset} {cell.name} (load {os.getloadavg()[0]:.1f})",
                  flush=True)
            row = {**run_cell(cell, out, args.trials, args.epochs), "trials_budget":
                   args.trials, "epochs": args.epochs}
            append_result(results_file, row)
            results[cell] = row
            print(f"  valid NDCG@20 {row['valid']:.4f}, test NDCG@20 {row['test']:.4f}, "
                  f"{row['minutes']:.1f} min", flush=True)
    print(f"{results_file}:")
    print("\n".join(summary(results, cells)), flush=True)


if __name__ == "__main__":
    main()
