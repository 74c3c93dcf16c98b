"""bench/blend_components.py's UserKNN component on a hand-worked three-user history."""

import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_blend_components",
                                               ROOT / "bench/blend_components.py")
bc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bc)

# user 0 has items {0, 1}, user 1 {1, 2}, user 2 {0}: unit rows (1, 1, 0)/sqrt 2,
# (0, 1, 1)/sqrt 2, (1, 0, 0), so cos(0, 1) = 1/2, cos(0, 2) = 1/sqrt 2, cos(1, 2) = 0
HISTORY = (np.array([0, 2, 4, 5]), np.array([0, 1, 1, 2, 0]))


def test_user_knn_sums_the_nearest_users_rows_by_similarity():
    r = 1 / np.sqrt(2)
    # k = 1: user 0's nearest other user is user 2 (1/sqrt 2), whose row is item 0
    np.testing.assert_allclose(bc.user_knn(HISTORY, np.array([0]), 3, 1), [[r, 0, 0]],
                               rtol=1e-6)
    # k = 2: 1/2 x user 1's row + 1/sqrt 2 x user 2's; user 1 never counts itself
    np.testing.assert_allclose(bc.user_knn(HISTORY, np.array([0, 1]), 3, 2),
                               [[r, 0.5, 0.5], [0.5, 0.5, 0]], rtol=1e-6, atol=1e-7)
