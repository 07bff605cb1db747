"""Scoring new flows with the champion, the local model cache, alert windows and the webhook."""
