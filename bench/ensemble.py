"""Ensembles of K trainings of one config (init seeds train.seed = 0, 1, ..., the same split
files), with and without the item-item blend, on valid and test.

Run (PYTHONPATH=. TF_USE_LEGACY_KERAS=1):
    .venv/bin/python bench/ensemble.py --config configs/movielens.toml \
        --split 0=RUN_S0_M0,RUN_S0_M1,RUN_S0_M2 --split 1=... --split 2=... \
        [--methods raw,zscore,rank,max] [--cache DIR] [--json OUT.json]

Each --split names the finished run folders of one split (`tfrec train --split-dir` on the
same files, configs equal but for train.seed; the first is member 1, the shipped model). Each
member's best checkpoint gives its full score matrix S_k [U, I] = user_emb @ item_emb^T (+ bias).
An ensemble of K members averages the first K matrices on one per-user scale:
    raw: mean_k S_k;   zscore / rank / max: mean_k normalize(S_k) (tfrec.evaluate.blend).
Every ensemble is scored alone and with the item-item blend of --config's [blend] fitted on
top of it (tfrec.train.blend.fit_blend: grid chosen on each split's VALIDATION metric, as
`tfrec train` does), by tfrec.evaluate.harness.evaluate (full ranking; training items
excluded, and valid items for test).

Choices are made on MEAN VALID over the splits: the scale per K, then K. Test is printed for
every row, as the estimate of each; only the row valid chooses is the result.
"""

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

SCALES = ("raw", "zscore", "rank", "max")


def parse_split(text: str) -> tuple[int, list[str]]:
    """"0=RUN_A,RUN_B" -> (0, ["RUN_A", "RUN_B"])."""
    seed, _, runs = text.partition("=")
    if not runs or not seed.isdigit():
        raise argparse.ArgumentTypeError(f"--split {text!r} is not SEED=RUN,RUN,...")
    return int(seed), runs.split(",")


def member_scores(run_dirs: list[str], cache: Path | None):
    """(Prepared of the members' shared split, [S_k [U, I] float32]) of finished runs whose
    configs differ in train.seed at most."""
    import dataclasses

    from tfrec.train.fit import build, embeddings, restore_best
    from tfrec.train.prepare import prepare
    from tfrec.train.run_dir import RunDir

    runs = [RunDir(d) for d in run_dirs]
    schema, config = runs[0].schema_and_config()
    for run in runs[1:]:
        other_schema, other = run.schema_and_config()
        same = dataclasses.replace(other, train=dataclasses.replace(
            other.train, seed=config.train.seed))
        if other_schema != schema or same != config:
            sys.exit(f"{run.path}: another schema or config than {runs[0].path} (only "
                     "train.seed may differ)")
    prepared = prepare(schema, config, progress=False)
    out = []
    for run in runs:
        file = cache / (re.sub(r"[^\w.-]", "_", str(Path(run.path).resolve())) + ".npy") \
            if cache else None
        if file is not None and file.is_file():
            out.append(np.load(file))
            continue
        trained = build(prepared, config)
        restore_best(trained, run)
        user, item, bias = embeddings(trained)
        s = (user @ item.T + (0.0 if bias is None else bias[np.newaxis, :])).astype(np.float32)
        if file is not None:
            np.save(file, s)
        out.append(s)
    return prepared, out


def combine(scores: list[np.ndarray], scale: str) -> np.ndarray:
    """[U, I] mean of the members' [U, I] scores on `scale` (module doc)."""
    from tfrec.evaluate.blend import normalize

    return np.mean([s if scale == "raw" else normalize(s, scale) for s in scores], axis=0,
                   dtype=np.float32)


def score_rows(prepared, matrix: np.ndarray, blend_config, metric: str) -> dict:
    """Valid/test `metric` of `matrix` [U, I] alone and with the blend chosen on valid."""
    from tfrec.evaluate.harness import evaluate
    from tfrec.train.blend import fit_blend

    ks = blend_config.eval.ks
    alone_fn = lambda rows: matrix[rows]  # noqa: E731
    alone = evaluate(alone_fn, prepared, ks, splits=("valid", "test"))
    row = {"valid": alone["valid"][metric], "test": alone["test"][metric]}
    if blend_config.blend.item_item == "off":
        return row
    blend, report = fit_blend(prepared, blend_config, alone_fn)
    blended = alone if blend is None else evaluate(blend.score_fn(alone_fn), prepared, ks,
                                                   splits=("valid", "test"))
    chosen = report["chosen"]
    row.update(blend_valid=blended["valid"][metric], blend_test=blended["test"][metric],
               blend_choice="alone" if chosen is None else
               f"{chosen['item_item'].get('reg', '')} {chosen['method']} {chosen['weight']:g}")
    return row


