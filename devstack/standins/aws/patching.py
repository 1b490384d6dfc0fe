"""How a service module puts its stand-in into moto's response class: count the calls served, and answer the
actions it takes over (the SSM and Security Hub stand-ins both do exactly this)."""
from __future__ import annotations

import threading
from collections.abc import Callable


def count_calls(response_cls, calls: dict[str, int], lock: threading.Lock) -> None:
    """Every action `response_cls` serves adds one to `calls[action]` (under `lock`) before moto answers it."""
    call_action = response_cls.call_action

    def counted_call_action(self):
        with lock:
            action = self._get_action()
            calls[action] = calls.get(action, 0) + 1
        return call_action(self)

    response_cls.call_action = counted_call_action


def answer_with(response_cls, handlers: dict[str, Callable]) -> None:
    """moto's `response_cls.<action method>` answered by `handler(response)`: installed as functions, not bound
    methods, so moto's response object (the request's parameters, account, region) is what they get."""
    for name, handler in handlers.items():
        setattr(response_cls, name, lambda response, handler=handler: handler(response))
