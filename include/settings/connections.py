"""The Airflow connection ids the product reads (shared/CONTRACT.md: Airflow connections)."""
from __future__ import annotations

AWS_CONN_ID = "aws_default"  # AWS credentials, region, endpoint_url (a local stand-in)
SSH_CONN_ID = "ec2_audit_ssh"  # login, key, host_key_policy
SMTP_CONN_ID = "smtp_default"  # the emailed report and alerts
# The remediation login (dags/ec2_audit_remediate.py): login, key, host_key_policy — its own user and sudoers
# (include/checks/fixes.py: remediation_sudoers), so the daily audit's connection stays read-only.
REMEDIATE_SSH_CONN_ID = "ec2_audit_remediate_ssh"
