"""Triggers that serialize as their constructor arguments, named once.

The triggerer rebuilds a trigger from ``serialize()``: class path and keyword arguments.
Listing the arguments once (``ARGUMENTS``, each kept as the attribute of the same name)
means a new argument cannot be forgotten there and silently dropped by the triggerer.
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.triggers.base import BaseTrigger


class ArgumentsTrigger(BaseTrigger):
    """Base of the provider's triggers: ``serialize`` is the class path and ``ARGUMENTS``' attributes."""

    ARGUMENTS: ClassVar[tuple[str, ...]] = ()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        cls = type(self)
        return f"{cls.__module__}.{cls.__qualname__}", {name: getattr(self, name) for name in self.ARGUMENTS}
