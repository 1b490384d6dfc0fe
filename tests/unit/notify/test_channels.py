"""Slack and SNS channels (include/notify/channels.py): which channels params turn on, the payloads built from the alert
decision and the failure notice, and delivery that tries every channel and then fails naming the broken ones."""
import json
from types import SimpleNamespace

import pytest

from include.notify import alerts, channels
from include.notify.channels import AlertNotice, Channels

DAY = "2026-11-24"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:ec2-audit-alerts"


def finding(iid, check="auditd.running", detail=""):
    return alerts.Finding(f"{iid}|{check}", iid, check, detail or f"{check} failed on {iid}")


def notice(findings=None, previous=None, pct=42.0, names=None) -> AlertNotice:
    findings = findings if findings is not None else [finding("i-1"), finding("i-2"), finding("i-3", "cwagent.running")]
    decision = alerts.decide(findings, previous or {}, DAY, 7)
    return AlertNotice(DAY, decision, names or {"i-1": "web-1"}, pct, "http://af:8080/dags/d/runs/r1",
                       "s3://reports/compliance-2026-11-24.html")


# ------------------------------------------------------------------ Channels from params

def test_channels_are_off_unless_params_name_them():
    assert not Channels.from_params({}) and Channels.from_params({}).names == []
    assert not Channels.from_params({"slack_conn_id": "  ", "sns_topic_arn": None})
    assert not Channels.from_params(SimpleNamespace(recipients=[]))  # AuditParams before the fields exist
    on = Channels.from_params({"slack_conn_id": "slack_alerts", "sns_topic_arn": TOPIC})
    assert on.names == ["slack", "sns"] and on.sns_region == "eu-west-1" and on.sns_aws_conn_id is None
    assert on.target("slack") == "connection 'slack_alerts'" and on.target("sns") == f"topic {TOPIC}"


@pytest.mark.parametrize("arn", ["ec2-audit-alerts", "arn:aws:sqs:us-east-1:123456789012:q",
                                 "arn:aws:sns:us-east-1:123456789012:alerts.fifo", f"{TOPIC}\n"])
def test_a_bad_topic_arn_is_a_problem_naming_the_param_and_a_failed_channel_not_a_crash(arn, monkeypatch):
    bad = Channels(slack_conn_id="slack_alerts", sns_topic_arn=arn)  # a failure notifier can still build it
    assert len(bad.problems()) == 1 and bad.problems()[0].startswith("param sns_topic_arn:")
    assert Channels(sns_topic_arn=TOPIC).problems() == []
    from airflow.providers.amazon.aws.notifications import sns

    monkeypatch.setattr(sns.SnsNotifier, "notify", lambda *a: pytest.fail("published with a bad ARN"))
    monkeypatch.setattr(channels, "_send_slack", lambda *a: None)
    results = channels.deliver_failure(bad, failure_context(), raise_on_failure=False)
    assert results["slack"]["ok"] and results["sns"]["error"].startswith("ValueError: param sns_topic_arn:")


# ------------------------------------------------------------------ alert payloads

def test_alert_facts_come_from_the_decision_new_hosts_apart_from_reminders():
    day1 = alerts.decide([finding("i-old")], {}, "2026-11-17", 7)
    n = notice([finding("i-old"), finding("i-new"), alerts.Finding(alerts.THRESHOLD_KEY, "fleet",
                                                                   "compliance_below_threshold", "low")],
               previous=day1.state)
    facts = channels.alert_facts(n)
    assert facts["hosts_newly_failing"] == ["i-new"]  # i-old is a reminder (open 7 days), the fleet is no host
    assert facts["hosts_alerted"] == ["i-new", "i-old"]
    assert facts["findings"] == 3 and facts["reminders"] == 1 and facts["below_threshold"]


def test_slack_alert_states_subject_compliance_new_hosts_rows_and_links():
    n = notice()
    payload = channels.slack_alert(n)
    header, summary, rows, links = payload["blocks"]
    assert header["text"]["text"] == alerts.subject(DAY, n.decision, 42.0)
    assert "*Compliance:* 42.0%" in summary["text"]["text"]
    assert "*Hosts newly failing:* 3" in summary["text"]["text"]
    assert rows["text"]["text"].splitlines()[0] == "• `i-1` (web-1) `auditd.running` new: auditd.running failed on i-1"
    assert "<http://af:8080/dags/d/runs/r1|the run in Airflow>" in links["elements"][0]["text"]
    assert "the report: `s3://reports/compliance-2026-11-24.html`" in links["elements"][0]["text"]
    assert payload["text"].startswith(n.subject())


def test_slack_alert_escapes_host_controlled_text_and_caps_its_size():
    evil = "<!channel> <http://evil|click> & more"
    many = [finding(f"i-{k:03d}", detail=evil + "x" * 400) for k in range(300)]
    payload = channels.slack_alert(notice(many, names={"i-000": "<b>web</b>"}))
    text = payload["blocks"][2]["text"]["text"]
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text and "&amp; more" in text
    assert "(&lt;b&gt;web&lt;/b&gt;)" in text
    assert len(text) <= channels.SLACK_SECTION_MAX
    assert text.splitlines()[-1] == f"…and {300 - (len(text.splitlines()) - 1)} more in the report"
    assert len(payload["blocks"]) <= 50


