"""Telling people: the report email, compliance alerts, security events, Slack and SNS channels, failure and deadline notices."""
