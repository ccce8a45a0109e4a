"""The web app: pages, the REST API, the LTI launch and Canvas Live Events over one store, with the embedded
scheduler and the Live Events coalescer.

``passback serve`` runs it under uvicorn. Every route is a thin adapter: it reads the
request, calls a service, and renders or serializes the answer. Errors passback means to
show keep their kind: not found 404, invalid 400, conflict 409, unavailable 503; a page
shows the message (it names the fix), the API answers ``{"detail": message}``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from passback import __version__
from passback.errors import ErrorKind, PassbackError
from passback.services.coalescer import Coalescer, Dispatch
from passback.services.live import LiveRuns
from passback.services.live_events import JwksCache
from passback.services.scheduler import EmbeddedScheduler
from passback.settings import Settings, get_settings
from passback.store.db import Store, open_store
from passback.web import admin_pages, api, events_routes, learner_pages, lti_routes, pages
from passback.web.deps import Forbidden, SignInRequired
from passback.web.rendering import render
from passback.web.security import SESSION_COOKIE, CsrfRefused, check_csrf, session_secret

log = structlog.get_logger("passback.web")
STATIC = Path(__file__).parent / "static"
STATUS_OF_KIND = {ErrorKind.NOT_FOUND: 404, ErrorKind.INVALID: 400, ErrorKind.CONFLICT: 409,
                  ErrorKind.UNAVAILABLE: 503}


def _status(exc: PassbackError) -> int:
    if isinstance(exc, SignInRequired):
        return 401
    if isinstance(exc, (Forbidden, CsrfRefused)):
        return 403
    return STATUS_OF_KIND.get(exc.kind, 400)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith(("/api/", "/lti/jwks", "/events/"))


def create_app(settings: Settings | None = None, store: Store | None = None, *, scheduler: bool = True,
               coalescer: bool | None = None, dispatch: Dispatch | None = None) -> FastAPI:
    """The app. ``scheduler`` runs the nightly scheduler; ``coalescer`` (by default as ``scheduler``) turns
    stored Live Events into syncs, each burst through ``dispatch`` (by default a sync in this process)."""
    settings = settings or get_settings()
    coalesce = scheduler if coalescer is None else coalescer

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.store = store or open_store(settings)
        runner = EmbeddedScheduler(app.state.store, settings, interval=settings.scheduler_seconds) if scheduler else None
        events = Coalescer(app.state.store, settings, dispatch) if coalesce else None
        app.state.coalescer = events
        for started in (runner, events):
            if started is not None:
                await started.start()
        try:
            yield
        finally:
            for started in (events, runner):
                if started is not None:
                    await started.stop()
            await app.state.live.wait_all()
            if store is None:
                app.state.store.dispose()

    app = FastAPI(title="passback", version=__version__, lifespan=lifespan, dependencies=[Depends(check_csrf)],
                  description="Grade passback: courses, runs, previews, syncs, setup and the audit log. "
                              "Authenticate with `Authorization: Bearer <API token>` (`passback users token`).",
                  docs_url="/api/docs", redoc_url=None, openapi_url="/openapi.json")
    app.state.settings = settings
    app.state.live = LiveRuns()
    app.state.live_event_keys = JwksCache()  # the Live Events publisher's keys, cached for the process
    app.state.coalescer = None
    if store is not None:
        app.state.store = store
    secure = bool(settings.public_url and settings.public_url.startswith("https://"))
    app.add_middleware(SessionMiddleware, secret_key=session_secret(settings), session_cookie=SESSION_COOKIE,
                       same_site="lax", https_only=secure, max_age=12 * 3600)

    @app.exception_handler(PassbackError)
    async def passback_error(request: Request, exc: PassbackError) -> Response:
        status = _status(exc)
        if _wants_json(request):
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)
        if status == 401:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        if request.headers.get("hx-request"):
            return render(request, "_message.html", {"message": str(exc), "kind": "error"}, status_code=status)
        return render(request, "error.html", {"message": str(exc), "status": status}, status_code=status)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                    "script-src 'self'; form-action 'self' *; frame-ancestors *")
        return response

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(lti_routes.router)
    app.include_router(events_routes.router)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(admin_pages.router)
    app.include_router(learner_pages.router)
    return app
