"""Templates: Jinja2 with autoescape, and what every page needs (who is signed in, the CSRF token)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from passback.web.security import csrf_token

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC") if value.tzinfo is None else value.strftime("%Y-%m-%d %H:%M %Z")
    return "" if value is None else str(value)


templates.env.filters["when"] = _when


def render(request: Request, name: str, context: dict[str, Any] | None = None, *, status_code: int = 200,
           headers: dict[str, str] | None = None) -> HTMLResponse:
    values = {"user": getattr(request.state, "user", None), "csrf": csrf_token(request)} | (context or {})
    return templates.TemplateResponse(request, name, values, status_code=status_code, headers=headers)
