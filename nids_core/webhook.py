"""Post a JSON alert to a webhook (Slack-compatible `text` field plus the structured body)."""

from __future__ import annotations

import json
import urllib.request


class WebhookError(RuntimeError):
    """The webhook did not accept the alert."""


def post_alert(url: str, payload: dict, timeout_s: float = 10.0) -> int:
    body = json.dumps(payload, default=str).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status
    except OSError as exc:
        raise WebhookError(f"alert webhook {url.split('?')[0]} failed: {exc}") from exc
