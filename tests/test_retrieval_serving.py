"""The hook through which ``datatransfer serve`` registers the retrieval
provider (datatransfer.markets.retrieval.serving): the provider's
``register_provider`` is called with the Manager and the node's block
store when its module exists, nothing happens while it does not, and a
provider that fails to import is an error, not a missing provider."""

from __future__ import annotations

import logging
import sys
import types
from typing import Any

import pytest

from datatransfer.markets.retrieval import serving
from datatransfer.markets.retrieval.serving import (
    PROVIDER_MODULE,
    provider_available,
    provider_setup,
)


def test_the_provider_is_registered_when_its_module_exists(monkeypatch) -> None:
    calls: list[tuple[Any, ...]] = []
    fake = types.ModuleType(PROVIDER_MODULE)
    fake.register_provider = lambda *args: calls.append(args)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, PROVIDER_MODULE, fake)
    store, manager = object(), object()
    assert provider_available()
    provider_setup(lambda: store)(manager)
    assert calls == [(manager, store, None, None)]


def test_nothing_is_registered_while_the_provider_does_not_exist(monkeypatch, caplog) -> None:
    caplog.set_level(logging.INFO, logger=serving.__name__)
    monkeypatch.setitem(sys.modules, PROVIDER_MODULE, None)  # import: ModuleNotFoundError
    assert not provider_available()
    provider_setup(lambda: pytest.fail("no provider: the store is not asked for"))(object())
    assert "retrieval deal proposals (Lassie's) are refused" in caplog.text


def test_a_provider_that_fails_to_import_is_an_error(monkeypatch) -> None:
    def broken(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == PROVIDER_MODULE:
            raise ModuleNotFoundError("No module named 'nonexistent_dependency'",
                                      name="nonexistent_dependency")
        return real(name, *args, **kwargs)

    import importlib

    real = importlib.import_module
    monkeypatch.delitem(sys.modules, PROVIDER_MODULE, raising=False)
    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(ModuleNotFoundError, match="nonexistent_dependency"):
        provider_available()
