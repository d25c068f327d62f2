"""Real stores for the data tests, on 127.0.0.1, started and stopped by the tests.

- :class:`HTTPStore`: the standard library's ``ThreadingHTTPServer`` serving a folder, counting
  the GET requests per path (an independent witness of what the reader downloaded).
- :class:`S3Store`: moto's S3-compatible server (``moto.server.ThreadedMotoServer``), reached by
  boto3 and s3fs over HTTP; the AWS variables point them at it. ``stop()`` and ``start()`` again
  on the same port keep the objects (moto keeps them in this process).
"""
from __future__ import annotations

import functools
import http.server
import logging
import os
import threading
import time
from collections import Counter


class _Handler(http.server.SimpleHTTPRequestHandler):
    counts: Counter
    delay: float = 0.0

    def do_GET(self):
        self.counts[self.path] += 1
        if self.delay and self.path.endswith(".tar"):
            time.sleep(self.delay)                     # a slow link: downloads overlap
        super().do_GET()

    def log_message(self, *args):
        pass


class HTTPStore:
    def __init__(self, folder: str, delay: float = 0.0):
        self.folder = folder
        self.delay = delay
        self.counts: Counter = Counter()
        self.port = 0
        self.server = None

    def start(self) -> "HTTPStore":
        handler = type("Handler", (_Handler,), {"counts": self.counts, "delay": self.delay})
        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", self.port), functools.partial(handler, directory=self.folder))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def url(self, sub: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{sub}".rstrip("/")

    def tar_gets(self, prefix: str = "") -> Counter:
        return Counter({p: n for p, n in self.counts.items()
                        if p.endswith(".tar") and p.startswith("/" + prefix)})


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
          "AWS_DEFAULT_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "1"}


class S3Store:
    def __init__(self, bucket: str):
        self.bucket = bucket
        self.port = 0
        self.server = None

    def start(self) -> "S3Store":
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self.port = self.server.get_host_and_port()[1]
        return self

    def env(self) -> dict:
        return {**S3_ENV, "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{self.port}"}

    def create_bucket(self) -> None:
        import boto3

        boto3.client("s3", endpoint_url=self.env()["AWS_ENDPOINT_URL_S3"]).create_bucket(
            Bucket=self.bucket)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def url(self, sub: str = "") -> str:
        return f"s3://{self.bucket}/{sub}".rstrip("/")

    def keys(self, prefix: str = "") -> list[str]:
        import boto3

        client = boto3.client("s3", endpoint_url=self.env()["AWS_ENDPOINT_URL_S3"])
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                 Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def get(self, key: str) -> bytes:
        import boto3

        client = boto3.client("s3", endpoint_url=self.env()["AWS_ENDPOINT_URL_S3"])
        return client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def put(self, key: str, data: bytes) -> None:
        import boto3

        client = boto3.client("s3", endpoint_url=self.env()["AWS_ENDPOINT_URL_S3"])
        client.put_object(Bucket=self.bucket, Key=key, Body=data)


def fresh_clients() -> None:
    """Forget cached s3fs/http filesystems (they keep the endpoint they were made with)."""
    import fsspec

    for protocol in ("s3", "http", "https"):
        try:
            fsspec.get_filesystem_class(protocol).clear_instance_cache()
        except (ImportError, ValueError):
            pass


def local_files(folder: str) -> dict[str, bytes]:
    """name → bytes of every shard file and the manifest in a local shard folder."""
    return {n: open(os.path.join(folder, n), "rb").read() for n in sorted(os.listdir(folder))
            if n.endswith(".tar") or n == "manifest.json"}
