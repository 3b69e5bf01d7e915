#!/usr/bin/env python3
"""Set up and run Frontdesk on a fresh machine with only Python 3.11, Node and Java.

    python3 dev.py demo     # set up, then run the demo on the embedded default
    python3 dev.py test     # set up, then run the whole test suite
    python3 dev.py lint     # set up, then ruff, mypy and the import-linter layers contract
    python3 dev.py setup    # only set up

Set-up (idempotent, skipped when nothing changed): creates ``.venv/`` in the repository root,
installs requirements-dev.txt into it, and installs DynamoDB Local and axe-core from npm.
Extra arguments go to the command (python3 dev.py test -m "not slow", python3 dev.py demo --no-serve).
Standard library only, since it runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"


def _digest(*names: str) -> str:
    h = hashlib.sha256()
    for name in names:
        h.update((ROOT / name).read_bytes())
    return h.hexdigest()


def _run(cmd: list[str], **kw: object) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, **kw)  # type: ignore[arg-type]


def setup() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this runs on whatever python3 the machine has
        sys.exit("Python 3.11 or newer is needed")
    for tool, why in (("npm", "Node.js 20+ (npm installs DynamoDB Local)"), ("java", "Java 11+ (runs DynamoDB Local)")):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} was not found: install {why}")
    if not PY.exists():
        _run([sys.executable, "-m", "venv", str(VENV)])
    stamp = VENV / ".requirements.sha256"
    want = _digest("requirements.txt", "requirements-dev.txt")
    if not stamp.exists() or stamp.read_text() != want:
        _run([str(PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              "-r", "requirements-dev.txt"])
        stamp.write_text(want)
    npm_stamp = ROOT / "node_modules" / ".package-lock.sha256"
    want_npm = _digest("package.json", "package-lock.json")
    if not npm_stamp.exists() or npm_stamp.read_text() != want_npm:
        _run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"])
        npm_stamp.write_text(want_npm)


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    if not argv or argv[0] not in ("demo", "test", "lint", "setup"):
        if argv:
            print(f"unknown command {argv[0]!r}")
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    setup()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if command == "setup":
        return 0
    if command == "demo":
        os.chdir(ROOT)  # become the demo, so Ctrl-C and kill reach it (and it stops its servers)
        os.execve(str(PY), [str(PY), "-m", "chalicelib.cli", "demo", *rest], env)  # noqa: S606
        return 0  # not reached
    if command == "test":
        return subprocess.call([str(PY), "-m", "pytest", *rest], cwd=ROOT, env=env)
    bin_ = VENV / "bin"
    for cmd in ([str(bin_ / "ruff"), "check", "."],
                [str(bin_ / "mypy")],
                [str(bin_ / "lint-imports")]):
        print("+", " ".join(cmd), flush=True)
        if subprocess.call(cmd, cwd=ROOT, env=env):
            return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
