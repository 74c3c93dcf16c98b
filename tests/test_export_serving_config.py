"""serving/: the TF Serving config files parse as their protos, and the compose file wires them.

tensorflow-serving-api ships ModelServerConfig but not BatchingParameters (session_bundle_config)
nor MonitoringConfig; for those two this test declares the messages itself with TF Serving's
field names and types, so a misspelt field still fails to parse.
"""

import importlib.metadata
import os
import subprocess
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf import wrappers_pb2  # noqa: F401  (registers google/protobuf/wrappers.proto)

SERVING = Path(__file__).resolve().parents[1] / "serving"
F = descriptor_pb2.FieldDescriptorProto


def _declared(package, messages):
    """Message classes from {name: [(field, number, type or message name, repeated)]}."""
    file = descriptor_pb2.FileDescriptorProto(
        name=f"{package.replace('.', '/')}/tfrec_test.proto", package=package, syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    for name, fields in messages.items():
        message = file.message_type.add(name=name)
        for field, number, kind, repeated in fields:
            label = F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL
            if isinstance(kind, str):
                message.field.add(name=field, number=number, label=label, type=F.TYPE_MESSAGE,
                                  type_name=kind)
            else:
                message.field.add(name=field, number=number, label=label, type=kind)
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
            for name in messages}


def _batching_parameters_class():
    try:  # a future tensorflow-serving-api may ship it
        from tensorflow_serving.servables.tensorflow import session_bundle_config_pb2
        return session_bundle_config_pb2.BatchingParameters
    except ImportError:
        i64, s = ".google.protobuf.Int64Value", ".google.protobuf.StringValue"
        return _declared("tensorflow.serving", {"BatchingParameters": [
            ("max_batch_size", 1, i64, False),
            ("batch_timeout_micros", 2, i64, False),
            ("max_enqueued_batches", 3, i64, False),
            ("num_batch_threads", 4, i64, False),
            ("thread_pool_name", 5, s, False),
            ("allowed_batch_sizes", 6, F.TYPE_INT64, True),
            ("pad_variable_length_inputs", 7, F.TYPE_BOOL, False),
            ("enable_large_batch_splitting", 8, F.TYPE_BOOL, False),
            ("max_execution_batch_size", 9, i64, False),
        ]})["BatchingParameters"]


def _monitoring_config_class():
    try:
        from tensorflow_serving.config import monitoring_config_pb2
        return monitoring_config_pb2.MonitoringConfig
    except ImportError:
        return _declared("tensorflow.serving", {
            "PrometheusConfig": [("enable", 1, F.TYPE_BOOL, False),
                                 ("path", 2, F.TYPE_STRING, False)],
            "MonitoringConfig": [("prometheus_config", 1, ".tensorflow.serving.PrometheusConfig",
                                  False)],
        })["MonitoringConfig"]


def _parse(name, cls):
    return text_format.Parse((SERVING / name).read_text(encoding="utf-8"), cls())


def test_models_config_serves_latest_two_versions_of_tfrec():
    from tensorflow_serving.config import model_server_config_pb2

    config = _parse("models.config", model_server_config_pb2.ModelServerConfig)
    (model,) = config.model_config_list.config
    assert (model.name, model.base_path, model.model_platform) == (
        "tfrec", "/models/tfrec", "tensorflow")
    assert model.model_version_policy.latest.num_versions == 2


def test_batching_parameters_are_consistent():
    params = _parse("batching_parameters.txt", _batching_parameters_class())
    sizes = list(params.allowed_batch_sizes)
    assert sizes == sorted(set(sizes)) and sizes[-1] == params.max_batch_size.value
    assert 0 < params.batch_timeout_micros.value <= 5000  # a few ms of the 20 ms p99 budget
    assert params.max_enqueued_batches.value > 0 and params.num_batch_threads.value > 0
    assert not params.pad_variable_length_inputs  # padding would corrupt history rows


def test_batching_typo_fails_to_parse():
    with pytest.raises(text_format.ParseError):
        text_format.Parse("max_batch_sise { value: 8 }", _batching_parameters_class()())


def test_monitoring_config_enables_prometheus():
    config = _parse("monitoring.config", _monitoring_config_class())
    assert config.prometheus_config.enable
    assert config.prometheus_config.path == "/monitoring/prometheus/metrics"


def _service():
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((SERVING / "docker-compose.yml").read_text(encoding="utf-8"))
    (service,) = compose["services"].values()
    return service


def test_compose_runs_gpu_serving_with_these_files():
    service = _service()
    # The TF Serving release of the pinned stack (tensorflow-serving-api 2.21.0), never latest.
    release = importlib.metadata.version("tensorflow-serving-api")
    assert service["image"] == f"tensorflow/serving:{release}-gpu"
    assert {"8500:8500", "8501:8501"} <= set(service["ports"])
    mounts = dict(_mount(volume) for volume in service["volumes"])
    assert mounts["/models/tfrec"]
    flags = dict(flag.lstrip("-").split("=", 1) for flag in service["command"])
    for flag, name in [("model_config_file", "models.config"),
                       ("monitoring_config_file", "monitoring.config")]:
        assert mounts[flags[flag]] == f"./{name}" and (SERVING / name).is_file()
    assert mounts["/config/batching_parameters.txt"] == "./batching_parameters.txt"
    assert flags["batching_parameters_file"] == "/tmp/batching_parameters.txt"  # see below
    assert flags["enable_batching"] == "true"
    health = service["healthcheck"]
    assert "/v1/models/tfrec" in health["test"][-1] and "AVAILABLE" in health["test"][-1]
    assert int(flags["model_config_file_poll_wait_seconds"]) > 0
    (device,) = service["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


def _mount(volume: str) -> tuple[str, str]:
    """'host:container[:ro]' -> (container, host); the host part may hold ${VAR:-default}."""
    parts = volume.rsplit(":", 2) if volume.endswith((":ro", ":rw")) else volume.rsplit(":", 1)
    return parts[1], parts[0]


def test_compose_entrypoint_sets_num_batch_threads_to_the_cores(tmp_path):
    """Runs the compose entrypoint's shell script here, with this machine's paths and `echo`
    for the server: the rewritten file parses and has one batch thread per core."""
    script = _service()["entrypoint"][2].replace("$$", "$")
    script = script.replace("/config/batching_parameters.txt",
                            str(SERVING / "batching_parameters.txt"))
    script = script.replace("/tmp/batching_parameters.txt", str(tmp_path / "b.txt"))
    script = script.replace("exec tensorflow_model_server", "exec echo")
    out = subprocess.run(["sh", "-c", script, "server", "--port=8500"], capture_output=True,
                         text=True, check=True).stdout
    assert out == "--port=8500\n"  # the command's flags reach the server
    params = text_format.Parse((tmp_path / "b.txt").read_text(), _batching_parameters_class()())
    assert params.num_batch_threads.value == len(os.sched_getaffinity(0))  # what nproc counts
    assert params.max_batch_size.value == 64