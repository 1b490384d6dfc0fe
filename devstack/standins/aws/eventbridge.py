"""EventBridge as AWS behaves, where moto differs.

A rule's target without an input transformer gets the whole event. moto renders it through a default template
that leaves out `account`, so an SQS target received an EC2 state change without the account AWS always puts
in it (the watch then refuses it: an event must name the account it is from). Here the default template carries
it, as AWS's event does.
"""
from __future__ import annotations


def events_carry_their_account() -> None:
    from moto.events import utils

    template = utils.EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE
    if '"account"' not in template:
        utils.EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE = template.replace(
            '"version": "0", ', '"version": "0", "account": "<account>", ', 1)
