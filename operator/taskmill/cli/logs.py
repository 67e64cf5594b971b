"""Log set-up shared by the long-running commands: one line per record,
``key=value`` context, UTC timestamps."""

from __future__ import annotations

import logging
import sys
import time


class _UTCFormatter(logging.Formatter):
    converter = time.gmtime


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _UTCFormatter(
            "%(asctime)s.%(msecs)03dZ %(levelname)-5s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # kopf logs every handler call at INFO; that is one line per Task event.
    logging.getLogger("kopf").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
