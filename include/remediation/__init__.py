"""Approval-gated fixes: the plan from a day's evidence, the runner that applies it over the remediation login, its records."""
