"""JSON responses serialised with orjson (fast, and NaN-free: the engine never produces NaN)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class JSONBytes(Response):
    """A JSON response from a Python object, or from bytes already serialised."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        if isinstance(content, (bytes, bytearray)):
            return bytes(content)
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)


def dumps(content: Any) -> bytes:
    """
    >>> dumps({"a": 1})
    b'{"a":1}'
    """
    return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)
