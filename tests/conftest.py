"""Shared fixtures: example models exported once per test session, seeded inputs, tolerances."""

from __future__ import annotations

import warnings

import numpy as np
import onnxruntime as ort
import pytest

from gearshift.frontend.examples import BertConfig, bert_inputs, mlp, small_cnn, tiny_bert
from gearshift.frontend.load import export_torch

# Output agreement with ONNX Runtime that every compiled model must meet.
ATOL, RTOL = 1e-4, 1e-3


def ort_run(model_bytes: bytes, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"]).run(None, inputs)


def assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_allclose(actual, expected, atol=ATOL, rtol=RTOL)


@pytest.fixture(scope="session", autouse=True)
def _quiet():
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


@pytest.fixture(scope="session")
def bert_config() -> BertConfig:
    return BertConfig()


@pytest.fixture(scope="session")
def bert_feeds(bert_config) -> dict[str, np.ndarray]:
    return bert_inputs(bert_config, batch=2, seq_len=16)


@pytest.fixture(scope="session", params=["legacy", "dynamo"])
def bert_onnx(request, bert_config, bert_feeds) -> bytes:
    """TinyBert exported by each of torch's exporters, as ONNX bytes."""
    proto = export_torch(tiny_bert(bert_config), bert_feeds, exporter=request.param,
                         output_names=["last_hidden_state"])
    return proto.SerializeToString()


@pytest.fixture(scope="session")
def mlp_case() -> tuple[object, dict[str, np.ndarray]]:
    x = np.random.default_rng(1).standard_normal((3, 64)).astype(np.float32)
    return mlp((64, 96, 40)), {"x": x}


@pytest.fixture(scope="session")
def cnn_case() -> tuple[object, dict[str, np.ndarray]]:
    x = np.random.default_rng(2).standard_normal((1, 3, 20, 20)).astype(np.float32)
    return small_cnn(8), {"image": x}


@pytest.fixture(scope="session")
def mlp_onnx(tmp_path_factory, mlp_case) -> str:
    """The MLP as an .onnx file on disk."""
    module, feeds = mlp_case
    path = tmp_path_factory.mktemp("models") / "mlp.onnx"
    path.write_bytes(export_torch(module, feeds, output_names=["y"]).SerializeToString())
    return str(path)


def wait_registered(address: str, key: str, count: int = 1, timeout: float = 30.0, alive=lambda: True) -> bool:
    """Wait until the tracker at `address` has `count` free servers under `key` (they register
    asynchronously); False on timeout or once `alive()` says the server died."""
    import time

    from tvm import rpc

    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while rpc.connect_tracker(host, int(port)).summary()["queue_info"].get(key, {}).get("free", 0) < count:
        if not alive() or time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def start_rpc(key: str, servers: int = 1):
    """A real TVM RPC tracker with `servers` RPC servers registered under `key` on this machine (what
    phones would register with). Returns ("127.0.0.1:port", stop)."""
    from tvm.rpc.server import Server
    from tvm.rpc.tracker import Tracker

    tracker = Tracker(host="127.0.0.1", port=9190, port_end=9290, silent=True)
    started = [Server(host="127.0.0.1", port=9300, port_end=9400, key=key, tracker_addr=("127.0.0.1", tracker.port),
                      silent=True) for _ in range(servers)]
    wait_registered(f"127.0.0.1:{tracker.port}", key, servers, timeout=30)  # up to 30 s on a slow machine

    def stop():
        for server in started:
            server.terminate()
        tracker.terminate()

    return f"127.0.0.1:{tracker.port}", stop
