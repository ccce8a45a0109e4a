"""A finding: one rule's verdict on one item, rendered through the catalogue."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from passback.rules.catalogue import entry


@dataclass(frozen=True)
class Finding:
    code: str
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def outcome(self) -> str:
        return entry(self.code).outcome

    @property
    def message(self) -> str:
        return entry(self.code).render(**self.context)
