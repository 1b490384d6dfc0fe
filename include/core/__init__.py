"""The vocabulary every stage shares: statuses and verdicts, a host, the stored-record base, scoring. Imports nothing of the project."""
