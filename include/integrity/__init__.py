"""The auditors' command line: verify the evidence chain, read a host's observations and their kept raw output,
without a running Airflow (python -m include.integrity; docs/EVIDENCE.md). Imports core through evidence."""
