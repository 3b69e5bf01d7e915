"""Modules imported on first use, for the Chalice blueprints that ``app.py`` imports.

Every Lambda function of the app (the API handler, each queue consumer, each schedule) imports
``app.py``. Whatever a blueprint imports at its top, every function therefore pays at cold start:
the notify worker would load the payments and the portal's templates it never calls
(SERVERLESS-PERF-REL.md B3: ``import app`` ≤ 1.15 × chalice + boto3 + one DynamoDB client). A
blueprint names the services its handlers call with :func:`module`, so each function imports
only those its own handlers reach, when they first do. ``tests/test_architecture.py`` checks
that ``import app`` leaves them unloaded, that each blueprint's typed name matches its module,
and that our modules' top-level imports form no cycle (threads importing two modules of a cycle
at once would get a partly initialised one).

The pattern in a blueprint, typed for mypy and seen by import-linter through the
``TYPE_CHECKING`` import::

    if TYPE_CHECKING:
        from chalicelib.payments import services
    else:
        services = lazy.module("chalicelib.payments.services")

Why our own few lines rather than the standard library's ``importlib.util.LazyLoader``: before
Python 3.12 that loader is not thread-safe (a second thread touching the module while the first
executes it sees a half-made module, and ``chalice local`` serves requests on threads), while
``importlib.import_module`` takes the import system's per-module lock.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for the module named ``name`` and imports it on the first attribute read.

    Reads, writes and deletes of attributes, and ``__dict__``, go to the module itself (so a test
    patching ``blueprint.services.fn`` patches, and then restores, the module every caller sees).
    Raises what the import raises (ModuleNotFoundError for a wrong name), at the first use.
    """

    __slots__ = ("_module", "_name")

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_module", None)

    def _load(self) -> ModuleType:
        loaded: ModuleType | None = object.__getattribute__(self, "_module")
        if loaded is None:
            loaded = importlib.import_module(object.__getattribute__(self, "_name"))
            object.__setattr__(self, "_module", loaded)
        return loaded

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._load(), attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        setattr(self._load(), attr, value)

    def __delattr__(self, attr: str) -> None:
        delattr(self._load(), attr)

    @property
    def __dict__(self) -> dict[str, Any]:  # type: ignore[override]
        """The module's namespace (what ``vars()`` and pytest's monkeypatch read and restore)."""
        return self._load().__dict__

    def __repr__(self) -> str:
        return f"<lazy module {object.__getattribute__(self, '_name')!r}>"


def module(name: str) -> Any:
    """A :class:`LazyModule` for the dotted module ``name`` (typed ``Any``: the blueprint's
    ``TYPE_CHECKING`` import gives mypy the real module)."""
    return LazyModule(name)
