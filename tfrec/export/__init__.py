"""Export: a trained run -> a versioned SavedModel for TF Serving.

Modules, in the order an export runs through them:
  from_run        a finished training run -> `ExportArtifacts` (best checkpoint, tables, scorer)
  artifacts       `ExportArtifacts`: what serving computes with, and its validation
  serving_module  `ServingModule`: the tf.Module with the signatures of CONTRACT.md
  versions        `export_model`: choose the version, stage, warm-up, metadata, atomic rename
  commands        `tfrec export`
Import `tfrec.export.versions` / `serving_module` explicitly: they import TensorFlow.
"""
