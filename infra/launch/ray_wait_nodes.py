"""Wait until a Ray cluster has the expected number of alive nodes, then print its resources.

Cluster launch scripts (infra/slurm/tune_ray.sbatch) start the head and the workers in the background
and call this before `chorus tune`, so that the search sees every node from its first trial.

    python infra/launch/ray_wait_nodes.py --address HEAD_IP:6379 --nodes 4 [--timeout 600]

Exit status 0 once the nodes are there, 1 on timeout (also when the head's GCS port does not accept a
TCP connection before the deadline: ``ray.init`` itself would retry an unreachable head for minutes).
"""
from __future__ import annotations

import argparse
import socket
import sys
import time


def wait_for_port(address: str, deadline: float) -> bool:
    """True once HOST:PORT accepts a TCP connection, False if it has not by ``deadline`` (monotonic)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            with socket.create_connection((host, int(port)), timeout=min(left, 5.0)):
                return True
        except OSError:
            pass
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True, help="GCS address of the head, HOST:PORT")
    parser.add_argument("--nodes", type=int, required=True, help="alive nodes to wait for")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before giving up")
    args = parser.parse_args(argv)

    host, sep, port = args.address.rpartition(":")
    if not sep or not host or not port.isdigit():
        parser.error(f"--address {args.address!r} is not HOST:PORT")

    deadline = time.monotonic() + args.timeout
    if not wait_for_port(args.address, deadline):
        print(f"ray cluster at {args.address}: the head's GCS port did not accept a connection within "
              f"{args.timeout:g} s", file=sys.stderr, flush=True)
        return 1

    import ray

    try:
        ray.init(address=args.address, logging_level="ERROR", log_to_driver=False)
    except (ConnectionError, RuntimeError) as e:      # the port answered, but not as a Ray head
        print(f"ray cluster at {args.address}: {e}", file=sys.stderr, flush=True)
        return 1
    try:
        while True:
            alive = [node for node in ray.nodes() if node.get("Alive")]
            if len(alive) >= args.nodes:
                resources = ray.cluster_resources()
                print(
                    f"ray cluster at {args.address}: {len(alive)} nodes, "
                    f"{resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs",
                    flush=True,
                )
                return 0
            if time.monotonic() > deadline:
                print(
                    f"ray cluster at {args.address}: {len(alive)} of {args.nodes} nodes after "
                    f"{args.timeout:g} s",
                    file=sys.stderr,
                    flush=True,
                )
                return 1
            time.sleep(1.0)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
