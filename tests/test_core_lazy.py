"""core.lazy: a blueprint's services imported on first use (SERVERLESS-PERF-REL.md B3)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from chalicelib.core import lazy


@pytest.fixture
def slow_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module whose body takes a while and defines its last name at the end."""
    (tmp_path / "fd_slow_module.py").write_text("import time\nFIRST = 1\ntime.sleep(0.3)\nLAST = 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "fd_slow_module"
    sys.modules.pop("fd_slow_module", None)


def test_the_module_is_imported_at_the_first_attribute_read_not_before(slow_module: str) -> None:
    proxy = lazy.module(slow_module)
    assert slow_module not in sys.modules
    assert proxy.LAST == 2
    assert slow_module in sys.modules


def test_threads_reading_it_first_together_all_see_the_whole_module(slow_module: str) -> None:
    """The standard LazyLoader (Python 3.11) hands the second thread a half-executed module
    (AttributeError on LAST); chalice local serves requests on threads."""
    proxy = lazy.module(slow_module)
    seen: list[object] = []

    def read() -> None:
        try:
            seen.append(proxy.LAST)
        except AttributeError as exc:
            seen.append(exc)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [2, 2, 2, 2]


def test_a_patch_through_it_patches_the_module_and_is_undone(monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    proxy = lazy.module("json")
    original = json.dumps
    monkeypatch.setattr(proxy, "dumps", lambda *a, **k: "patched")
    assert json.dumps(1) == "patched" and proxy.dumps(1) == "patched"
    monkeypatch.setattr(proxy, "not_there_before", 1, raising=False)
    monkeypatch.undo()
    assert json.dumps is original and proxy.dumps is original
    assert not hasattr(json, "not_there_before")


def test_a_wrong_name_fails_at_first_use() -> None:
    proxy = lazy.module("chalicelib.no_such_module")
    with pytest.raises(ModuleNotFoundError):
        proxy.anything
