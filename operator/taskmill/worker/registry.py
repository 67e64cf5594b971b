"""Handler registration: ``@taskmill.handler("send_email")``.

A handler is a plain function, sync or async, taking the payload and,
optionally, a :class:`~taskmill.worker.context.HandlerContext`. Its return
value (JSON-serialisable, small) becomes ``status.result``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from taskmill.models.base import HANDLER_TYPE
from taskmill.worker.context import HandlerContext
from taskmill.worker.errors import Fail, Retry

__all__ = ["Fail", "HandlerContext", "HandlerSpec", "Registry", "Retry", "handler", "registry"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class HandlerSpec:
    type: str
    func: Callable[..., Any]
    is_async: bool
    wants_context: bool
    #: Per-attempt limit when the Task does not set ``timeoutSeconds``.
    timeout_seconds: float | None = None


class Registry:
    """Handlers by type. Workers load modules, whose decorators fill the default one."""

    def __init__(self) -> None:
        self._handlers: dict[str, HandlerSpec] = {}

    def register(
        self, type_: str, func: Callable[..., Any], *, timeout_seconds: float | None
    ) -> None:
        if not re.match(HANDLER_TYPE, type_):
            raise ValueError(f"invalid handler type {type_!r}: must match {HANDLER_TYPE}")
        if type_ in self._handlers and self._handlers[type_].func is not func:
            raise ValueError(f"handler type {type_!r} is registered twice")
        params = [
            p
            for p in inspect.signature(func).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        if not 1 <= len(params) <= 2:
            raise TypeError(f"handler {type_!r} must take (payload) or (payload, ctx)")
        self._handlers[type_] = HandlerSpec(
            type=type_,
            func=func,
            is_async=inspect.iscoroutinefunction(func),
            wants_context=len(params) == 2,
            timeout_seconds=timeout_seconds,
        )

    def get(self, type_: str) -> HandlerSpec | None:
        return self._handlers.get(type_)

    @property
    def types(self) -> list[str]:
        return sorted(self._handlers)

    def __len__(self) -> int:
        return len(self._handlers)


#: The registry the ``@handler`` decorator fills by default.
registry = Registry()


def handler(
    type_: str, *, timeout_seconds: float | None = None, into: Registry | None = None
) -> Callable[[F], F]:
    """Register the decorated function as the handler of Tasks of ``type_``."""

    def decorate(func: F) -> F:
        target = into if into is not None else registry
        target.register(type_, func, timeout_seconds=timeout_seconds)
        return func

    return decorate
