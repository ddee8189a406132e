"""The module each `connex worker` process imports: the Redis broker with the webhook actor.

The Dramatiq command line imports ``workers.main:broker`` in every worker process it
forks. Importing this module reads the settings, so it needs CONNEX_REDIS_URL.
"""

from __future__ import annotations

import dramatiq

from connex.logs import configure_logging
from connex.settings import ConfigurationError, get_settings
from workers import webhooks

settings = get_settings()
if settings.redis_url is None:
    raise ConfigurationError("CONNEX_REDIS_URL must be set for `connex worker`")
configure_logging(settings.log_level, settings.log_format)

webhook_workers = webhooks.setup(settings)
webhook_workers.install_hooks()
broker = webhook_workers.broker
dramatiq.set_broker(broker)
