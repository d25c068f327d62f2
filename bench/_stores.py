"""Real stores on 127.0.0.1 for bench/data.py: an S3-compatible server (moto's server mode) and a
plain HTTP server over a folder, each in its own process (so that it does not share the
benchmark's interpreter lock), stopped when the ``with`` block ends."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time

BUCKET = "chorus-bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"no server on 127.0.0.1:{port} after {timeout} s")


@contextlib.contextmanager
def _process(args: list[str], port: int):
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(port, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def s3_server():
    """moto's S3 server; the AWS variables point boto3/s3fs at it (test credentials)."""
    port = free_port()
    with _process([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                  port):
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                          AWS_DEFAULT_REGION="us-east-1",
                          AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{port}")
        import boto3

        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield f"s3://{BUCKET}"


@contextlib.contextmanager
def http_server(folder: str):
    """``python -m http.server`` serving ``folder``; yields its base URL."""
    port = free_port()
    with _process([sys.executable, "-m", "http.server", "-b", "127.0.0.1", "-d", folder,
                   str(port)], port):
        yield f"http://127.0.0.1:{port}"


def upload(folder: str, url: str) -> None:
    """Every file of a shard folder to ``url`` (manifest last)."""
    import fsspec

    fs, base = fsspec.core.url_to_fs(url)
    names = sorted(n for n in os.listdir(folder) if n.endswith(".tar"))
    for name in names + ["manifest.json"]:
        fs.put_file(os.path.join(folder, name), f"{base}/{name}")
