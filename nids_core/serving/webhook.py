"""Post a JSON alert to a webhook (Slack-compatible `text` field plus the structured body)."""

from __future__ import annotations

import json
import urllib.request
from urllib.parse import urlsplit


class WebhookError(RuntimeError):
    """The webhook did not accept the alert."""


def webhook_host(url: str) -> str:
    """The host of a webhook URL: all an error may show (path and query hold its token)."""
    return urlsplit(url).hostname or "(unparsable URL)"


def post_alert(url: str, payload: dict, timeout_s: float = 10.0) -> int:
    body = json.dumps(payload, default=str).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status
    except OSError as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
        if hasattr(exc, "code"):  # an HTTP error status
            reason = f"HTTP {exc.code} {reason}"
        # `from None`: the original exception's text may include the URL.
        raise WebhookError(f"alert webhook at host {webhook_host(url)} failed: {reason}") from None
