"""Escape text that came from Kafka, capture files or analysts before it is shown as
Markdown (the Dagster UI renders asset metadata and descriptions as Markdown) or sent as a
webhook's `text` (Slack and Mattermost render mrkdwn and links): such text must show as
itself, never as an image fetched from a stranger's host, a link or a mention."""

from __future__ import annotations

import re

# Every ASCII punctuation character CommonMark lets a backslash escape.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~\"'&:=$%^@;,?/])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def strip_controls(text: str) -> str:
    """Control and bidirectional-override characters (U+202E shows text reversed) as
    visible `\\uXXXX` escapes."""
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def escape_markdown(text: object, max_chars: int = 500) -> str:
    """`text` as literal Markdown: punctuation backslash-escaped, line breaks as spaces,
    controls made visible, cut to `max_chars` (with an ellipsis)."""
    s = strip_controls(str(text).replace("\r", " ").replace("\n", " "))
    if len(s) > max_chars:
        s = s[: max_chars - 1] + "…"
    return _MARKDOWN_SPECIAL.sub(r"\\\1", s)


def escape_chat(text: object, max_chars: int = 2000) -> str:
    """`text` for inside a code span of a chat webhook's `text` (Slack mrkdwn, Mattermost
    Markdown): `&`, `<` and `>` as the entities Slack asks for (so `<http://…|x>` links and
    `<!channel>` mentions do not form), backticks (which would close the span) as quotes,
    controls made visible, cut to `max_chars`. Inside the span nothing else is rendered."""
    s = strip_controls(str(text))
    if len(s) > max_chars:
        s = s[: max_chars - 1] + "…"
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    # Backticks would close the code span the text is shown in: replace them by a quote.
    return s.replace("`", "'")
