"""Metrics for people: a table per split (`tfrec train`, `tfrec evaluate`) or JSON (`--json`)."""

import json

import numpy as np


def format_metrics(metrics: dict, ks=(10, 20)) -> str:
    """One row per split of `metrics` ({"valid": {"recall@20": ...}, ...}; "info" skipped):
    recall, NDCG, precision, hit rate and MRR at each K in `ks`; a split without users says
    why."""
    names = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg", "precision", "hit", "mrr")]
    lines = [f"{'split':<10}{'users':>7}" + "".join(f"{n:>13}" for n in names)]
    for split, values in metrics.items():
        if split == "info":
            continue
        if values["num_users"] == 0:
            why = ("no test target is an item without training interactions (hold some out "
                   "with --cold-items)" if split == "test_cold" else "no user has a target")
            lines.append(f"{split:<10}{0:>7}   {why}")
            continue
        lines.append(f"{split:<10}{values['num_users']:>7}"
                     + "".join(f"{values.get(n, np.nan):>13.4f}" for n in names))
    return "\n".join(lines)


def metrics_json(metrics: dict) -> str:
    """`metrics` without its "info" entry, as indented JSON."""
    return json.dumps({s: v for s, v in metrics.items() if s != "info"}, indent=2)
