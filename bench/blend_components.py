"""What a third component would add to a trained run's item-item blend, on VALIDATION only.

Run: TF_USE_LEGACY_KERAS=1 .venv/bin/python bench/blend_components.py --run-dir RUN \
         [--regs 250,500,1000] [--knn 50,100,200]
Restores the run's best model (its members too) and scores the users with a validation
target. Each component's [V, I] scores are put on the per-user "zscore" scale
(tfrec.evaluate.blend), then it prints the valid NDCG@20 of:
  - each component alone: the GNN; EASE for each reg; RP3beta for three (alpha, beta);
    UserKNN for each k (a user's k most cosine-similar users' training items, summed by
    similarity: a user-user signal, which no item-item matrix expresses);
  - the best two-way blend, GNN + EASE, over the weights tfrec's [blend] grid uses;
  - the best three-way blend, GNN + EASE + (RP3beta or UserKNN).
Test is never read. The run's own blend.json is ignored: this measures the components.
"""

import argparse
import itertools

import numpy as np

WEIGHTS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4)  # of EASE, two-way
EASE_3 = (0.15, 0.2, 0.3, 0.4)  # of EASE, three-way
THIRD = (0.05, 0.1, 0.2)  # of the third component
RP3 = ((0.8, 0.6), (1.0, 0.6), (0.8, 0.8))


def user_knn(history, users: np.ndarray, num_items: int, k: int) -> np.ndarray:
    """[V, I] UserKNN scores of `users`: sum over each one's k most cosine-similar other users
    of similarity x their binary training rows."""
    from tfrec.evaluate.item_item import _dense_rows

    everyone = np.arange(len(history[0]) - 1)
    x = _dense_rows(history, everyone, num_items, np.float32)  # [U, I]
    unit = x / np.maximum(np.sqrt(x.sum(1, keepdims=True)), 1.0)
    sim = unit[users] @ unit.T  # [V, U]
    sim[np.arange(len(users)), users] = 0.0
    kth = -np.partition(-sim, k - 1, axis=1)[:, k - 1:k]
    sim[sim < kth] = 0.0
    return sim @ x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="a finished `tfrec train` folder")
    parser.add_argument("--regs", default="250,500,1000", help="EASE ridge values")
    parser.add_argument("--knn", default="50,100,200", help="UserKNN neighbour counts")
    args = parser.parse_args()

    from tfrec.evaluate.blend import normalize
    from tfrec.evaluate.harness import evaluate
    from tfrec.evaluate.item_item import ease_weights, gram, history_scores, rp3beta_weights
    from tfrec.evaluate.scoring import embedding_score_fn
    from tfrec.train.fit import build, embeddings, restore_best
    from tfrec.train.members import combine, restore_members
    from tfrec.train.prepare import prepare
    from tfrec.train.run_dir import RunDir

    run = RunDir(args.run_dir)
    schema, config = run.schema_and_config()
    prepared = prepare(schema, config, False)
    trained = build(prepared, config)
    restore_best(trained, run)
    scores = embedding_score_fn(*combine(
        [embeddings(t) for t in [trained, *restore_members(prepared, config, run)]]))
    history, valid = prepared.csr("train"), prepared.csr("valid")
    users = np.flatnonzero(valid[0][1:] > valid[0][:-1])
    position = np.full(len(history[0]) - 1, -1, np.int64)
    position[users] = np.arange(len(users))
    n = prepared.num_items

    def ndcg(m: np.ndarray) -> float:
        return evaluate(lambda rows: m[position[rows]], prepared, (20,),
                        splits=("valid",))["valid"]["ndcg@20"]

    gnn = normalize(scores(users), "zscore")
    g = gram(history, n)
    ease = {f"EASE reg {r:g}": normalize(history_scores(ease_weights(g, r), history, users),
                                         "zscore")
            for r in map(float, args.regs.split(","))}
    third = {f"RP3beta {a:g}/{b:g}": normalize(history_scores(
        rp3beta_weights(history, n, a, b), history, users), "zscore") for a, b in RP3}
    third.update({f"UserKNN k {k}": normalize(user_knn(history, users, n, int(k)), "zscore")
                  for k in args.knn.split(",")})
    print(f"{args.run_dir}: valid NDCG@20 of {len(users)} users, zscore scale per user")
    for name, m in {"GNN": gnn, **ease, **third}.items():
        print(f"  {name:<18} alone  {ndcg(m):.4f}", flush=True)
    two = max((ndcg((1 - w) * gnn + w * ease[e]), e, w)
              for e, w in itertools.product(ease, WEIGHTS))
    print(f"  GNN + {two[1]} (weight {two[2]:g}): {two[0]:.4f}", flush=True)
    three = max((ndcg((1 - w - v) * gnn + w * ease[e] + v * third[t]), e, w, t, v)
                for e, w, t, v in itertools.product(ease, EASE_3, third, THIRD))
    print(f"  GNN + {three[1]} ({three[2]:g}) + {three[3]} ({three[4]:g}): {three[0]:.4f}")


if __name__ == "__main__":
    main()
