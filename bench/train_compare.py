"""Popularity vs ID-only MF vs tfrec (and its ablations) on seeded splits, test metrics.

Run: .venv/bin/python bench/train_compare.py [--schema schemas/movielens.pbtxt]
         [--config configs/movielens.toml] [--variants popularity,mf,full,no_text,no_kg,no_gnn]
         [--seeds 0,1,2] [--cold-items 0.05] [--out /tmp/tfrec-bench]
Each variant is a `tfrec train` subprocess (so its peak memory is its own) with the per-user
random 80/10/10 split (seed 0, or the mean over --seeds); prints Recall@20 / NDCG@20 on test,
the cold-start slice (with --cold-items: the test pairs of the items held out whole), best
epoch, seconds per epoch, total training seconds and peak memory. With several seeds and "mf"
among the variants, each other variant is also compared with MF seed by seed (same split).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import numpy as np

VARIANTS = {  # config overrides; the gnn variants go on top of --config
    "popularity": {"model": {"kind": "popularity"}},
    # MF with the settings bench/baselines_movielens.py found best on valid
    "mf": {"model": {"kind": "mf"},
           "train": {"epochs": 60, "learning_rate": 0.005, "weight_decay": 0.05,
                     "temperature": 1.0, "batch_size": 1024}},
    "full": {},
    "no_text": {"model": {"use_text": False}},
    "no_kg": {"model": {"use_kg": False}},
    "no_gnn": {"model": {"layers": 0}},
}


def variant_config(name: str, base: dict) -> str:
    """The TOML config of a variant: baselines as they are, gnn variants merged onto base."""
    from tfrec.config import config_from_dict, to_toml

    over = VARIANTS[name]
    values = {} if "kind" in over.get("model", {}) else base
    merged = {s: {**values.get(s, {}), **over.get(s, {})} for s in {*values, *over}}
    return to_toml(config_from_dict(merged))


def _mean(values):
    return f"{np.mean(values):.4f}" + (f"±{np.std(values):.4f}" if len(values) > 1 else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schema", default="schemas/movielens.pbtxt")
    parser.add_argument("--config", help="TOML config of the gnn variants (e.g. "
                        "configs/movielens.toml; default: the built-in defaults)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seeds", default="0", help="split seeds, e.g. 0,1,2: metrics are "
                        "averaged (± standard deviation), time and memory are the first seed's")
    parser.add_argument("--out", default=None, help="folder for the runs (default: a temp dir)")
    parser.add_argument("--cold-items", default="0", help="share of items held out whole")
    args = parser.parse_args()
    base = tomllib.loads(Path(args.config).read_text()) if args.config else {}
    out = Path(args.out or tempfile.mkdtemp(prefix="tfrec-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    tfrec = str(Path(sys.executable).parent / "tfrec")
    seeds = args.seeds.split(",")
    rows = []
    for name in args.variants.split(","):
        config = out / f"{name}.toml"
        config.write_text(variant_config(name, base))
        runs = []
        for seed in seeds:
            run = out / f"{name}-seed{seed}"
            cmd = [tfrec, "train", "--schema", args.schema, "--config", str(config),
                   "--run-dir", str(run), "--no-progress", "--split", "random", "--seed", seed,
                   "--cold-items", args.cold_items]
            print(f"== {name}: {' '.join(cmd)}", flush=True)
            done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
            if done.returncode != 0:
                print(done.stdout[-3000:])
                break
            runs.append(json.loads((run / "metrics.json").read_text()))
        rows.append((name, runs if len(runs) == len(seeds) else None))
    cold = f", {args.cold_items} of the items held out" if float(args.cold_items) else ""
    print(f"\n{args.schema}, per-user random 80/10/10 split (seeds {args.seeds}{cold}), test:")
    width = 9 if len(seeds) == 1 else 16
    print(f"{'variant':<12}{'recall@20':>{width}}{'ndcg@20':>{width}}{'cold r@20':>{width}}"
          f"{'best ep':>8}{'s/epoch':>8}{'train s':>8}{'peak MiB':>9}")
    for name, runs in rows:
        if runs is None:
            print(f"{name:<12} failed")
            continue
        i = runs[0]["info"]
        cells = [_mean([m[split][metric] for m in runs]) for split, metric in
                 (("test", "recall@20"), ("test", "ndcg@20"), ("test_cold", "recall@20"))]
        print(f"{name:<12}" + "".join(f"{c:>{width}}" for c in cells)
              + f"{i.get('best_epoch', '-'):>8}{i.get('epoch_seconds', 0):>8.2f}"
              f"{i['train_seconds']:>8}{i['peak_rss_mib']:>9}")
    paired(dict(rows), "mf", "ndcg@20")
    return 0


def paired(rows: dict, reference: str, metric: str) -> None:
    """Per-seed test differences of each variant against `reference` on the same split."""
    ref = rows.get(reference)
    if ref is None or len(ref) < 2:
        return
    print(f"\ntest {metric} minus {reference}'s on the same split, seed by seed:")
    for name, runs in rows.items():
        if name == reference or runs is None:
            continue
        diff = [m["test"][metric] - r["test"][metric] for m, r in zip(runs, ref)]
        wins = sum(d > 0 for d in diff)
        print(f"{name:<12}" + " ".join(f"{d:+.4f}" for d in diff)
              + f"   mean {np.mean(diff):+.4f}, ahead on {wins} of {len(diff)}")


if __name__ == "__main__":
    sys.exit(main())
