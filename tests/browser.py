"""Browser-test fixtures: ``chalice local`` on the test DynamoDB Local, and Debian's Chromium
driven by Playwright (``playwright install`` cannot download browsers here; DESIGN.md Tests).

Without /usr/bin/chromium the browser tests are skipped with the reason, except under CI
(``CI=true``), where ``.ci/run`` installs Chromium and a missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from chalicelib import dynamodb_local

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", "--disable-quic"]


def _need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Chromium is required in CI (apt-get install chromium)")
        pytest.skip("browser tests need Debian's chromium: apt-get install chromium")


@pytest.fixture(scope="session")
def live_outbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder where the served app's console channel writes every message it sends."""
    return tmp_path_factory.mktemp("outbox")


def sent_codes(outbox: Path, *, clinic_id: str, to: str) -> list[str]:
    """The one-time codes the served app sent to ``to`` for ``clinic_id``, newest first."""
    from chalicelib.notify.channels.console import FILE_NAME

    path = outbox / FILE_NAME
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()] if path.exists() else []
    found = [re.search(r"\b(\d{6})\b", str(r.get("text"))) for r in rows
             if r.get("to") == to and r.get("meta", {}).get("clinic_id") == clinic_id]
    return [m.group(1) for m in reversed(found) if m]


@pytest.fixture(scope="session")
def live_server(dynamodb_endpoint: str, live_outbox: Path) -> Iterator[str]:
    """``chalice local`` serving app.py against the test table; yields its base URL. Its
    messages go to ``live_outbox`` (read with :func:`sent_codes`)."""
    with serve_app(dynamodb_endpoint, env={"FRONTDESK_OUTBOX_DIR": str(live_outbox)}) as base:
        yield base


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    _need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Run axe-core (from npm, injected into the page) for WCAG 2.0-2.2 A/AA; return violations."""
    page.wait_for_load_state("load")  # after a click the next document may still be arriving
    page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    result = page.evaluate(
        "async () => (await axe.run(document, {runOnly: {type: 'tag', values: "
        "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']}})).violations"
    )
    return [{"id": v["id"], "nodes": [n["target"] for n in v["nodes"]][:3]} for v in result]


@contextmanager
def serve_app(endpoint: str, *, port: int | None = None, env: dict[str, str] | None = None) -> Iterator[str]:
    """``chalice local`` serving app.py against DynamoDB Local at ``endpoint`` (``env`` adds or
    overrides settings such as FRONTDESK_TABLE); yields its base URL, stops it afterwards."""
    port = port or dynamodb_local.free_port()
    base = f"http://127.0.0.1:{port}"
    # DynamoDB Local on a loaded 2-core CI box can pause past the 2 s read timeout meant for AWS;
    # the served app then answers "try again" and a browser step waits in vain (seen in CI).
    full = dict(os.environ, AWS_ENDPOINT_URL_DYNAMODB=endpoint, FRONTDESK_PORTAL_URL=base,
                PYTHONPATH=str(ROOT), AWS_DEFAULT_REGION="us-east-1", FRONTDESK_DDB_READ_TIMEOUT="10")
    full.update(env or {})
    chalice = str(Path(sys.executable).parent / "chalice")
    command = [chalice, "local", "--stage", "local", "--port", str(port), "--no-autoreload"]
    # chalice local logs every request on stderr: into a file, never an unread pipe (a full
    # pipe blocks the server mid-request once the session has made enough of them).
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=full, stdout=subprocess.DEVNULL, stderr=log)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(f"{base}/health", timeout=1).read()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        err = log.read().decode(errors="replace")
                        raise RuntimeError(f"chalice local did not start: {err[-2000:]}") from None
                    time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
