"""Where alerts go (spec 7.3): the log, a file for external monitors, a webhook.

CRITICAL alerts are sent at once; WARNINGs are aggregated over a window and sent as
one notification; INFO is only logged.  Resolutions follow the same path so that a
receiver sees every alert end.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from mofsim_core.alerts import Alert
from mofsim_core.webhooks import Subscription, WebhookDispatcher
from spool.events import append_event, iso_now


@dataclass
class AlertChannels:
    file: Path | None = None
    webhook: Subscription | None = None
    dispatcher: WebhookDispatcher | None = None
    warning_window_s: float = 60.0
    _pending: list[dict[str, Any]] = field(default_factory=list)
    _window_started: float | None = None

    def publish(self, fired: list[Alert], resolved: list[Alert]) -> None:
        for alert in [*fired, *resolved]:
            body = alert.to_dict()
            state = "resolved" if alert.resolved else "firing"
            log = logger.bind(kind="system", logger="alerts", alert=body)
            level = {"CRITICAL": "CRITICAL", "WARNING": "WARNING"}.get(alert.level, "INFO")
            log.log(
                level if not alert.resolved else "INFO",
                f"alert {state}: [{alert.level}] {alert.message}",
            )
            if self.file is not None:
                self.file.parent.mkdir(parents=True, exist_ok=True)
                append_event(self.file, body)
            if alert.level == "CRITICAL":
                self._send([body], aggregated=False)
            elif alert.level == "WARNING":
                if self._window_started is None:
                    self._window_started = time.monotonic()
                self._pending.append(body)
        self.flush_due()

    def flush_due(self, *, force: bool = False) -> None:
        """Send the aggregated WARNINGs once their window has passed."""
        if not self._pending or self._window_started is None:
            return
        if force or time.monotonic() - self._window_started >= self.warning_window_s:
            batch, self._pending, self._window_started = self._pending, [], None
            self._send(batch, aggregated=True)

    def _send(self, alerts: list[dict[str, Any]], *, aggregated: bool) -> None:
        if self.webhook is None or self.dispatcher is None:
            return
        payload: dict[str, Any]
        if aggregated or len(alerts) != 1:
            payload = {
                "aggregated": True,
                "count": len(alerts),
                "timestamp": iso_now(),
                "alerts": alerts,
            }
        else:
            payload = alerts[0]
        self.dispatcher.send(
            "alerts", "alert", json.loads(json.dumps(payload, default=str)), self.webhook
        )
