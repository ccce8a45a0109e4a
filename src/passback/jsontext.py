"""JSON text parsed fast: orjson, and the standard library where orjson refuses what it accepts.

Why one place: a course's PowerSchool lookup is a megabyte, a course's identity rows are
thousands of JSON columns, a district's emulator state is tens of MB; orjson reads them several
times faster. It refuses ``NaN``, which the standard library writes and reads, so such a text
falls back rather than failing. Not for a source's rows: orjson reads an integer beyond 64 bits
as a float, and a source's ids must reach the rules as sent.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(text: str | bytes | bytearray) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