def test_sns_alert_subject_is_short_ascii_and_the_message_json_has_the_same_facts():
    week = alerts.decide([finding("i-3", "cwagent.running")], {}, "2026-11-17", 7)
    n = notice(previous=week.state)  # i-3's finding is a reminder: alerted, not newly failing
    subject, body = channels.sns_alert(n)
    assert subject == n.subject() and len(subject) <= 100
    message = json.loads(body)
    assert message["event"] == "compliance_alert" and message["audit_date"] == DAY
    assert message["compliance_pct"] == 42.0 and message["hosts_newly_failing"] == ["i-1", "i-2"]
    assert message["hosts_alerted"] == ["i-1", "i-2", "i-3"] and message["reminders"] == 1
    assert message["findings"][2]["state"] == "reminder" and message["findings"][2]["first_seen"] == "2026-11-17"
    assert message["run_url"] == "http://af:8080/dags/d/runs/r1" and message["findings_total"] == 3
    assert message["findings"][0] == {"instance_id": "i-1", "name": "web-1", "check_id": "auditd.running",
                                      "state": "new", "first_seen": DAY, "detail": "auditd.running failed on i-1"}


def test_the_webhook_sink_listens_on_loopback_only(tmp_path):
    from devstack.standins.sinks.webhook import WebhookSink

    with pytest.raises(ValueError, match="loopback only"):
        WebhookSink("0.0.0.0", 0, tmp_path)


def test_sns_subject_rules():
    assert channels.sns_subject("FAILED d: task x in run\nwith — dash") == "FAILED d: task x in run with dash"
    long = channels.sns_subject("FAILED " + "manual__2026-11-24T06:00:00.123456+00:00" * 5)
    assert len(long) == 100 and long.endswith("...") and long.isascii()


def test_sns_alert_stays_under_the_publish_limit_at_fleet_scale():
    many = [finding(f"i-{k:017x}", detail="d" * 2000) for k in range(20_000)]  # details longer than alerts cut
    _, body = channels.sns_alert(notice(many, names={f"i-{k:017x}": "n" * 256 for k in range(20_000)}))
    message = json.loads(body)
    assert len(body.encode()) < channels.SNS_MESSAGE_MAX - 4096
    assert message["hosts_newly_failing_count"] == 20_000 and len(message["hosts_newly_failing"]) == 1000
    assert message["findings_total"] == 20_000 and 0 < len(message["findings"]) <= alerts.MAX_ROWS


def test_the_email_and_the_channels_show_the_same_rows():
    week = alerts.decide([finding("i-3", "cwagent.running")], {}, "2026-11-17", 7)
    n = notice(previous=week.state)
    html = alerts.render_html(DAY, n.decision, n.names, "hint")
    slack_lines = channels.slack_alert(n)["blocks"][2]["text"]["text"].splitlines()
    sns_rows = json.loads(channels.sns_alert(n)[1])["findings"]
    assert [r.state for r in n.rows()] == ["new", "new", "still open since 2026-11-17"]
    for row, line, entry in zip(n.rows(), slack_lines, sns_rows, strict=True):
        assert f'">{row.state}</td>' in html and f'">{row.detail}</td>' in html
        assert f"`{row.instance_id}`" in line and f" {row.state}: {row.detail}" in line
        assert (entry["instance_id"], entry["check_id"], entry["detail"]) == (row.instance_id, row.check_id, row.detail)


# ------------------------------------------------------------------ failure payloads

def failure_context(**kw):
    ti = SimpleNamespace(task_id="verify_batch", dag_id="ec2_audit_compliance", log_url="http://af/log?x=1&y=2")
    run = SimpleNamespace(dag_id="ec2_audit_compliance", run_id="scheduled__2026-11-24")
    return {"ti": ti, "dag_run": run, "exception": RuntimeError("<b>expired</b> ``` token"), **kw}


def test_failure_payloads_carry_the_email_facts():
    from include.notify.email import failure_notice

    facts = failure_notice(failure_context())
    payload = channels.slack_failure(facts)
    assert payload["blocks"][0]["text"]["text"] == facts.subject
    body = payload["blocks"][1]["text"]["text"]
    assert body.startswith("*Task verify_batch* of `ec2_audit_compliance` failed in run `scheduled__2026-11-24`")
    assert "&lt;b&gt;expired" in body and body.count("```") == 2
    assert "<http://af/log?x=1&amp;y=2|the task log>" in payload["blocks"][2]["elements"][0]["text"]
    subject, message = channels.sns_failure(facts)
    assert subject == "FAILED ec2_audit_compliance: task verify_batch in scheduled__2026-11-24"
    assert json.loads(message) == {
        "event": "pipeline_failure", "subject": subject, "dag_id": "ec2_audit_compliance",
        "run_id": "scheduled__2026-11-24", "task_id": "verify_batch", "what": "task verify_batch",
        "reason": "<b>expired</b> ``` token", "run_url": facts.run_url, "log_url": "http://af/log?x=1&y=2"}
    assert facts.run_url.endswith("/dags/ec2_audit_compliance/runs/scheduled__2026-11-24")


