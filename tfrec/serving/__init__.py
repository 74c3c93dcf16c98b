"""Serving a tfrec SavedModel with TF Serving's gRPC and REST APIs (`tfrec serve`), querying it.

Modules, from the disk to the wire:
  model_base      a model base's version folders and the check before serving (no TensorFlow)
  model_store     version folders -> the loaded newest versions; polling, hot swap, unloading
  contract_checks a tfrec model's request checks (unknown ids, k range) made before the graph
  tensors         TensorProto <-> numpy on the hot path
  batching        concurrent calls of one signature merged into one TF call
  predict_service PredictionService (Predict, GetModelMetadata) and ModelService (GetModelStatus)
  monitoring      Prometheus metrics and the access log of both front ends
  rest            TF Serving's REST API (JSON), metrics and health endpoints (waitress)
  serve_config    `tfrec serve`'s options and shared ports, without TensorFlow
  server          the gRPC (and REST) servers, their limits, signal handling
  supervisor      --workers N: N servers sharing the ports, replaced if one dies
  client          gRPC and REST clients using only TF Serving's API (`tfrec query`, tests, bench)
  commands        the `serve` and `query` sub-commands
"""
