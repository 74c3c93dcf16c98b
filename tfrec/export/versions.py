"""Writes one SavedModel version of a trained tfrec model for TF Serving (see CONTRACT.md).

`export_model` runs, in order:
  1. validate the artifacts (shapes, ids, CSR, JSON metadata): one sentence on anything wrong;
  2. choose the version: `max(existing) + 1`, or the one asked for (never an existing one);
  3. build the `ServingModule` (tfrec.export.serving_module) and trace its signatures;
  4. remove the `BASE/.export-*` folders left by killed exports (never a running one's);
  5. save it into `BASE/.export-<version>-*` (a dot folder, which TF Serving ignores), holding
     an exclusive lock on its `.lock` file for as long as the export runs;
  6. write `assets.extra/tf_serving_warmup_requests` (requests name the model after BASE, the
     name `tfrec serve` gives it) and `assets.extra/tfrec_metadata.json`;
  7. rename the folder to `BASE/<version>`: TF Serving only ever sees a complete version.
"""

import datetime
import fcntl
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import tfrec
from tfrec.errors import TfrecError
from tfrec.export.artifacts import ExportArtifacts, validate_artifacts
from tfrec.export.serving_module import ServingModule, signature_names
from tfrec.tf_setup import import_tf

tf = import_tf()

__all__ = ["METADATA_FILE", "WARMUP_FILE", "export_model", "list_versions"]

WARMUP_FILE = "tf_serving_warmup_requests"
METADATA_FILE = "tfrec_metadata.json"
STAGING_PREFIX = ".export-"
_LOCK_FILE = ".lock"
_UNLOCKED_GRACE_S = 60.0  # a staging folder without its lock yet may be one just created


def list_versions(model_base: str | Path) -> list[int]:
    """Sorted version numbers of the complete SavedModels under `model_base` (numeric folders)."""
    base = Path(model_base)
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())


def export_model(
    artifacts: ExportArtifacts, model_base: str | Path, version: int | None = None
) -> Path:
    """Writes `artifacts` as the SavedModel `model_base/<version>/` and returns that path.

    Args:
      artifacts: the trained model, reduced to arrays and optional Keras scorer / text encoder.
      model_base: the folder TF Serving watches (`base_path` in models.config); created if absent.
      version: a positive version number that must not exist yet; default max existing + 1.

    The version folder appears atomically (temporary dot folder, then rename): on any failure
    the temporary folder is removed and no version folder appears. Older versions are kept.
    """
    validate_artifacts(artifacts)
    base = Path(model_base)
    if base.exists() and not base.is_dir():
        raise TfrecError(f"model base {base} exists but is not a folder.")
    existing = list_versions(base)
    if version is None:
        version = (existing[-1] + 1) if existing else 1
    elif isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise TfrecError(f"version must be a positive integer, got {version!r}.")
    target = base / str(version)
    if target.exists():
        raise TfrecError(
            f"version {version} already exists at {target}; versions are never replaced."
        )
    metadata = _metadata_json(artifacts, version)
    base.mkdir(parents=True, exist_ok=True)

    remove_stale_exports(base)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{version}-", dir=base))
    lock = _lock(staging)
    try:
        module = ServingModule(artifacts)
        tf.saved_model.save(module, str(staging), signatures=module.signatures())
        extra = staging / "assets.extra"
        extra.mkdir(exist_ok=True)
        _write_warmup(artifacts, extra / WARMUP_FILE, model_name=base.resolve().name)
        (extra / METADATA_FILE).write_text(metadata, encoding="utf-8")
        (staging / _LOCK_FILE).unlink()  # the descriptor keeps the lock until closed
        try:
            # os.rename refuses a non-empty target: a version that appeared meanwhile survives.
            os.rename(staging, target)
        except OSError as e:
            raise TfrecError(f"could not move the export into {target} ({e.strerror}).") from e
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        os.close(lock)
    return target


def remove_stale_exports(base: Path) -> list[Path]:
    """Removes the staging folders of exports that died (killed, power cut); returns them.

    A running export holds an exclusive flock on its folder's `.lock` (released by the kernel
    when its process dies), so a folder whose lock can be taken is stale; a folder without a
    lock file is stale once older than a minute (a live export creates it right away).
    """
    removed = []
    for folder in base.glob(f"{STAGING_PREFIX}*"):
        lock_path = folder / _LOCK_FILE
        try:
            fd = os.open(lock_path, os.O_RDWR)
        except FileNotFoundError:
            try:
                stale = time.time() - folder.stat().st_mtime > _UNLOCKED_GRACE_S
            except FileNotFoundError:
                continue  # renamed into its version meanwhile
        except OSError:
            continue
        else:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                stale = True
            except BlockingIOError:
                stale = False  # an export in progress
            finally:
                os.close(fd)
        if stale and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _lock(staging: Path) -> int:
    """An open descriptor holding an exclusive flock on `staging/.lock`."""
    fd = os.open(staging / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


# === assets.extra ===


def _warmup_requests(artifacts: ExportArtifacts, model_name: str) -> list:
    """One PredictRequest per signature for `model_name`, on real ids; k is sent as [1] so
    batching accepts it."""
    from tensorflow_serving.apis import predict_pb2

    users = np.asarray(artifacts.user_ids).astype(str)
    items = np.asarray(artifacts.item_ids).astype(str)
    indptr = np.asarray(artifacts.seen_indptr)
    indices = np.asarray(artifacts.seen_indices).reshape(-1)
    k = np.array([min(10, len(items))], np.int32)
    history = items[indices[indptr[0] : indptr[1]][:20]] if indptr[1] > indptr[0] else items[:1]
    title = str(np.asarray(artifacts.item_titles).astype(str)[0]) or items[0]
    inputs = {
        "serving_default": {"user_id": users[:1], "k": k},
        "history": {"history": history.reshape(1, -1), "k": k},
        "score": {"user_id": users[:1], "item_ids": items[: min(5, len(items))].reshape(1, -1)},
        "similar_items": {"item_id": items[:1], "k": k},
        "item_text": {"text": np.array([title])},
    }
    requests = []
    for name in signature_names(artifacts):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = name
        for key, value in inputs[name].items():
            value = value.astype(object) if value.dtype.kind == "U" else value
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        requests.append(request)
    return requests


def _write_warmup(artifacts: ExportArtifacts, path: Path, model_name: str) -> None:
    """Writes the warm-up PredictionLog records TF Serving replays before serving a version."""
    from tensorflow_serving.apis import prediction_log_pb2

    with tf.io.TFRecordWriter(str(path)) as writer:
        for request in _warmup_requests(artifacts, model_name):
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())


def _metadata_json(artifacts: ExportArtifacts, version: int) -> str:
    """artifacts.metadata + export time, version, sizes and signature list, as JSON text."""
    metadata = dict(artifacts.metadata)
    metadata.update(
        export_time=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        version=version,
        tfrec_version=tfrec.__version__,
        signatures=signature_names(artifacts),
        num_users=len(artifacts.user_ids),
        num_items=len(artifacts.item_ids),
        embedding_dim=int(np.asarray(artifacts.item_embeddings).shape[1]),
    )
    try:
        text = json.dumps(metadata, indent=2, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise TfrecError(f"artifacts.metadata is not JSON-serialisable: {e}.") from e
    return text + "\n"
