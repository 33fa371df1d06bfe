"""The base of every typed view of the server's answers: a dataclass built by
``from_dict`` that takes the fields it knows, ignores the rest and keeps the whole
answer in ``.raw`` (a newer server may send more).  Its own module, so that the
record modules share it without importing each other."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

M = TypeVar("M", bound="_Model")


@dataclass
class _Model:
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def _known(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)} - {"raw"}

    @classmethod
    def from_dict(cls: type[M], data: dict[str, Any] | None) -> M:
        data = dict(data or {})
        known = cls._known()
        return cls(raw=data, **{k: v for k, v in data.items() if k in known})
