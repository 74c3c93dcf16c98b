"""RecBole 1.2.1's models and tfrec on the SAME split files, in one run, in one table.

Run from the repository root with tfrec's venv (the peers' venv is created on first use):
  .venv/bin/python bench/peers/compare.py --schema schemas/movielens.pbtxt \
      --config configs/movielens.toml [--seeds 0,1,2] [--split random|temporal] \
      [--models Pop,EASE,...|all] [--max-epochs 100] [--budget 420] [--parallel] \
      [--no-tfrec] [--agree EASE] [--out DIR] [--report]

Stages, per split (`--seeds` of the random per-user 80/10/10 split, or the temporal one):
  1. `tfrec data build --seed N` writes the split files (OUT/NAME/build/splits/*.tsv);
  2. atomic.write_atomic turns them into RecBole atomic files (benchmark_filename
     train/valid/test, every item of the schema, the knowledge graph when there is one);
  3. every peer model runs in the peers' venv (recbole_run.py, one subprocess each): full
     ranking over all items, training items excluded (and valid items for test), Recall /
     NDCG / MRR / Hit / Precision @10/@20, embeddings 64 wide, early stopping on valid NDCG@20
     (patience 10, at most --max-epochs epochs and --budget seconds of training), grids
     chosen on valid (PEERS below);
  4. `tfrec train --split-dir` on the same split files, with --config (a finished run in
     OUT refits only its [blend]: `--models none` re-scores tfrec alone after a config change;
     with a blend chosen on valid the model alone gets a row of its own);
  5. the table: model, valid NDCG@20, test NDCG@20, test Recall@20, best / run epochs, wall
     seconds (dataset loading, training, all evaluations); and with --agree MODEL, that model's
     full score matrix scored by RecBole's evaluator and by tfrec.evaluate.metrics side by side.
A model that cannot run is listed with its reason. Results: OUT/results.json; another run with
the same --out (e.g. --models RecVAE --no-tfrec) adds or replaces its own models there, and
--report prints the tables of OUT again.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from atomic import SPLITS, write_atomic  # noqa: E402
from peer_venv import ENV, ensure_venv  # noqa: E402

HERE = Path(__file__).resolve().parent
TFREC = str(Path(sys.executable).parent / "tfrec")  # the console script of tfrec's venv
COMMON = {
    "benchmark_filename": list(SPLITS),
    "load_col": {"inter": ["user_id", "item_id"], "item": ["item_id"]},
    "eval_args": {"mode": "full", "group_by": "user", "order": "RO"},
    "metrics": ["Recall", "NDCG", "MRR", "Hit", "Precision"], "topk": [10, 20],
    "valid_metric": "NDCG@20", "metric_decimal_place": 8,
    "stopping_step": 10, "eval_step": 1, "seed": 0, "reproducibility": True,
    "use_gpu": False, "show_progress": False, "embedding_size": 64,
}
KG_COLUMNS = {"kg": ["head_id", "relation_id", "tail_id"], "link": ["item_id", "entity_id"]}
TRAINED = None  # placeholder: the model trains for up to --max-epochs / --budget
# Embedding models learn at 0.005, not RecBole's default 0.001: at 0.001 they need hundreds of
# epochs, more than the time budget of a shared 2-core machine allows (a budget choice, not
# tuned on valid; see the README).
FAST = {"epochs": TRAINED, "learning_rate": 0.005}
# RecBole model -> (settings on top of COMMON, grid chosen on valid NDCG@20 or None).
# Non-neural models fit in one "epoch". Anything not set is RecBole 1.2.1's default.
PEERS = {
    "Pop": ({"epochs": 1}, None),
    "ItemKNN": ({"epochs": 1}, [{"k": k} for k in (50, 100, 200, 400)]),
    "EASE": ({"epochs": 1}, [{"reg_weight": w} for w in (100.0, 250.0, 500.0, 1000.0, 2000.0,
                                                          3000.0, 5000.0)]),
    "ADMMSLIM": ({"epochs": 1}, None),
    "SLIMElastic": ({"epochs": 1}, None),
    "MultiVAE": ({"epochs": TRAINED, "latent_dimension": 64}, None),
    "RecVAE": ({"epochs": TRAINED, "latent_dimension": 64}, None),
    "BPR": (FAST, None),
    "LightGCN": (FAST, None),
    "NGCF": ({**FAST, "hidden_size_list": [64, 64, 64]}, None),
    "SGL": (FAST, None),
    "CKE": ({**FAST, "kg_embedding_size": 64}, None),
    "KGCN": (FAST, None),
    "KGAT": ({**FAST, "kg_embedding_size": 64}, None),
    "KGIN": (FAST, None),
}
KG_MODELS = {"CKE", "KGCN", "KGAT", "KGIN"}


def run_peer(python: Path, model: str, data_path: Path, name: str, work: Path,
             limits: argparse.Namespace, dump: Path | None, has_kg: bool) -> dict:
    """The result dict of recbole_run.py for one model, or {"error": reason}."""
    if model in KG_MODELS and not has_kg:
        return {"error": "the schema has no knowledge graph"}
    settings, grid = PEERS[model]
    config = {**COMMON, **settings, "checkpoint_dir": str(work / "saved")}
    budget = None
    if config["epochs"] is TRAINED:
        config["epochs"], budget = limits.max_epochs, limits.budget
    if model in KG_MODELS:
        config["load_col"] = {**config["load_col"], **KG_COLUMNS}
    work.mkdir(parents=True, exist_ok=True)
    spec = {"model": model, "data_path": str(data_path), "dataset": name, "work_dir": str(work),
            "config": config, "grid": grid, "budget": budget,
            "dump_scores": str(dump) if dump else None}
    (work / "spec.json").write_text(json.dumps(spec, indent=1))
    log = work / "log.txt"
    start = time.time()
    try:
        with log.open("w") as f:
            done = subprocess.run([str(python), str(HERE / "recbole_run.py"),
                                   str(work / "spec.json")], cwd=work, stdout=f,
                                  stderr=subprocess.STDOUT, timeout=limits.timeout,
                                  env={**os.environ, **ENV})
    except subprocess.TimeoutExpired:
        return {"error": f"killed after the {limits.timeout:.0f} s time limit"}
    lines = log.read_text().splitlines()
    result = next((json.loads(x.removeprefix("PEER_RESULT ")) for x in reversed(lines)
                   if x.startswith("PEER_RESULT ")), None)
    if done.returncode != 0 or result is None:
        last = next((x for x in reversed(lines) if x.strip()), "no output")
        return {"error": f"failed ({last.strip()[:160]}; see {log})"}
    result["wall"] = time.time() - start
    return result


def run_tfrec(schema: str, config: str | None, split_dir: Path, run_dir: Path) -> dict:
    """metrics.json of `tfrec train` on the split files, with its wall seconds.

    A run folder that already holds a finished run of the same model (an earlier bench run
    with the same --out) is not trained again: `tfrec train` refits only its [blend]; the wall
    is then the earlier training's seconds (its metrics.json) plus this refit's. With a blend
    chosen on valid, the result holds the model alone under "model_alone"."""
    cmd = [TFREC, "train", "--schema", schema, "--split-dir",
           str(split_dir), "--run-dir", str(run_dir), "--no-progress"]
    if config:
        cmd += ["--config", config]
    refit = (run_dir / "metrics.json").exists()
    start = time.time()
    with (run_dir.parent / f"{run_dir.name}{'-refit' if refit else ''}.log").open("w") as f:
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        return {"error": f"tfrec train exited {done.returncode} (see {run_dir}.log)"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    info = metrics.get("info", {})
    wall = time.time() - start
    out = {"valid": metrics["valid"], "test": metrics["test"],
           "wall": wall + (info.get("train_seconds", 0) if refit else 0),
           "best_epoch": info.get("best_epoch"), "epochs_run": info.get("epochs_run")}
    blend = info.get("blend") or {}
    if blend.get("chosen"):
        fit = blend["chosen"].get("item_item") or {"reg": blend["chosen"]["reg"]}  # older runs
        out["chosen"] = {**{k: v for k, v in fit.items() if k != "model"},
                         "weight": blend["chosen"]["weight"]}
        out["chosen_method"] = blend["chosen"]["method"]
        out["model_alone"] = {**blend["model_alone"], "wall": out["wall"],
                              "best_epoch": out["best_epoch"], "epochs_run": out["epochs_run"]}
    return out


def agreement(dump: Path, split_dir: Path) -> dict[str, tuple[float, float]]:
    """{metric: (RecBole's, tfrec's)} on the test split for the dumped score matrix."""
    from tfrec.evaluate.metrics import csr_from_pairs, full_ranking_metrics, metric_names

    d = np.load(dump)
    users = {u: r for r, u in enumerate(d["users"])}
    items = {i: c for c, i in enumerate(d["items"])}

    def csr(*names):
        pairs = [line.split("\t") for n in names for line in
                 (split_dir / f"{n}.tsv").read_text().splitlines()[1:] if line]
        return csr_from_pairs([users[u] for u, _ in pairs], [items[i] for _, i in pairs],
                              len(users))

    ours = full_ranking_metrics(d["scores"], csr("train", "valid"), csr("test"))
    theirs = json.loads(str(d["recbole_test"]))
    return {m: (theirs[m], ours[m]) for m in metric_names()}


def build_split(schema: str, seed: int, method: str, out: Path) -> Path:
    """`tfrec data build` into `out` (once); returns its splits folder."""
    if not (out / "splits" / "test.tsv").exists():
        done = subprocess.run([TFREC, "data", "build", "--schema", schema, "--out", str(out),
                               "--split", method, "--seed", str(seed)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            sys.exit(f"tfrec data build failed:\n{done.stdout[-3000:]}")
    return out / "splits"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--schema", default="schemas/movielens.pbtxt")
    p.add_argument("--config", help="tfrec's config file (default: the built-in defaults)")
    p.add_argument("--seeds", default="0", help="seeds of the random split, e.g. 0,1,2")
    p.add_argument("--split", choices=("random", "temporal"), default="random")
    p.add_argument("--models", default="all", help=f"comma-separated, of {','.join(PEERS)} "
                   "(or none: tfrec alone)")
    p.add_argument("--max-epochs", type=int, default=100,
                   help="epoch cap of the trained peers (they early-stop before, on valid)")
    p.add_argument("--budget", type=float, default=480, help="training seconds of a trained "
                   "peer: no epoch starts after it, the best epoch on valid so far is kept")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per peer model, "
                   "then it is killed and listed as not run")
    p.add_argument("--no-tfrec", action="store_true", help="peers only")
    p.add_argument("--parallel", action="store_true", help="train tfrec while the peers run "
                   "(two jobs at once: every wall time grows)")
    p.add_argument("--agree", default="EASE", help="the model whose scores both evaluators "
                   "score ('' for none)")
    p.add_argument("--peers-venv", help="the peers' venv (default ~/.cache/tfrec/peers-venv)")
    p.add_argument("--out", help="work folder (default: a new temp folder)")
    p.add_argument("--report", action="store_true", help="only print the tables of --out")
    args = p.parse_args()
    models = {"all": list(PEERS), "none": []}.get(args.models, args.models.split(","))
    unknown = [m for m in models if m not in PEERS]
    if unknown:
        p.error(f"unknown peer model(s) {unknown}; known: {', '.join(PEERS)}")
    out = Path(args.out or tempfile.mkdtemp(prefix="tfrec-peers-")).resolve()
    seeds = [int(s) for s in args.seeds.split(",")] if args.split == "random" else [0]
    dataset = Path(args.schema).stem.replace("-", "_")
    saved = out / "results.json"
    if args.report:
        report(_load(saved), args)
        return 0
    python = ensure_venv(args.peers_venv)
    for seed in seeds:
        label = f"{args.split}-seed{seed}" if args.split == "random" else "temporal"
        split_dir = build_split(args.schema, seed, args.split, out / label / "build")
        atomic = write_atomic(split_dir.parent, out / label / "atomic", dataset, args.schema)
        has_kg = (atomic / f"{dataset}.kg").exists()
        rows: dict[str, dict] = {}  # model -> result, of this run
        tfrec = None
        if not args.no_tfrec:
            name = f"tfrec ({args.config or 'defaults'})"
            tfrec = threading.Thread(target=lambda: rows.__setitem__(name, run_tfrec(
                args.schema, args.config, split_dir, out / label / "tfrec")))
            if args.parallel:
                tfrec.start()
        for model in models:
            print(f"== {label} {model}", flush=True)
            dump = out / label / f"{model}-scores.npz" if model == args.agree else None
            rows[model] = run_peer(python, model, atomic.parent, dataset, out / label / model,
                                   args, dump, has_kg)
            if dump and dump.exists():
                rows[model]["agreement"] = agreement(dump, split_dir)
            print("   " + _row(model, rows[model]), flush=True)
            _save(saved, label, model, rows[model])
        if tfrec is not None:
            if not args.parallel:
                tfrec.start()
            tfrec.join()
            print("   " + _row(name, rows[name]), flush=True)
            _save(saved, label, name, rows[name])
            if "model_alone" in rows[name]:  # the blend's model alone, beside it
                alone = f"{name} model alone"
                print("   " + _row(alone, rows[name]["model_alone"]), flush=True)
                _save(saved, label, alone, rows[name]["model_alone"])
    report(_load(saved), args)
    print(f"\nresults: {out / 'results.json'}")
    return 0


def _load(saved: Path) -> dict:
    return json.loads(saved.read_text()) if saved.exists() else {}


def _save(saved: Path, label: str, model: str, result: dict) -> None:
    """Adds one result to OUT/results.json, keeping what other runs on the same --out wrote."""
    results = _load(saved)
    results.setdefault(label, {})[model] = result
    tmp = saved.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1, default=str))
    tmp.replace(saved)


def _row(model: str, r: dict) -> str:
    if "error" in r:
        return f"{model:<34} not run: {r['error']}"
    epochs = f"{r.get('best_epoch')}/{r.get('epochs_run')}" + ("*" if r.get("out_of_time") else "")
    chosen = " " + ",".join(f"{k}={v:g}" for k, v in r["chosen"].items()) if r.get(
        "chosen") else ""
    return (f"{model + chosen:<34}{r['valid']['ndcg@20']:>9.4f}{r['test']['ndcg@20']:>9.4f}"
            f"{r['test']['recall@20']:>10.4f}{epochs:>9}{r['wall']:>8.0f}")


def report(results: dict, args) -> None:
    head = (f"{'model':<34}{'valid':>9}{'test':>9}{'test':>10}{'epochs':>9}{'wall':>8}\n"
            f"{'':<34}{'NDCG@20':>9}{'NDCG@20':>9}{'Recall@20':>10}{'best/run':>9}{'s':>8}")
    for label, rows in results.items():
        print(f"\n{args.schema}, {label} split (80/10/10 per user); full ranking; test for the "
              "setting and epoch chosen on valid:\n" + head)
        for model, r in rows.items():
            print(_row(model, r))
        for model, r in rows.items():
            if "agreement" in r:
                diff = max(abs(a - b) for a, b in r["agreement"].values())
                print(f"\nevaluator agreement on {model}'s test score matrix (max |diff| "
                      f"{diff:.2e}):")
                for m, (a, b) in r["agreement"].items():
                    print(f"  {m:<13} RecBole {a:.6f}  tfrec {b:.6f}")
    if len(results) > 1:
        summary(results)


def summary(results: dict) -> None:
    """Means over the splits, and tfrec minus the best peer (chosen on mean valid), per split."""
    labels = list(results)
    models = [m for m in results[labels[0]] if all("error" not in results[s].get(m, {"error": 1})
                                                   for s in labels)]
    mean = {m: {k: np.mean([results[s][m][part]["ndcg@20" if k != "recall" else "recall@20"]
                            for s in labels]) for k, part in
                (("valid", "valid"), ("test", "test"), ("recall", "test"))} for m in models}
    print(f"\nmean over {len(labels)} splits ({', '.join(labels)}):")
    for m in models:
        print(f"{m:<34}{mean[m]['valid']:>9.4f}{mean[m]['test']:>9.4f}{mean[m]['recall']:>10.4f}")
    ours = [m for m in models if m.startswith("tfrec")]
    peers = [m for m in models if not m.startswith("tfrec")]
    if ours and peers:
        best = max(peers, key=lambda m: mean[m]["valid"])
        for m in ours:
            diff = [results[s][m]["test"]["ndcg@20"] - results[s][best]["test"]["ndcg@20"]
                    for s in labels]
            print(f"\n{m} minus the best peer on valid ({best}), test NDCG@20 per split: "
                  + " ".join(f"{d:+.4f}" for d in diff) + f"  mean {np.mean(diff):+.4f} "
                  f"({np.mean(diff) / mean[best]['test'] * 100:+.1f}%)")


if __name__ == "__main__":
    sys.exit(main())
