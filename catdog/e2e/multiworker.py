"""Ray Train's set-up for MultiWorkerMirroredStrategy, from a module that does not import TensorFlow.

The strategy finds its peers in TF_CONFIG, which a Ray Train backend writes on every worker before the
training function starts. Ray's own backend config (`ray.train.tensorflow.TensorflowConfig`) lives in
a package whose `__init__` imports TensorFlow, so Ray Train's controller, which unpickles it, and the
driver, which imports it, both loaded TensorFlow without using it, before the workers could start
(benchmarks/train_startup.py measures a small run both ways). Unlike Ray's, it does not set
TF_USE_LEGACY_KERAS=1: catdog trains with Keras 3.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass

import ray
from ray.train.backend import Backend, BackendConfig


@dataclass
class MultiWorkerConfig(BackendConfig):
    @property
    def backend_cls(self) -> type[Backend]:
        return MultiWorkerBackend


class MultiWorkerBackend(Backend):
    def on_start(self, worker_group, backend_config: MultiWorkerConfig) -> None:
        addresses = worker_group.execute(_free_address)
        for rank in range(len(worker_group)):
            worker_group.execute_single(rank, _set_tf_config, addresses, rank)


def _free_address() -> str:
    """host:port where this worker can listen for its peers."""
    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    host = ray.util.get_node_ip_address()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _set_tf_config(addresses: list[str], rank: int) -> None:
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": rank}})
