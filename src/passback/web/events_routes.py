"""Change events: ``POST /events/canvas``, where a Canvas Live Events subscription (HTTPS) delivers, and
``POST /events/courseware``, where the courseware's event subscription delivers (HMAC-signed JSON).

A thin adapter: the body goes to services/live_events, which verifies the signature,
keeps the event once and answers what became of it. Canvas counts any 2xx as delivered
and delivers again otherwise, so: 202 for an event stored (a sync follows once the course
is quiet), 200 for one stored before or not acted on, 401 for an event that cannot be
shown to come from Canvas, 400 for a body that is no event, 503 when the publisher's keys
cannot be fetched (delivered again later). No session or CSRF token: the signature is the
authentication.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from passback.services import courseware_events, live_events
from passback.web.deps import SettingsDep, StoreDep

router = APIRouter(prefix="/events", tags=["events"])
CANVAS_PATH = "/events/canvas"
COURSEWARE_PATH = "/events/courseware"


@router.post("/canvas", include_in_schema=False)  # Canvas's webhook (as /lti/launch is the platform's), not the REST API
async def canvas_event(request: Request, store: StoreDep, settings: SettingsDep,
                       connection: str | None = None) -> JSONResponse:
    body = await request.body()
    try:
        receipt = await live_events.receive(store, settings, body, cache=request.app.state.live_event_keys,
                                            connection=connection)
    except live_events.LiveEventRefused as exc:
        return JSONResponse({"detail": str(exc)}, status_code=401)
    return _answer(receipt)


@router.post("/courseware", include_in_schema=False)  # the courseware's webhook, not the REST API
async def courseware_event(request: Request, store: StoreDep, settings: SettingsDep,
                           connection: str | None = None) -> JSONResponse:
    """As ``/events/canvas``: 202 stored, 200 duplicate or ignored, 401 when the signature does not verify."""
    body = await request.body()
    try:
        receipt = await courseware_events.receive(store, settings, body,
                                                  request.headers.get(courseware_events.SIGNATURE_HEADER),
                                                  connection=connection)
    except courseware_events.CoursewareEventRefused as exc:
        return JSONResponse({"detail": str(exc)}, status_code=401)
    return _answer(receipt)


def _answer(receipt: live_events.Receipt) -> JSONResponse:
    """202 for an event kept, 200 for a duplicate or an event ignored (the sender must not deliver it again)."""
    status = 202 if receipt.status == live_events.STORED else 200
    return JSONResponse({"status": receipt.status, "event_name": receipt.event_name, "event_id": receipt.event_id},
                        status_code=status)
