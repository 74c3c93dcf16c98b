"""The public API of tfrec.evaluate: changes must be deliberate, and importing it stays light."""

import subprocess
import sys

import tfrec  # noqa: F401
import tfrec.evaluate


def test_public_api_is_reviewed():
    assert sorted(tfrec.evaluate.__all__) == [
        "cold_item_mask",
        "csr_from_pairs",
        "embedding_score_fn",
        "filter_targets",
        "full_ranking_metrics",
        "metric_names",
        "popularity_score_fn",
        "popularity_scores",
    ]
    for name in tfrec.evaluate.__all__:
        assert getattr(tfrec.evaluate, name).__doc__, name


def test_import_does_not_load_tensorflow():
    code = "import sys, tfrec.evaluate; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
