"""The JSON body of a webhook, in the representation of the endpoint's API version.

v2 names the event time ``created_at`` and writes times as RFC 3339 strings. v1 names
it ``created`` and writes Unix seconds, as the REST versions do. The body depends only
on the event and the version, so every attempt and replay of a delivery sends the same
bytes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from connex.db import rfc3339

API_VERSIONS = ("v1", "v2")

# v2 field name -> v1 field name, for the time fields of the objects inside event data.
_V1_TIME_FIELDS = {"created_at": "created", "updated_at": "updated"}


def render_payload(event_id: str, event_type: str, created_at: datetime, data: Any, api_version: str) -> bytes:
    """Return the UTF-8 JSON body sent for one event to an endpoint of ``api_version``."""
    if api_version == "v1":
        body = {"id": event_id, "type": event_type, "created": int(created_at.timestamp()), "data": to_v1_data(data)}
    elif api_version == "v2":
        body = {"id": event_id, "type": event_type, "created_at": rfc3339(created_at), "data": data}
    else:
        raise ValueError(f"unknown API version {api_version!r}; expected one of {', '.join(API_VERSIONS)}")
    return orjson.dumps(body)


def to_v1_data(value: Any) -> Any:
    """Rewrite event data from its stored v2 form to v1: time fields renamed and in Unix seconds."""
    if isinstance(value, list):
        return [to_v1_data(item) for item in value]
    if not isinstance(value, dict):
        return value
    converted: dict[str, Any] = {}
    for key, item in value.items():
        v1_name = _V1_TIME_FIELDS.get(key)
        if v1_name is not None and isinstance(item, str):
            converted[v1_name] = int(datetime.fromisoformat(item).timestamp())
        else:
            converted[key] = to_v1_data(item)
    return converted
