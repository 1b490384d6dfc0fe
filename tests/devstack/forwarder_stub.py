"""STUB of deploy/forwarder/handler.py (issue 28, helper H2), for tests/devstack only, until the real one lands:
the same contract (env EVENTS_QUEUE_URL; boto3 SQS; sends {"awslogs": {"data": ...}, "region": AWS_REGION}).
The tests run the real handler instead once deploy/forwarder/handler.py exists."""
import json
import os

import boto3


def handler(event, context):
    body = {"awslogs": {"data": event["awslogs"]["data"]}, "region": os.environ["AWS_REGION"]}
    answer = boto3.client("sqs").send_message(QueueUrl=os.environ["EVENTS_QUEUE_URL"], MessageBody=json.dumps(body))
    return {"MessageId": answer["MessageId"]}