# ------------------------------------------------------------------ delivery

@pytest.fixture
def sent(monkeypatch):
    """Record what would go out; a channel named in `broken` raises as its provider would."""
    calls = {"slack": [], "sns": [], "broken": set()}

    def slack(conn_id, payload, context):
        if "slack" in calls["broken"]:
            raise RuntimeError("Response body: 'invalid_token', Status Code: 404")
        calls["slack"].append((conn_id, payload))

    def sns(chans, subject, message, event, context):
        if "sns" in calls["broken"]:
            raise RuntimeError("An error occurred (AuthorizationError) when calling the Publish operation")
        calls["sns"].append((chans.sns_topic_arn, subject, json.loads(message), event))

    monkeypatch.setattr(channels, "_send_slack", slack)
    monkeypatch.setattr(channels, "_send_sns", sns)
    return calls


BOTH = Channels("slack_alerts", TOPIC)


def test_deliver_alert_sends_to_every_channel(sent):
    results = channels.deliver_alert(BOTH, notice())
    assert results == {"slack": {"ok": True, "target": "connection 'slack_alerts'", "keys": notice().keys, "sent": 3},
                       "sns": {"ok": True, "target": f"topic {TOPIC}", "keys": notice().keys, "sent": 3}}
    assert sent["slack"][0][0] == "slack_alerts" and sent["sns"][0][3] == "compliance_alert"
    assert channels.deliver_alert(Channels(), notice()) == {}


@pytest.mark.parametrize("broken", ["slack", "sns"])
def test_one_broken_channel_does_not_stop_the_other_and_the_error_names_it(sent, broken, caplog):
    sent["broken"].add(broken)
    with pytest.raises(channels.ChannelDeliveryError) as err:
        channels.deliver_alert(BOTH, notice())
    other = "sns" if broken == "slack" else "slack"
    assert len(sent[other]) == 1 and not sent[broken]
    assert str(err.value).startswith(f"compliance alert {DAY} not delivered to {broken} (")
    assert other not in str(err.value).split("not delivered to")[1]
    assert err.value.results[other]["ok"] and not err.value.results[broken]["ok"]
    assert any(r.levelname == "ERROR" and broken in r.getMessage() for r in caplog.records)


def test_results_first_then_raise_and_a_retry_resends_only_what_a_channel_missed(sent):
    sent["broken"].add("slack")
    first = channels.deliver_alert(BOTH, notice(), raise_on_failure=False)
    assert not first["slack"]["ok"] and first["slack"]["keys"] == []
    record = channels.delivered_keys({}, first)
    assert record == {"slack": [], "sns": sorted(notice().keys)}
    with pytest.raises(channels.ChannelDeliveryError, match="not delivered to slack"):
        channels.raise_for_failures(first, "compliance alert")
    sent["broken"].clear()
    again = channels.deliver_alert(BOTH, notice(), delivered_before=record)
    assert again["sns"] == {"ok": True, "target": f"topic {TOPIC}", "keys": [], "sent": 0} and len(sent["sns"]) == 1
    assert again["slack"]["sent"] == 3 and len(sent["slack"]) == 1
    assert channels.delivered_keys(record, again) == {"slack": sorted(notice().keys), "sns": sorted(notice().keys)}


def test_deliver_failure_tries_every_channel_and_names_the_broken_one(sent):
    sent["broken"].add("sns")
    with pytest.raises(channels.ChannelDeliveryError, match=r"^failure notice \(FAILED .*\) not delivered to sns "
                                                            rf"\(topic {TOPIC}\): RuntimeError"):
        channels.deliver_failure(BOTH, failure_context())
    assert sent["slack"][0][1]["blocks"][0]["text"]["text"].startswith("FAILED ec2_audit_compliance: task verify")
    assert channels.deliver_failure(Channels(), failure_context()) == {}


def test_text_is_sent_as_it_is_never_rendered_as_a_template(monkeypatch):
    """The notifiers' __call__ renders Jinja; deliver_* calls notify(): a tag's '{{ ... }}' stays text."""
    got = {}
    from airflow.providers.slack.notifications import slack_webhook

    monkeypatch.setattr(slack_webhook.SlackWebhookNotifier, "notify", lambda self, ctx: got.update(text=self.text))
    channels.deliver_alert(Channels("slack_alerts"), notice([finding("i-1", detail="{{ 7 * 7 }}")],
                                                            names={"i-1": "{{ conn.x }}"}))
    assert "49" not in got["text"]
