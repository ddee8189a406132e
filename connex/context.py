"""The request context of every operation: the shared services and the calling key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connex.admission import KeyAdmission
from connex.auth import Authenticator, KeyCache, Principal
from connex.db import Database
from connex.settings import Settings
from connex.usage.flusher import UsageFlusher


@dataclass(slots=True)
class Services:
    """The process-wide components, built once by the app factory."""

    settings: Settings
    db: Database
    key_cache: KeyCache
    authenticator: Authenticator
    admission: KeyAdmission
    usage: UsageFlusher
    redis: Any = None
    # The Dramatiq broker, deliver actor and runner of webhook deliveries (workers.webhooks).
    webhooks: Any = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RequestContext:
    services: Services
    principal: Principal
    request_id: str = ""

    @property
    def db(self) -> Database:
        return self.services.db
