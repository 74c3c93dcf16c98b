"""tfrec: a graph + language-model recommender on TF-GNN, KerasNLP and TensorFlow Recommenders.

Importing tfrec selects Keras 2 (tf-keras) for TensorFlow: `TF_USE_LEGACY_KERAS=1` must be set
before TensorFlow is first imported, so it is set here, at the top of the package.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
if os.environ.get("TFREC_DEBUG", "") in ("", "0"):  # TFREC_DEBUG=1 shows TensorFlow's C++ logs
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfrec.errors import TfrecError  # noqa: E402

__version__ = "0.1.0"
__all__ = ["TfrecError", "__version__"]
