"""A name -> object table filled by registration, with one shape for every kind of plug-in:
`register(name, obj)` registers now and returns obj; `@register(name)` is the decorator form."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from lmforge.errors import UserError

T = TypeVar("T")


class Registry(dict, Generic[T]):
    def __init__(self, kind: str, flag: str):
        super().__init__()
        self.kind, self.flag = kind, flag

    def register(self, name: str, obj: T | None = None) -> Any:
        def deco(o: T) -> T:
            self[name] = o
            return o

        return deco(obj) if obj is not None else deco

    def lookup(self, name: str) -> T:
        """The entry for a flag's value, or one line naming the flag and what is known."""
        if name not in self:
            known = ", ".join(sorted(self)) or "none registered"
            raise UserError(
                f"{self.flag} {name}: unknown {self.kind}; known: {known}",
                hint="register one in a file passed to --external_plugins",
            )
        return self[name]
