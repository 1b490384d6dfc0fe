"""EC2 audit compliance: the logic behind the `ec2_audit_compliance` DAG."""

__version__ = "0.2.0"  # recorded in every run summary, so evidence says which code judged it
