"""A connection's settings, typed per kind: one model says what each kind needs and checks it.

The CLI, the REST API and the pages all save connections through these models, so the
rule "a Canvas connection needs a token" is written once, with its message.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from passback.errors import Invalid


class ConnectionConfig(BaseModel):
    """The base of every connection kind's settings: a URL (or a path) and its credentials."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ClassVar[str]
    label: ClassVar[str]
    secret_fields: ClassVar[tuple[str, ...]] = ()
    url: str

    @field_validator("url")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("is empty")
        return value.rstrip("/") if "://" in value else value

    def credentials(self) -> dict[str, str]:
        """The values kept encrypted at rest."""
        return {name: getattr(self, name) for name in type(self).model_fields if name != "url"}

    @classmethod
    def parse(cls, url: str, credentials: dict[str, Any]) -> ConnectionConfig:
        """A config from what a person gave, or one :class:`Invalid` error naming what is missing."""
        given = {k: v for k, v in credentials.items() if v not in (None, "") and k in cls.model_fields}
        try:
            return cls(url=url, **given)
        except ValidationError as exc:
            missing = [str(e["loc"][0]) for e in exc.errors() if e["type"] == "missing"]
            if missing:
                names = " and ".join(missing)
                raise Invalid(f"A {cls.label} connection needs {names}.") from exc
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))} {e['msg']}" for e in exc.errors())
            raise Invalid(f"The {cls.label} connection is not valid: {problems}.") from exc


class ClientCredentialsConfig(ConnectionConfig):
    """OAuth 2 client credentials (PowerSchool plugins, Ed-Fi API keys)."""

    secret_fields = ("client_secret",)
    client_id: str
    client_secret: str
