"""tfrec-native-load (serving/native/loadgen.cc, the bench's native load generator) against
tfrec-native-serve for ~1 s: good requests all answered, bad ones all counted as failures; a
known mix of good and bad requests (--calls, --invalid) counted exactly. Skipped when the
binaries are not built (make native)."""

import subprocess

import numpy as np
import pytest

from tfrec.export.synthetic import random_artifacts
from tfrec.export.versions import export_model
from tfrec.serving import native

from test_serving_grpc import CASES, MODEL, k, request

pytestmark = pytest.mark.skipif(
    not (native.binary().is_file() and native.load_binary().is_file()),
    reason="tfrec-native-serve / tfrec-native-load are not built (make native)")


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    """HOST:PORT of tfrec-native-serve on a small model."""
    base = tmp_path_factory.mktemp("load") / MODEL
    export_model(random_artifacts(num_users=20, num_items=50, dim=8), base, version=1)
    process = subprocess.Popen(native.command(base, port=0, poll_seconds=0),
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline()  # "tfrec-native-serve: model ... on HOST:PORT (pid N)"
    assert " on " in line, f"tfrec-native-serve did not start (exit {process.poll()})"
    yield line.split(" on ")[1].split()[0]
    process.terminate()
    assert process.wait(timeout=30) == 0


@pytest.mark.parametrize("channels", ["own", "shared"])
def test_good_requests_are_all_answered(target, tmp_path, channels):
    good = [request("serving_default", **CASES["serving_default"]).SerializeToString()]
    path = native.write_requests(tmp_path / "good.bin", good * 3)
    result = native.run_load(target, path, clients=3, seconds=1, channels=channels)
    assert result["requests"] > 0
    assert result["failures"] == 0, result["first_failure"]
    assert result["qps"] > 0 and 0 < result["p50_ms"] <= result["p99_ms"]
    assert result["cpu_seconds"] > 0


def test_bad_requests_are_all_failures(target, tmp_path):
    path = native.write_requests(tmp_path / "bad.bin", [b"not a PredictRequest"])
    result = native.run_load(target, path, clients=2, seconds=1)
    assert result["requests"] > 0
    assert result["failures"] == result["requests"]
    assert result["first_failure"].startswith("3: ")  # INVALID_ARGUMENT
    assert result["qps"] == 0


def test_a_known_mix_of_bad_requests_is_counted_exactly(target, tmp_path):
    good = request("serving_default", **CASES["serving_default"]).SerializeToString()
    bad = [  # (request, the code it must get): refused, refused, answered OK, another code
        (b"not a PredictRequest", 3),  # INVALID_ARGUMENT
        (request(user_id=np.array([b"u1"]), k=k(0)).SerializeToString(), 3),
        (good, 3),
        (request(name="nope", **CASES["serving_default"]).SerializeToString(), 3),  # NOT_FOUND
    ]
    good_path = native.write_requests(tmp_path / "good.bin", [good])
    bad_path = native.write_requests(tmp_path / "bad.bin", *map(list, zip(*bad)))
    result = native.run_load(target, good_path, clients=2, calls=30, invalid=0.2,
                             invalid_file=bad_path)
    # 6 bad calls per client, spread evenly; client 0 goes round the bad list from its first
    # request (refused: 0 1 0 1), client 1 from its third (refused: 0 1)
    assert (result["requests"], result["invalid"], result["refused"]) == (60, 12, 6)
    assert result["failures"] == 12 - 6  # the good calls are all answered
    assert "answered" in result["first_failure"] and "(expected 3)" in result["first_failure"]
    assert result["qps"] > 0 and 0 < result["p50_ms"] <= result["p99_ms"]  # of the 48 good
