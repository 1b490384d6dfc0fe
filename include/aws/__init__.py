"""Reaching AWS: boto3 clients through the Amazon provider's hooks, accounts and roles, AWS errors, the DynamoDB tables. Imports core and settings."""
