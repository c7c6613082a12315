"""The store being away: counted, logged at most once per interval, and asked again after a pause.

While Redis does not answer, each request is decided by the failure policy without waiting on it:
after a failure, the store is tried again once :data:`RECHECK` seconds have passed (so a Redis that
hangs costs one timeout per pause, not one per request). The first success after failures logs that
the store is back; recovery needs nothing else.
"""

from __future__ import annotations

import logging
import time

from covet_pipe.logsafe import printable

__all__ = ["LOG_EVERY", "Outage", "RECHECK"]

#: seconds between two tries of a store that failed
RECHECK = 0.5
#: at most one warning per this many seconds while the store fails
LOG_EVERY = 10.0

log = logging.getLogger("covet_pipe.ratelimit")


class Outage:
    """Failures of one plugin's store."""

    def __init__(self, who: str, where: str, policy: str) -> None:
        self.who = who
        self.where = where
        self.policy = policy
        self.failures = 0           #: every failed decision (tried or skipped during a pause)
        self._since_log = 0
        self._logged_at = -LOG_EVERY
        self._retry_at = 0.0
        self.down = False

    def skip(self) -> bool:
        """Whether to decide by the policy without asking the store (a pause after a failure)."""
        if self.down and time.monotonic() < self._retry_at:
            self.failed(None)
            return True
        return False

    def failed(self, exc: BaseException | None) -> None:
        """Count a failure (*exc*: the store's error, None for one skipped in a pause) and log if due."""
        now = time.monotonic()
        self.failures += 1
        self._since_log += 1
        if exc is not None:
            self.down = True
            self._retry_at = now + RECHECK
        if now - self._logged_at >= LOG_EVERY:
            what = "lets requests through" if self.policy == "open" else "answers 503"
            reason = f"{type(exc).__name__}: {printable(str(exc), 200)}" if exc is not None else "still away"
            log.warning("%s: the rate-limit store %s does not answer (%s); failure_policy=%r %s "
                        "(%d failed decisions since the last line; tried again every %.1f s)",
                        self.who, self.where, reason, self.policy, what, self._since_log, RECHECK)
            self._logged_at = now
            self._since_log = 0

    def ok(self) -> None:
        """The store answered: if it was away, say it is back."""
        if self.down:
            self.down = False
            log.warning("%s: the rate-limit store %s answers again; limiting resumed (%d failed decisions "
                        "in all)", self.who, self.where, self.failures)
            self._logged_at = -LOG_EVERY
            self._since_log = 0
