"""Run moto's HTTP server as the local AWS stand-in (EC2, DynamoDB, CloudWatch Logs, SSM, Security Hub,
KMS).

moto as it is, with one module of patches per service where the project needs AWS's behaviour (each module says
what it changes and why): logs.py (ingestion time follows event time; FilterLogEvents' term lists; subscription filters
delivered to their Lambda as AWS does), ec2.py
(fleet-scale lookups; EC2 Instance Connect records pushed keys), dynamodb.py (fleet-scale copies, parsing and
serialization, same responses), serialization.py (moto's response serializer at less cost, same responses),
ssm.py (Run Command really runs the script on the hosts), securityhub.py (filters, validation,
BatchUpdateFindings, faults), kms.py (PSS signatures with AWS's salt length) and cpu.py (CPU per action, for
the bench). Nothing else in moto is changed.

    python -m devstack.standins.aws.server -H 127.0.0.1 -p 5055
"""
from __future__ import annotations

import sys

from devstack.standins.aws import cpu, dynamodb, ec2, eventbridge, kms, logs, securityhub, serialization, ssm


def own_endpoint(argv: list[str]) -> str:
    """This server's URL, from its -H/-p arguments (moto's defaults otherwise): where the Lambda runs that
    subscription deliveries start point boto3."""
    host, port = "127.0.0.1", "5000"
    for i, arg in enumerate(argv[:-1]):
        if arg in ("-H", "--host"):
            host = argv[i + 1]
        elif arg in ("-p", "--port"):
            port = argv[i + 1]
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"


def main(argv: list[str] | None = None) -> None:
    from moto.server import main as moto_main

    argv = argv if argv is not None else sys.argv[1:]

    cpu.cpu_by_action()
    logs.ingestion_follows_events()
    logs.filter_terms_as_aws()
    logs.subscriptions_deliver(own_endpoint(argv))
    ec2.direct_lookups()
    ec2.id_filters_read_their_instances()
    serialization.pickers_remember_their_keys()
    dynamodb.query_copies_what_it_returns()
    dynamodb.copy_each_level_once()
    dynamodb.transactions_snapshot_their_items()
    dynamodb.table_queries_read_one_partition()
    dynamodb.attribute_values_serialize_directly()
    dynamodb.items_are_sized_once()
    dynamodb.attribute_values_parse_directly()
    dynamodb.projections_pick_their_attributes()
    dynamodb.sizes_without_copies()
    ec2.instance_connect_authorizes()
    ssm.ssm_runs_commands()
    securityhub.security_hub_as_aws()
    kms.pss_salt_as_aws()
    eventbridge.events_carry_their_account()
    moto_main(argv)


if __name__ == "__main__":
    main()
