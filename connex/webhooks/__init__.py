"""Outgoing webhooks: Standard Webhooks signing and the SSRF guard for delivery URLs."""
