"""`tfrec search` strategies side by side: regularised evolution vs random vs Bayesian, the
same trial budget, on MovieLens-100K and the e-commerce default.

Run: .venv/bin/python bench/search.py [--datasets movielens,ecommerce]
         [--strategies evolution,random,bayesian] [--trials 6] [--seeds 0] [--epochs 5]
         [--out /tmp/tfrec-bench-search]
Each search is a `tfrec search` subprocess over the default [search] space (MovieLens on top of
configs/movielens.toml), each trial at most --epochs epochs (patience 2, median stopping after
epoch 2; evolution: population trials/2, tournament 2). Every choice is made on validation:
the search ranks trials by valid NDCG@20, and the test NDCG@20 printed is that of the winner
alone (its trial checkpoint, evaluated once). The default config is trained with the same
epochs and patience as a trial, so the rows compare like with like. Prints, per dataset and
strategy (mean over --seeds): best valid NDCG@20, the winner's test NDCG@20, failed trials,
wall minutes; and the default config's valid and test NDCG@20.
"""

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATASETS = {"movielens": ("schemas/movielens.pbtxt", "configs/movielens.toml"),
            "ecommerce": ("schemas/ecommerce.pbtxt", None)}
TFREC = [sys.executable, "-c", "import sys; from tfrec.cli import main; sys.exit(main())"]


def bench_config(base: str | None, trials: int, epochs: int, out: Path) -> Path:
    """The base config file plus the bench's [search] budget, written to `out`."""
    text = (ROOT / base).read_text() if base else ""
    text += (f"\n[search]\nepochs = {epochs}\npatience = 2\nmedian_stop = 2\n"
             f"population = {max(2, trials // 2)}\nsample = 2\n")
    out.write_text(text)
    return out


def run(argv: list[str], log: Path) -> float:
    """Runs a tfrec command (output to `log`); returns its wall seconds."""
    start = time.perf_counter()
    with open(log, "w") as f:
        code = subprocess.call(TFREC + argv, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if code:
        sys.exit(f"{' '.join(argv)} failed with exit {code}: see {log}")
    return time.perf_counter() - start


def search(schema: str, config: Path, strategy: str, seed: int, trials: int, out: Path) -> dict:
    folder = out / f"{strategy}-{seed}"
    seconds = run(["search", "--schema", schema, "--config", str(config), "--strategy",
                   strategy, "--trials", str(trials), "--seed", str(seed), "--run-dir",
                   str(folder)], out / f"{strategy}-{seed}.log")
    winner = json.loads((folder / "winner.json").read_text())
    with open(folder / "leaderboard.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {"valid": winner["valid_ndcg@20"], "test": winner["metrics"]["test"]["ndcg@20"],
            "failed": sum(r["status"] == "failed" for r in rows), "minutes": seconds / 60,
            "winner": {k: v for k, v in rows[int(winner["trial"])].items()
                       if k in ("conv", "layers", "dim", "combine", "use_text", "use_kg",
                                "temperature", "learning_rate")}}


def default(schema: str, config: Path, epochs: int, out: Path) -> dict:
    """The base config alone, trained with a trial's epochs and patience."""
    text = config.read_text().split("\n[search]")[0]
    text = text.replace("[train]\n", f"[train]\nepochs = {epochs}\npatience = 2\n", 1) \
        if "[train]\n" in text else text + f"\n[train]\nepochs = {epochs}\npatience = 2\n"
    path = out / "default.toml"
    path.write_text(text)
    seconds = run(["train", "--schema", schema, "--config", str(path), "--run-dir",
                   str(out / "default"), "--no-progress"], out / "default.log")
    metrics = json.loads((out / "default" / "metrics.json").read_text())
    return {"valid": metrics["valid"]["ndcg@20"], "test": metrics["test"]["ndcg@20"],
            "minutes": seconds / 60}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="movielens,ecommerce")
    p.add_argument("--strategies", default="evolution,random,bayesian")
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--seeds", default="0")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--out", default="/tmp/tfrec-bench-search")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"{'data':<10} {'strategy':<10} {'valid NDCG@20':>14} {'test NDCG@20':>13} "
          f"{'failed':>7} {'minutes':>8}  winner (seed {seeds[0]})", flush=True)
    for name in args.datasets.split(","):
        schema, base = DATASETS[name]
        out = Path(args.out) / name
        out.mkdir(parents=True, exist_ok=True)
        config = bench_config(base, args.trials, args.epochs, out / "search.toml")
        d = default(schema, config, args.epochs, out)
        print(f"{name:<10} {'default':<10} {d['valid']:>14.4f} {d['test']:>13.4f} "
              f"{'-':>7} {d['minutes']:>8.1f}", flush=True)
        for strategy in args.strategies.split(","):
            rs = [search(schema, config, strategy, s, args.trials, out) for s in seeds]
            mean = {k: sum(r[k] for r in rs) / len(rs) for k in ("valid", "test", "minutes")}
            print(f"{name:<10} {strategy:<10} {mean['valid']:>14.4f} {mean['test']:>13.4f} "
                  f"{sum(r['failed'] for r in rs):>7} {mean['minutes']:>8.1f}  "
                  f"{rs[0]['winner']}", flush=True)


if __name__ == "__main__":
    main()
