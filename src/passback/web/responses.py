"""What a form's POST answers, and the one-line message the next page shows (the "flash")."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from passback.web.rendering import render


def back_to(request: Request, url: str) -> Response:
    """After a form: htmx loads ``url`` again; a plain POST is redirected (no resubmission on reload)."""
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def flash(request: Request, message: str, kind: str = "ok") -> None:
    request.session["flash"] = {"message": message, "kind": kind}


def take_flash(request: Request) -> dict[str, str] | None:
    return request.session.pop("flash", None)


def progress_fragment(request: Request, progress: dict[str, Any] | None, base: str, was_running: bool) -> Response:
    """The progress panel htmx polls; once the run it watched has ended, the whole page reloads (once)."""
    if progress is None and was_running:
        return Response(status_code=200, headers={"HX-Refresh": "true"})
    return render(request, "_progress.html", {"progress": progress, "base": base})