def variants(k_max: int, scales: list[str]) -> list[tuple[int, str]]:
    """(K, scale) of every ensemble scored: K = 1 once (a scale does not change one member's
    ranking), each scale for K >= 2."""
    return [(1, "raw")] + [(k, s) for k in range(2, k_max + 1) for s in scales]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="TOML whose [blend] is fitted on top")
    p.add_argument("--split", type=parse_split, action="append", required=True,
                   metavar="SEED=RUN,RUN,...")
    p.add_argument("--methods", default=",".join(SCALES), help="member scales to average on")
    p.add_argument("--cache", type=Path, help="folder for the members' score matrices")
    p.add_argument("--json", type=Path, help="write every row here too")
    args = p.parse_args()
    from tfrec.config import load_config

    blend_config = load_config(args.config)
    metric = blend_config.eval.early_stop
    scales = args.methods.split(",")
    if args.cache:
        args.cache.mkdir(parents=True, exist_ok=True)
    rows = {}  # (K, scale) -> {seed: row}
    members = {}  # seed -> [(valid, test)] of each member alone
    for seed, runs in sorted(args.split):
        prepared, scores = member_scores(runs, args.cache)
        members[seed] = [tuple(score_rows(prepared, s, _off(blend_config), metric).values())
                         for s in scores]
        for k, scale in variants(len(scores), scales):
            rows.setdefault((k, scale), {})[seed] = r = score_rows(
                prepared, combine(scores[:k], scale), blend_config, metric)
            print(f"split {seed} K={k} {scale}: {json.dumps(r)}", flush=True)
    print_tables(rows, members, metric)
    if args.json:
        args.json.write_text(json.dumps({"members": members, "rows": [
            {"K": k, "scale": s, "splits": v} for (k, s), v in rows.items()]}, indent=1) + "\n")
    return 0


def _off(config):
    import dataclasses

    return dataclasses.replace(config, blend=dataclasses.replace(config.blend, item_item="off"))


def print_tables(rows: dict, members: dict, metric: str) -> None:
    seeds = sorted(members)
    print(f"\n{metric} of each member alone (valid / test):")
    for seed in seeds:
        print(f"  split {seed}: " + "  ".join(f"m{i + 1} {v:.4f} / {t:.4f}"
                                             for i, (v, t) in enumerate(members[seed])))
    cols = ("valid", "test", "blend_valid", "blend_test")
    head = " | ".join(f"s{s} {c}" for s in seeds for c in ("valid", "test", "+blend valid",
                                                            "+blend test", "blend"))
    print(f"\n| K | scale | {head} | mean valid | mean test | mean +blend valid | "
          "mean +blend test |")
    print("|" + " --- |" * (6 + 5 * len(seeds)))
    means = {}
    for (k, scale), per in rows.items():
        cells = []
        for s in seeds:
            r = per.get(s, {})
            cells += [f"{r[c]:.4f}" if c in r else "-" for c in cols] + [r.get("blend_choice",
                                                                             "-")]
        if len(per) == len(seeds):
            means[(k, scale)] = {c: float(np.mean([per[s][c] for s in seeds]))
                                 for c in cols if c in per[seeds[0]]}
        m = means.get((k, scale), {})
        print(f"| {k} | {scale} | " + " | ".join(cells) + " | " +
              " | ".join(f"{m[c]:.4f}" if c in m else "-" for c in cols) + " |")
    key = "blend_valid" if any("blend_valid" in m for m in means.values()) else "valid"
    print(f"\nchoices on mean valid ({key}):")
    best_k = {}
    for (k, scale), m in means.items():
        if k not in best_k or m[key] > means[best_k[k]][key]:
            best_k[k] = (k, scale)
    for k, choice in sorted(best_k.items()):
        m = means[choice]
        others = ", ".join(f"{s} {means[(kk, s)][key]:.5f}" for (kk, s) in means if kk == k)
        print(f"  K={k}: scale {choice[1]}: mean valid {m[key]:.5f}, mean test "
              f"{m[key.replace('valid', 'test')]:.4f}  (valid by scale: {others})")
    if best_k:
        final = max(best_k.values(), key=lambda c: means[c][key])
        print(f"  chosen: K={final[0]} {final[1]}")


if __name__ == "__main__":
    sys.exit(main())
