"""Start a local Ray instance for a search, or join an existing cluster.

``address`` (``--address``) or ``RAY_ADDRESS`` joins a running cluster; otherwise a private local
instance is started (no dashboard, its own temporary folder recording its owner) and shut down
afterwards; what a killed driver's instance left is cleaned up first (:mod:`chorus.tune.ray_leftovers`).
An already initialised Ray (e.g. a test's shared instance) is used as it is and left running.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from typing import Iterator, Optional

from chorus.tune.ray_leftovers import PREFIX, clean_dead_instances, write_owner

# Environment variables handed on to trial processes (set where the driver runs).
PASSED_ENV = ("MLFLOW_DISABLE_TELEMETRY", "MLFLOW_TRACKING_URI", "RAY_AUTH_MODE", "PYTHONHASHSEED",
              "TORCH_EXTENSIONS_DIR")


def runtime_env() -> dict:
    """The ``runtime_env`` given to ``ray.init``: the driver's relevant environment variables."""
    return {"env_vars": {k: os.environ[k] for k in PASSED_ENV if k in os.environ}}


@contextlib.contextmanager
def ray_session(address: Optional[str] = None, num_cpus: Optional[int] = None,
                num_gpus: Optional[int] = None, temp_dir: Optional[str] = None) -> Iterator[dict]:
    """Context manager around ``ray.init``. Yields ``{"started": bool, "address": str, "startup_s": float}``."""
    import time

    import ray

    if ray.is_initialized():
        yield {"started": False, "address": "existing", "startup_s": 0.0}
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    owned_tmp = None
    t0 = time.perf_counter()
    if address and address != "local":
        ray.init(address=address, runtime_env=runtime_env(), log_to_driver=True)
    else:
        # a driver killed earlier may have left its instance's agents and folder: stop and remove them
        clean_dead_instances(stream=sys.stderr)
        if temp_dir is None:
            # Short path: Ray's socket paths must stay under ~107 characters.
            temp_dir = owned_tmp = tempfile.mkdtemp(prefix=PREFIX, dir="/tmp")
            write_owner(temp_dir)
        kwargs = {"num_cpus": num_cpus}
        if num_gpus is not None:
            kwargs["num_gpus"] = num_gpus
        saved = os.environ.pop("RAY_ADDRESS", None)  # "local" must not join the cluster it names
        try:
            ray.init(include_dashboard=False, _temp_dir=temp_dir, runtime_env=runtime_env(), **kwargs)
        finally:
            if saved is not None:
                os.environ["RAY_ADDRESS"] = saved
    info = {"started": True, "address": address or "local", "startup_s": time.perf_counter() - t0}
    try:
        yield info
    finally:
        ray.shutdown()
        if owned_tmp:
            shutil.rmtree(owned_tmp, ignore_errors=True)
