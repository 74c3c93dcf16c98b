"""Popularity vs ID-only MF vs tfrec (and its ablations) on seeded splits: valid, then test.

Run: .venv/bin/python bench/train_compare.py [--schema schemas/movielens.pbtxt]
         [--config configs/movielens.toml] [--variants popularity,mf,full,sampled,no_text,no_kg,no_gnn]
         [--seeds 0,1,2] [--split random|temporal] [--ratios 0.8,0.1,0.1] [--cold-items 0.05]
         [--out /tmp/tfrec-bench]
Each variant is a `tfrec train` subprocess (so its peak memory is its own) on the per-user
random 80/10/10 split (seed 0, or the mean over --seeds; --ratios 0.2,0.1,0.7 leaves a sparse
training graph, --split temporal tests each user's newest pairs). MF is tuned on every split:
each setting of MF_GRID is trained and the best on valid NDCG@20 is reported. Prints NDCG@20 on
valid, Recall@20 / NDCG@20 on test, the cold-start slice (with --cold-items: the test pairs of
the items held out whole), best epoch, seconds per epoch, total training seconds and peak
memory. With several seeds and "mf" among the variants, each other variant is also compared
with MF seed by seed, on valid and on test.

Test never chooses anything: every choice the bench makes is made on valid (MF's grid setting,
per split; each run's best epoch, by `tfrec train`'s early stopping on `eval.early_stop`), and
test is reported only for what valid chose. The variants are fixed configurations reported side
by side, not candidates the bench picks from: compare them on the valid column, read test as
the estimate for the one you would pick on valid.
"""

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import numpy as np

VARIANTS = {  # config overrides; the gnn variants go on top of --config
    "popularity": {"model": {"kind": "popularity"}},
    # MF: the model without features, text, KG or message passing; plain dot products + L2
    "mf": {"model": {"kind": "mf", "normalize": False, "item_bias": False},
           "train": {"epochs": 60, "learning_rate": 0.005, "temperature": 1.0,
                     "batch_size": 1024}},
    "full": {},
    "sampled": {"train": {"mode": "sampled"}},  # the same model on sampled subgraphs
    "no_text": {"model": {"use_text": False}},
    "no_kg": {"model": {"use_kg": False}},
    "no_gnn": {"model": {"layers": 0}},
}
# MF is tuned on each split: every combination is trained and the best on valid NDCG@20 is kept
# (a sparser training graph wants a larger L2)
MF_GRID = {("model", "dim"): (64, 128), ("train", "weight_decay"): (0.05, 0.1, 0.2)}


def candidates(name: str) -> list[tuple[str, dict]]:
    """(label, overrides) of each setting a variant tries: MF's grid, else the variant alone."""
    over = VARIANTS[name]
    if name != "mf":
        return [("", over)]
    out = []
    for values in itertools.product(*MF_GRID.values()):
        merged = {section: dict(keys) for section, keys in over.items()}
        for (section, key), value in zip(MF_GRID, values):
            merged.setdefault(section, {})[key] = value
        out.append((" ".join(f"{k}={v}" for (_, k), v in zip(MF_GRID, values)), merged))
    return out


def variant_config(over: dict, base: dict) -> str:
    """The TOML config of a variant: baselines as they are, gnn variants merged onto base."""
    from tfrec.config import config_from_dict, to_toml

    values = {} if "kind" in over.get("model", {}) else base
    merged = {s: {**values.get(s, {}), **over.get(s, {})} for s in {*values, *over}}
    return to_toml(config_from_dict(merged))


