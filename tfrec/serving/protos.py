"""TF Serving's generated protobuf modules, importable without loading TensorFlow.

`tensorflow_serving.apis.*_pb2` import `tensorflow.core...` modules, and importing those runs
tensorflow/__init__.py, which loads all of TensorFlow (4-13 s here). The REST gateway of
`tfrec serve --native` only needs the messages: when TensorFlow is not imported yet, the
modules are imported under a bare `tensorflow` package (its folder only, ~0.2 s), which is
taken away again so that a later `import tensorflow` is the real one.
"""

import importlib.util
import sys
import types


def _bare_tensorflow():
    """Registers a bare `tensorflow` package if TensorFlow is not imported; returns it or None."""
    if "tensorflow" in sys.modules:
        return None
    bare = types.ModuleType("tensorflow")
    bare.__path__ = list(importlib.util.find_spec("tensorflow").submodule_search_locations)
    sys.modules["tensorflow"] = bare
    return bare


_bare = _bare_tensorflow()
try:
    from tensorflow.core.framework import tensor_pb2, types_pb2
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_pb2,
        predict_pb2,
    )
finally:
    if _bare is not None and sys.modules.get("tensorflow") is _bare:
        del sys.modules["tensorflow"]

DEFAULT_SIGNATURE = "serving_default"  # a request without a signature name asks for it
SIGNATURE_DEF_FIELD = "signature_def"  # GetModelMetadata's only metadata field

__all__ = ["DEFAULT_SIGNATURE", "SIGNATURE_DEF_FIELD", "get_model_metadata_pb2",
           "get_model_status_pb2", "model_pb2", "predict_pb2", "tensor_pb2", "types_pb2"]
