"""A name -> object registry with a helpful error for unknown names."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from cluster_ssl.runtime.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (builders, classes); ``get`` raises a UserError listing the choices."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            choices = ", ".join(sorted(self._items))
            raise UserError(f"unknown {self.kind} {name!r}; choose one of: {choices}") from None

    def values(self) -> list[T]:
        """The registered objects, in name order."""
        return [self._items[name] for name in self.names()]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