def train_variant(name: str, seed: str, command: list[str], base: dict, out: Path):
    """metrics.json of the variant's run on the split `seed` (for MF: the run best on valid
    among MF_GRID's), or None if a run failed (its output is printed)."""
    tried = []
    for i, (label, over) in enumerate(candidates(name)):
        config = out / f"{name}{i or ''}.toml"
        config.write_text(variant_config(over, base))
        run = out / f"{name}{i or ''}-seed{seed}"
        cmd = command + ["--config", str(config), "--run-dir", str(run)]
        print(f"== {name} {label}: {' '.join(cmd)}", flush=True)
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            print(done.stdout[-3000:])
            return None
        tried.append((label, json.loads((run / "metrics.json").read_text())))
    label, best = max(tried, key=lambda t: t[1]["valid"]["ndcg@20"])
    if len(tried) > 1:
        print(f"   {name}, seed {seed}: {label} is best on valid "
              f"(ndcg@20 {best['valid']['ndcg@20']:.4f})", flush=True)
    return best


def _mean(values):
    if np.isnan(values).all():  # e.g. no cold-start test pairs
        return "-"
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
    parser.add_argument("--split", choices=("random", "temporal"), default="random",
                        help="per-user split (temporal: each user's newest pairs are tested)")
    parser.add_argument("--ratios", default="0.8,0.1,0.1", help="train,valid,test shares")
    parser.add_argument("--cold-items", default="0", help="share of items held out whole")
    args = parser.parse_args()
    base = tomllib.loads(Path(args.config).read_text()) if args.config else {}
    out = Path(args.out or tempfile.mkdtemp(prefix="tfrec-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    tfrec = str(Path(sys.executable).parent / "tfrec")
    seeds = args.seeds.split(",")
    rows = []
    split = ["--split", args.split, "--ratios", args.ratios, "--cold-items", args.cold_items]
    for name in args.variants.split(","):
        runs = []
        for seed in seeds:
            best = train_variant(name, seed, [tfrec, "train", "--schema", args.schema,
                                              "--no-progress", "--seed", seed, *split], base, out)
            if best is None:
                break
            runs.append(best)
        rows.append((name, runs if len(runs) == len(seeds) else None))
    cold = f", {args.cold_items} of the items held out" if float(args.cold_items) else ""
    shares = "/".join(f"{float(r) * 100:g}" for r in args.ratios.split(","))
    print(f"\n{args.schema}, per-user {args.split} {shares} split (seeds {args.seeds}{cold}); "
          "test for what valid chose:")
    width = 10 if len(seeds) == 1 else 16
    print(f"{'':<12}{'valid':>{width}}{'test':>{width * 3}}")
    print(f"{'variant':<12}{'ndcg@20':>{width}}{'recall@20':>{width}}{'ndcg@20':>{width}}"
          f"{'cold r@20':>{width}}{'best ep':>8}{'s/epoch':>8}{'train s':>8}{'peak MiB':>9}")
    for name, runs in rows:
        if runs is None:
            print(f"{name:<12} failed")
            continue
        i = runs[0]["info"]
        cells = [_mean([m[split][metric] for m in runs]) for split, metric in
                 (("valid", "ndcg@20"), ("test", "recall@20"), ("test", "ndcg@20"),
                  ("test_cold", "recall@20"))]
        print(f"{name:<12}" + "".join(f"{c:>{width}}" for c in cells)
              + f"{i.get('best_epoch', '-'):>8}{i.get('epoch_seconds', 0):>8.2f}"
              f"{i['train_seconds']:>8}{i['peak_rss_mib']:>9}")
    for split in ("valid", "test"):
        paired(dict(rows), "mf", split, "ndcg@20")
    return 0


def paired(rows: dict, reference: str, split: str, metric: str) -> None:
    """Per-seed differences on `split` of each variant against `reference` on the same split."""
    ref = rows.get(reference)
    if ref is None or len(ref) < 2:
        return
    print(f"\n{split} {metric} minus {reference}'s on the same split, seed by seed:")
    for name, runs in rows.items():
        if name == reference or runs is None:
            continue
        diff = [m[split][metric] - r[split][metric] for m, r in zip(runs, ref)]
        wins = sum(d > 0 for d in diff)
        print(f"{name:<12}" + " ".join(f"{d:+.4f}" for d in diff)
              + f"   mean {np.mean(diff):+.4f}, ahead on {wins} of {len(diff)}")


if __name__ == "__main__":
    sys.exit(main())
