"""Run moto's HTTP server as the local AWS stand-in (EC2, DynamoDB, CloudWatch Logs).

One simulation tweak: moto stamps lastIngestionTime with the wall clock of the write, so a stream seeded
with an event from 10 hours ago would still look fresh. Here ingestion follows the newest event's own
timestamp, as it does for a real agent that ships events as they happen; that lets the demo hold a
genuinely stale stream. And FilterLogEvents reads a pattern of several quoted terms as AWS does (all must
appear), where moto matches nothing.

Fleet-scale fixes (`make bench` at 10,000 instances), same responses (tests/unit/test_moto_patches.py): moto
finds an instance's tags by scanning every tag in the region, and an instance by id by copying every
reservation, once per instance served — O(fleet) per instance, so seeding and describing 10,000 instances took
minutes of the stand-in's own CPU; here they are direct lookups. DynamoDB rendered each nested attribute by deep-copying its whole
subtree at every level (an evidence item's `checks` map is three deep); here each level is copied once. And a
Query deep-copied each full item of a page and serialized it whole to pick the projected attributes; here it
copies one level and serializes only what the projection names. Nothing else in moto is changed.

EC2 Instance Connect: moto's `SendSSHPublicKey` answers success and authorizes nothing. Here it also records
the key for that instance and OS user, expiring after 60 s (`EC2AUDIT_EIC_KEY_TTL`), in the key directory
`EC2AUDIT_EIC_KEY_DIR` that the simulated fleet and the real sshd hosts read (devstack/standins/hosts/eic_keys.py); an
unknown instance is EC2InstanceNotFoundException, one not running EC2InstanceStateInvalidException. Without
the variable it behaves as moto does.

SSM Run Command: moto's SendCommand answers success and runs nothing, and it has no ListCommandInvocations
or DescribeInstanceInformation. With `EC2AUDIT_SSM_DIR` (the registry of devstack/standins/hosts/ssm_agents.py: which
instances are managed, their ping status, and how the stand-in "agent" reaches each) the server has all
four: DescribeInstanceInformation lists the registered instances that exist in EC2 (InstanceIds/PingStatus
filters, pages); SendCommand (AWS-RunShellScript, or a one-step aws:runShellScript document created in this
moto — its parameters checked against their allowedPattern and substituted, as SSM does; ≤ 50 instances, each registered and Online, none
`deny_send` — else the whole call fails as AWS fails it) records moto's Command and really runs the joined
`commands` on each host through its channel, in a bounded pool (64 threads, MaxConcurrency per command; no
MaxErrors), bounded by `executionTimeout`, so invocations go Pending → InProgress → Success / Failed /
TimedOut with the real exit code and output; with OutputS3BucketName the full stdout (and stderr) lands in
moto's S3 under the agent's key layout. GetCommandInvocation returns at most 24,000 characters of stdout
(8,000 of stderr), ListCommandInvocations (Details) 2,500 per plugin, as AWS does. The SSM calls served are
counted per action: `GET /moto-api/ec2audit/ssm-calls` → `{"calls": {"SendCommand": 3, ...}}`. Without the
variable SSM is moto's own.

Security Hub: moto's GetFindings ignores its Filters and BatchImportFindings takes anything, and it has no
BatchUpdateFindings. Here, as AWS documents them: GetFindings applies the string filters (EQUALS, PREFIX,
CONTAINS and their negations — positive values OR'd, negative ones AND'd — on Id, ProductArn, GeneratorId,
AwsAccountId, Title, RecordState, ComplianceStatus, WorkflowStatus, SeverityLabel, ResourceId, ResourceType,
Type) and the ProductFields map filter, and refuses any other filter rather than ignoring it; MaxResults
1–100. BatchImportFindings takes at most 100 findings (else InvalidInputException); a finding without the
required ASFF fields, with bad values, over 240 KB, or not under this account's default product ARN fails in
FailedFindings (InvalidInput); with the hub not enabled every finding fails with InvalidAccess. A new finding
gets Workflow NEW, ProcessedAt, and FindingProviderFields from the top-level Severity/Types (or the reverse);
an update by Id keeps Workflow, Note, UserDefinedFields and VerificationState (an import cannot change them),
takes Severity/Types from FindingProviderFields unless a customer set them, and resets Workflow RESOLVED or
NOTIFIED to NEW when Compliance.Status leaves PASSED or RecordState goes ARCHIVED → ACTIVE. BatchUpdateFindings
(≤ 100 identifiers) sets Workflow, Note, VerificationState, Severity, Types, UserDefinedFields, Confidence and
Criticality; unknown findings come back in UnprocessedFindings. Faults on demand:
`POST /moto-api/ec2audit/securityhub-faults` `{"action": "BatchImportFindings", "ids": [...], "code":
"InternalException", "times": 1}` makes those findings fail that many times; calls per action and the largest
batch seen: `GET /moto-api/ec2audit/securityhub-calls`.

    python -m devstack.standins.aws.server -H 127.0.0.1 -p 5055
"""
from __future__ import annotations

import sys
from datetime import datetime, timezone


def _ingestion_follows_events() -> None:
    from moto.logs import models

    original = models.LogStream.put_log_events

    def put_log_events(self, log_events):
        token = original(self, log_events)
        newest = max((e["timestamp"] for e in log_events), default=None)
        if newest is not None:
            moment = datetime.fromtimestamp(newest / 1000, tz=timezone.utc).replace(tzinfo=None)
            self.last_ingestion_time = min(self.last_ingestion_time, moment)
        return token

    models.LogStream.put_log_events = put_log_events


def _filter_terms_as_aws() -> None:
    """FilterLogEvents: moto reads `"a" "b"` as one quoted phrase (the text between the outer quotes), which
    nothing matches. AWS reads a space-separated list of terms, quoted or not, that must all appear. Patterns
    with `?`, `-`, JSON or space-delimited selectors stay moto's."""
    import re

    from moto.logs import models, utils

    original = utils.EventMessageFilter
    term = re.compile(r'"([^"]*)"|(\S+)')

    class EventMessageFilter(original):
        def __init__(self, pattern: str):
            super().__init__(pattern)
            self.terms = None
            text = (pattern or "").strip()
            if '"' in text and not re.match(r"[{\[]", text):
                found = [q or bare for q, bare in term.findall(text)]
                if found and not any(t[:1] in "?-" for t in found if t):
                    self.terms = found

        def matches(self, message: str) -> bool:
            if self.terms is None:
                return super().matches(message)
            return all(t in message for t in self.terms)

    utils.EventMessageFilter = EventMessageFilter
    models.EventMessageFilter = EventMessageFilter


def _query_copies_what_it_returns() -> None:
    """DynamoDB Query: moto deep-copies every full item of a page, then serializes each whole item to pick the
    projected attributes — at 10,000 hosts the day's one projected read was 28 s of the stand-in's CPU. Here a
    page's items are copied one level (the attribute values are only read from there on: projected, filtered,
    serialized), and a projection serializes only the attributes it names. Same responses."""
    import copy
    import types

    from moto.dynamodb.models import table
    from moto.dynamodb.models.dynamo_type import Item, LimitedSizeDict

    def one_level(item: Item) -> Item:
        result = Item.__new__(Item)
        result.hash_key, result.range_key = item.hash_key, item.range_key
        attrs = LimitedSizeDict.__new__(LimitedSizeDict)
        dict.__init__(attrs)
        dict.update(attrs, item.attrs)
        result.attrs = attrs
        return result

    def deepcopy(value, memo=None):
        if isinstance(value, list) and value and all(type(v) is Item for v in value):  # Table.query's page
            return [one_level(v) for v in value]
        return copy.deepcopy(value, memo)

    table.copy = types.SimpleNamespace(deepcopy=deepcopy, copy=copy.copy)
    project = Item.project

    def project_named(self, projection_expressions):
        named = {str(path[0]).split("[", 1)[0] for path in projection_expressions if path}
        narrowed = one_level(self)
        for key in [k for k in narrowed.attrs if k not in named]:
            dict.__delitem__(narrowed.attrs, key)
        return project(narrowed, projection_expressions)

    Item.project = project_named


def _direct_lookups() -> None:
    from moto.ec2.exceptions import InvalidInstanceIdError
    from moto.ec2.models import instances, tags

    describe_tags = tags.TagBackend.describe_tags

    def fast_describe_tags(self, filters=None):
        ids = (filters or {}).get("resource-id")
        if filters and len(filters) == 1 and ids and len(ids) == 1 and not any(c in ids[0] for c in "*?"):
            rid = ids[0]  # the per-resource call every tagged object makes when it is rendered
            kind = tags.EC2_PREFIX_TO_RESOURCE.get(tags.get_prefix(rid), "")
            return [{"resource_id": rid, "key": k, "value": v, "resource_type": kind}
                    for k, v in self.tags.get(rid, {}).items()]
        return describe_tags(self, filters)

    def get_instance(self, instance_id):
        for reservation in self.reservations.values():  # without all_reservations()' copy of each one
            for instance in reservation.instances:
                if instance.id == instance_id:
                    return instance
        raise InvalidInstanceIdError(instance_id)

    tags.TagBackend.describe_tags = fast_describe_tags
    instances.InstanceBackend.get_instance = get_instance


def _copy_each_level_once() -> None:
    import base64
    import copy

    from moto.dynamodb.models.dynamo_type import DynamoType

    def to_regular_json(self):
        def plain(v):
            return v.to_regular_json() if isinstance(v, DynamoType) else copy.deepcopy(v)

        value = self.value
        if isinstance(value, dict):
            value = {k: plain(v) for k, v in value.items()}
        elif isinstance(value, list):
            value = [plain(v) for v in value]
        if self.is_binary() and isinstance(value, str):
            value = base64.b64decode(value)
        return {self.type: value}

    DynamoType.to_regular_json = to_regular_json


def _instance_connect_authorizes() -> None:
    import json

    from moto.core.exceptions import JsonRESTError
    from moto.ec2.exceptions import InvalidInstanceIdError
    from moto.ec2.models import ec2_backends
    from moto.ec2instanceconnect.responses import Ec2InstanceConnectResponse

    from devstack.standins.hosts import eic_keys

    original = Ec2InstanceConnectResponse.send_ssh_public_key

    def send_ssh_public_key(self):
        key_dir = eic_keys.key_dir_from_env()
        if key_dir is None:
            return original(self)
        instance_id, user = self._get_param("InstanceId"), self._get_param("InstanceOSUser")
        try:
            instance = ec2_backends[self.current_account][self.region].get_instance(instance_id)
        except InvalidInstanceIdError:
            raise JsonRESTError("EC2InstanceNotFoundException", f"Instance not found: {instance_id}")
        if instance.state != "running":
            raise JsonRESTError("EC2InstanceStateInvalidException", f"Instance {instance_id} is not running")
        try:
            eic_keys.push(key_dir, instance_id, user, self._get_param("SSHPublicKey") or "")
        except ValueError as exc:
            raise JsonRESTError("InvalidArgsException", str(exc))
        return json.dumps({"RequestId": f"eic-{instance_id}", "Success": True})

    Ec2InstanceConnectResponse.send_ssh_public_key = send_ssh_public_key


SSM_CALLS: dict[str, int] = {}  # SSM action → calls served (GET /moto-api/ec2audit/ssm-calls)
SSM_POOL_THREADS = 64  # every command's invocations share this many agent threads
SSM_OUTPUT_CAP = 64 << 20  # stdout bytes kept per invocation (the fleet's 50 MB `huge` host fits)


def _ssm_runs_commands() -> None:
    import json
    import math
    import queue
    import re
    import threading
    from datetime import timedelta

    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import InvalidInstanceIdError
    from moto.ec2.models import ec2_backends
    from moto.moto_api._internal import urls as moto_api_urls
    from moto.s3.models import s3_backends
    from moto.ssm.exceptions import SSMException
    from moto.ssm.responses import SimpleSystemManagerResponse as SSM

    from devstack.standins.hosts import ssm_agents

    ssm_dir = ssm_agents.ssm_dir_from_env()
    if ssm_dir is None:
        return
    plugin, document = "aws:runShellScript", "AWS-RunShellScript"
    terminal = ("Success", "Failed", "TimedOut")
    work: queue.SimpleQueue = queue.SimpleQueue()
    for n in range(SSM_POOL_THREADS):  # daemon threads: a hung host never holds up the server's exit
        threading.Thread(target=lambda: [job() for job in iter(work.get, None)], name=f"ssm-agent-{n}",
                         daemon=True).start()
    lock = threading.Lock()  # guards runs, every invocation dict and SSM_CALLS
    runs: dict[str, dict] = {}  # command id → the command, its instances (in order) and their invocations

    def now() -> datetime:
        return datetime.now(timezone.utc)

    def aws_time(moment: datetime | None) -> str:  # GetCommandInvocation's string dates, as AWS writes them
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z" if moment else ""

    def invalid(code: str, message: str) -> SSMException:  # SSM's: serialized with SSM's error shapes
        return SSMException(code, message)

    def existing(account: str, region: str, instance_id: str):
        try:
            return ec2_backends[account][region].get_instance(instance_id)
        except InvalidInstanceIdError:
            return None

    def page(self, items: list, key: str, limit: int, low: int) -> dict:
        if not low <= limit <= 50:
            raise invalid("ValidationException", f"1 validation error detected: Value '{limit}' at 'maxResults' "
                                                 f"failed to satisfy constraint: Member must have value between {low} and 50")
        token = self._get_param("NextToken") or "0"
        if not token.isdigit():
            raise invalid("InvalidNextToken", "The specified token is not valid.")
        start = int(token)
        result = {key: items[start:start + limit]}
        if start + limit < len(items):
            result["NextToken"] = str(start + limit)
        return result

    call_action = SSM.call_action

    def counted_call_action(self):
        with lock:
            action = self._get_action()
            SSM_CALLS[action] = SSM_CALLS.get(action, 0) + 1
        return call_action(self)

    def describe_instance_information(self):
        wanted: dict[str, set] = {}
        for f in self._get_param("Filters") or []:
            wanted.setdefault(f.get("Key"), set()).update(f.get("Values") or [])
        for f in self._get_param("InstanceInformationFilterList") or []:  # the older form
            wanted.setdefault(f.get("key"), set()).update(f.get("valueSet") or [])
        unknown = set(wanted) - {"InstanceIds", "PingStatus"}
        if unknown:
            raise invalid("InvalidFilterKey", f"the SSM stand-in filters by InstanceIds and PingStatus, not {sorted(unknown)}")
        items = []
        if "InstanceIds" in wanted:  # only the files asked for: a 10,000-host registry is not re-read per page
            asked = {i: ssm_agents.registration(ssm_dir, i) for i in sorted(wanted["InstanceIds"])}
            chosen = {i: r for i, r in asked.items() if r is not None}
        else:
            chosen = ssm_agents.registrations(ssm_dir)
        for instance_id, record in chosen.items():
            ping = record.get("ping_status", "Online")
            if instance_id not in wanted.get("InstanceIds", {instance_id}) or ping not in wanted.get("PingStatus", {ping}):
                continue
            instance = existing(self.current_account, self.region, instance_id)
            if instance is None:
                continue
            version = record.get("agent_version", ssm_agents.DEFAULT_AGENT_VERSION)
            items.append({
                "InstanceId": instance_id, "PingStatus": ping,
                "LastPingDateTime": now() - (timedelta(0) if ping == "Online" else timedelta(hours=1)),
                "AgentVersion": version, "IsLatestVersion": version == ssm_agents.DEFAULT_AGENT_VERSION,
                "PlatformType": "Linux", "PlatformName": record.get("platform_name", "Amazon Linux"),
                "PlatformVersion": record.get("platform_version", "2023"), "ResourceType": "EC2Instance",
                "IPAddress": record.get("ip_address") or instance.private_ip_address or "",
                "ComputerName": record.get("computer_name") or ""})
        return ActionResult(page(self, items, "InstanceInformationList", self._get_int_param("MaxResults") or 10, 5))

    def concurrency(value: str, targets: int) -> int:
        value = (value or "50").strip()
        try:
            n = math.ceil(targets * int(value[:-1]) / 100) if value.endswith("%") else int(value)
        except ValueError:
            raise invalid("ValidationException", f"MaxConcurrency {value!r} is neither a number nor a percentage")
        return max(1, min(n, SSM_POOL_THREADS))

    def custom_document(self, name: str, parameters: dict) -> tuple[list[str], str, str, str]:
        """A Command document created in this moto (one aws:runShellScript step): its commands and timeout
        with the parameters substituted and checked against their allowedPattern, as SSM does; returns
        (commands, timeout, step name, version)."""
        try:
            found = self.ssm_backend.get_document(name, self._get_param("DocumentVersion"), None, "JSON")
        except Exception:  # noqa: BLE001 — moto's own not-found
            raise invalid("InvalidDocument", f"Document {name} does not exist")
        body = json.loads(found["Content"])
        steps = [s for s in body.get("mainSteps", []) if s.get("action") == "aws:runShellScript"]
        if len(steps) != 1 or len(body.get("mainSteps", [])) != 1:
            raise invalid("InvalidDocument", "the SSM stand-in runs documents with one aws:runShellScript step")
        values = {}
        for key, spec in (body.get("parameters") or {}).items():
            value = (parameters.get(key) or [spec.get("default")])[0]
            if value is None or not re.fullmatch(spec.get("allowedPattern", ".*"), str(value)):
                raise invalid("InvalidParameters", f"parameter {key!r} is missing or does not match its allowedPattern")
            values[key] = str(value)
        unknown = set(parameters) - set(values)
        if unknown:
            raise invalid("InvalidParameters", f"document {name} has no parameters {sorted(unknown)}")

        def resolved(text: str) -> str:
            return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: values.get(m.group(1), m.group(0)), text)

        inputs = steps[0].get("inputs", {})
        return ([resolved(line) for line in inputs.get("runCommand", [])], resolved(str(inputs.get("timeoutSeconds", "3600"))),
                steps[0]["name"], str(found["DocumentVersion"]))

    def send_command(self):
        account, region = self.current_account, self.region
        name, ids = self._get_param("DocumentName"), list(self._get_param("InstanceIds") or [])
        parameters = self._get_param("Parameters") or {}
        if name == document:
            commands = parameters.get("commands") or []
            timeout = (parameters.get("executionTimeout") or ["3600"])[0]
            step, version = "0.awsrunShellScript", "$DEFAULT"
        else:  # the audit's own document (include/ssm_document.py), or any one-step shell document
            commands, timeout, step, version = custom_document(self, name, parameters)
        if self._get_param("Targets") or not ids:
            raise invalid("ValidationException", "the SSM stand-in takes InstanceIds (1 to 50), not Targets")
        if len(ids) > 50:
            raise invalid("ValidationException", f"1 validation error detected: Value '{ids}' at 'instanceIds' failed "
                                                 "to satisfy constraint: Member must have length less than or equal to 50")
        if len(set(ids)) != len(ids):
            raise invalid("DuplicateInstanceId", "Instance Id is duplicated.")
        if not commands or not str(timeout).isdigit() or not 1 <= int(timeout) <= 172800:
            raise invalid("InvalidParameters", "commands is required; executionTimeout must be 1 to 172800 seconds")
        records = {i: ssm_agents.registration(ssm_dir, i) for i in ids}
        for instance_id, record in records.items():  # IAM decides before SSM looks at the instances
            if record and record.get("deny_send"):
                raise invalid("AccessDeniedException", f"User: arn:aws:iam::{account}:user/ec2-audit is not authorized "
                                                       f"to perform: ssm:SendCommand on resource: "
                                                       f"arn:aws:ec2:{region}:{account}:instance/{instance_id}")
        unusable = [i for i, r in records.items()
                    if not r or r.get("ping_status") != "Online" or existing(account, region, i) is None]
        if unusable:
            raise invalid("InvalidInstanceId", f"Instances [[{', '.join(unusable)}]] not in a valid state for account {account}")
        width = concurrency(self._get_param("MaxConcurrency"), len(ids))
        bucket, prefix = self._get_param("OutputS3BucketName", ""), self._get_param("OutputS3KeyPrefix", "")
        command = self.ssm_backend.send_command(
            comment=self._get_param("Comment", ""), document_name=name,
            timeout_seconds=self._get_int_param("TimeoutSeconds"), instance_ids=list(ids),
            max_concurrency=self._get_param("MaxConcurrency", "50"), max_errors=self._get_param("MaxErrors", "0"),
            notification_config=self._get_param("NotificationConfig"), output_s3_bucket_name=bucket,
            output_s3_key_prefix=prefix, output_s3_region=self._get_param("OutputS3Region", ""),
            parameters=parameters, service_role_arn=self._get_param("ServiceRoleArn", ""), targets=[])
        with lock:
            # moto's Command adds every instance of the region for an empty Targets, and claims success.
            command.instance_ids, command.invocations = ids, []
            command.status = command.status_details = "Pending"
            command.completed_count, command.error_count, command.target_count = 0, 0, len(ids)
            run = {"command": command, "ids": ids, "queue": list(ids), "account": account, "region": region,
                   "requested": command.requested_date_time.replace(tzinfo=timezone.utc),
                   "script": ("\n".join(commands) + "\n").encode(), "timeout": int(timeout), "bucket": bucket,
                   "prefix": prefix, "s3_region": self._get_param("OutputS3Region") or region,
                   "document": name, "version": version, "step": step,
                   "plugin": plugin if name == document else step,
                   "invocations": {i: {"Status": "Pending", "StatusDetails": "Pending", "ResponseCode": -1,
                                       "start": None, "end": None, "out": "", "err": "", "output": "",
                                       "out_url": "", "err_url": ""} for i in ids}}
            runs[command.command_id] = run
            answer = {"Command": command.response_object()}
        for _ in range(min(width, len(ids))):  # each worker takes this command's next instance when done
            work.put(lambda: drain(run))
        return ActionResult(answer)

    def drain(run: dict) -> None:
        while True:
            with lock:
                if not run["queue"]:
                    return
                instance_id = run["queue"].pop(0)
                inv = run["invocations"][instance_id]
                inv.update(Status="InProgress", StatusDetails="InProgress", start=now())
                run["command"].status = run["command"].status_details = "InProgress"
            try:
                execute(run, instance_id, inv)
            except Exception as exc:  # noqa: BLE001 — an invocation never stays InProgress
                with lock:
                    finish(run, inv, "Failed", "Failed", -1, ssm_agents.HostRun(stderr=f"ssm stand-in: {exc}".encode()))

    def execute(run: dict, instance_id: str, inv: dict) -> None:
        record = ssm_agents.registration(ssm_dir, instance_id)
        if record is None:
            raise RuntimeError(f"{instance_id} is no longer registered")
        result = ssm_agents.run_script(record["channel"], run["script"], run["timeout"], SSM_OUTPUT_CAP)
        if result.timed_out:
            status = ("TimedOut", "ExecutionTimedOut")
        else:
            status = ("Success", "Success") if result.exit_code == 0 else ("Failed", "Failed")
        urls = upload(run, instance_id, result) if run["bucket"] else ("", "")
        with lock:
            finish(run, inv, *status, -1 if result.timed_out else result.exit_code, result, urls)

    def upload(run: dict, instance_id: str, result) -> tuple[str, str]:
        """The agent's S3 layout; the bucket must exist (as on AWS, a missing one just gets no output)."""
        base = (f"{run['prefix']}/" if run["prefix"] else "") + \
            f"{run['command'].command_id}/{instance_id}/awsrunShellScript/{run['step']}"
        backend = s3_backends[run["account"]]["aws"]
        urls = []
        for name, data in (("stdout", result.stdout), ("stderr", result.stderr)):
            if name == "stderr" and not data:
                urls.append("")
                continue
            try:
                backend.put_object(run["bucket"], f"{base}/{name}", data)
                urls.append(f"https://s3.{run['s3_region']}.amazonaws.com/{run['bucket']}/{base}/{name}")
            except Exception:  # noqa: BLE001 — no such bucket
                urls.append("")
        return urls[0], urls[1]

    def finish(run: dict, inv: dict, status: str, details: str, code: int, result, urls=("", "")) -> None:
        def text(data: bytes, chars: int) -> str:  # decode only what can be shown (a 50 MB stdout stays bytes)
            return data[:chars * 4 + 4].decode("utf-8", "replace")[:chars]

        inv.update(Status=status, StatusDetails=details, ResponseCode=code, end=now(), out_url=urls[0],
                   err_url=urls[1], out=text(result.stdout, 24000), err=text(result.stderr, 8000),
                   output=text(result.stdout, 2500))
        done = [v["Status"] for v in run["invocations"].values() if v["Status"] in terminal]
        command = run["command"]
        command.completed_count, command.error_count = len(done), sum(s != "Success" for s in done)
        if len(done) == len(run["ids"]):
            command.status = ("Success" if set(done) == {"Success"} else "Failed" if "Failed" in done else "TimedOut")
            command.status_details = command.status

    def found(self, command_id: str) -> dict | None:
        run = runs.get(command_id or "")
        return run if run and (run["account"], run["region"]) == (self.current_account, self.region) else None

    def elapsed(inv: dict) -> str:
        if not inv["start"]:
            return ""
        return f"PT{((inv['end'] or now()) - inv['start']).total_seconds():.3f}S"

    def get_command_invocation(self):
        command_id, instance_id = self._get_param("CommandId"), self._get_param("InstanceId")
        with lock:
            run = found(self, command_id)
            inv = run["invocations"].get(instance_id) if run else None
            if inv is None:
                raise invalid("InvocationDoesNotExist", f"no invocation of command {command_id} on {instance_id}")
            if self._get_param("PluginName") not in (None, "", run["plugin"]):
                raise invalid("InvalidPluginName", f"the only plugin is {run['plugin']}")
            command = run["command"]
            return ActionResult({
                "CommandId": command_id, "InstanceId": instance_id, "Comment": command.comment,
                "DocumentName": run["document"], "DocumentVersion": run["version"], "PluginName": run["plugin"],
                "ResponseCode": inv["ResponseCode"], "ExecutionStartDateTime": aws_time(inv["start"]),
                "ExecutionElapsedTime": elapsed(inv), "ExecutionEndDateTime": aws_time(inv["end"]),
                "Status": inv["Status"], "StatusDetails": inv["StatusDetails"],
                "StandardOutputContent": inv["out"], "StandardOutputUrl": inv["out_url"],
                "StandardErrorContent": inv["err"], "StandardErrorUrl": inv["err_url"],
                "CloudWatchOutputConfig": {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": False}})

    def list_command_invocations(self):
        command_id, instance_id = self._get_param("CommandId"), self._get_param("InstanceId")
        details = self._get_bool_param("Details", False)
        if self._get_param("Filters"):
            raise invalid("InvalidFilterKey", "the SSM stand-in filters by CommandId and InstanceId only")
        items = []
        with lock:
            for cid in reversed(list(runs)):  # newest command first, as AWS lists them
                run = found(self, cid)
                if run is None or (command_id and cid != command_id):
                    continue
                for i in run["ids"]:
                    if instance_id and i != instance_id:
                        continue
                    inv = run["invocations"][i]
                    item = {"CommandId": cid, "InstanceId": i, "InstanceName": "", "Comment": run["command"].comment,
                            "DocumentName": run["document"], "DocumentVersion": run["version"],
                            "RequestedDateTime": run["requested"],
                            "Status": inv["Status"], "StatusDetails": inv["StatusDetails"], "TraceOutput": "",
                            "StandardOutputUrl": inv["out_url"], "StandardErrorUrl": inv["err_url"],
                            "CommandPlugins": [], "ServiceRole": ""}
                    if details:
                        item["CommandPlugins"] = [{k: v for k, v in {
                            "Name": run["plugin"], "Status": inv["Status"], "StatusDetails": inv["StatusDetails"],
                            "ResponseCode": inv["ResponseCode"], "ResponseStartDateTime": inv["start"],
                            "ResponseFinishDateTime": inv["end"], "Output": inv["output"],
                            "StandardOutputUrl": inv["out_url"], "StandardErrorUrl": inv["err_url"],
                            "OutputS3Region": run["s3_region"], "OutputS3BucketName": run["bucket"],
                            "OutputS3KeyPrefix": run["prefix"]}.items() if v is not None}]
                    items.append(item)
        return ActionResult(page(self, items, "CommandInvocations", self._get_int_param("MaxResults") or 50, 1))

    def ssm_calls(request, full_url, headers):
        with lock:
            body = json.dumps({"calls": dict(sorted(SSM_CALLS.items()))})
        return 200, {"Content-Type": "application/json"}, body

    SSM.call_action = counted_call_action
    SSM.describe_instance_information = describe_instance_information
    SSM.send_command = send_command
    SSM.get_command_invocation = get_command_invocation
    SSM.list_command_invocations = list_command_invocations
    moto_api_urls.url_paths["{0}/moto-api/ec2audit/ssm-calls"] = ssm_calls


SECURITYHUB_CALLS: dict[str, int] = {}  # Security Hub action → calls served (GET /moto-api/ec2audit/securityhub-calls)
SECURITYHUB_LARGEST: dict[str, int] = {}  # action → most findings in one request


def _security_hub_as_aws() -> None:
    import json
    import threading

    from moto.moto_api._internal import urls as moto_api_urls
    from moto.securityhub import urls as securityhub_urls
    from moto.securityhub.exceptions import SecurityHubClientError
    from moto.securityhub.models import Finding
    from moto.securityhub.responses import SecurityHubResponse as SH

    lock = threading.Lock()  # guards the counters, the faults and every backend's findings
    faults: dict[tuple[str, str], list[str]] = {}  # (action, finding id) → error codes still to answer
    customer_set: dict[str, set[str]] = {}  # finding id → top-level fields a customer set (BatchUpdateFindings)
    required = ("SchemaVersion", "Id", "ProductArn", "GeneratorId", "AwsAccountId", "CreatedAt", "UpdatedAt",
                "Title", "Description", "Resources")
    customer_owned = ("Note", "UserDefinedFields", "VerificationState", "Workflow", "WorkflowState")
    labels = {"INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL"}
    workflows = {"NEW", "NOTIFIED", "RESOLVED", "SUPPRESSED"}

    def now() -> str:
        moment = datetime.now(timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

    def invalid(message: str) -> SecurityHubClientError:
        return SecurityHubClientError("InvalidInputException", message)

    def not_enabled() -> SecurityHubClientError:
        return SecurityHubClientError("InvalidAccessException", "Account is not subscribed to AWS Security Hub")

    def body(self) -> dict:
        raw = self.body.decode() if isinstance(self.body, bytes) else self.body
        return json.loads(raw) if raw else {}

    def values(finding: dict, key: str) -> list:
        simple = {"Id", "ProductArn", "GeneratorId", "AwsAccountId", "Title", "ProductName", "CompanyName"}
        if key in simple:
            return [finding.get(key)]
        return {"RecordState": lambda: [finding.get("RecordState", "ACTIVE")],
                "ComplianceStatus": lambda: [(finding.get("Compliance") or {}).get("Status")],
                "WorkflowStatus": lambda: [(finding.get("Workflow") or {}).get("Status")],
                "SeverityLabel": lambda: [(finding.get("Severity") or {}).get("Label")],
                "ResourceId": lambda: [r.get("Id") for r in finding.get("Resources") or []],
                "ResourceType": lambda: [r.get("Type") for r in finding.get("Resources") or []],
                "Type": lambda: list(finding.get("Types") or [])}[key]()

    tests = {"EQUALS": lambda v, w: v == w, "PREFIX": lambda v, w: v.startswith(w), "CONTAINS": lambda v, w: w in v,
             "NOT_EQUALS": lambda v, w: v != w, "PREFIX_NOT_EQUALS": lambda v, w: not v.startswith(w),
             "NOT_CONTAINS": lambda v, w: w not in v}
    negative = {"NOT_EQUALS", "PREFIX_NOT_EQUALS", "NOT_CONTAINS"}

    def matches(present: list, conditions: list[dict], get=lambda c: c.get("Value")) -> bool:
        present = [v for v in present if isinstance(v, str)]
        pos = [c for c in conditions if c.get("Comparison") not in negative]
        neg = [c for c in conditions if c.get("Comparison") in negative]
        for c in conditions:
            if c.get("Comparison") not in tests:
                raise invalid(f"Comparison {c.get('Comparison')!r} is not one of {sorted(tests)}")
        ok_pos = not pos or any(tests[c["Comparison"]](v, get(c) or "") for c in pos for v in present)
        ok_neg = all(tests[c["Comparison"]](v, get(c) or "") for c in neg for v in present)
        return ok_pos and ok_neg

    def selected(finding: dict, filters: dict) -> bool:
        for key, conditions in filters.items():
            if key == "ProductFields":
                fields = finding.get("ProductFields") or {}
                for c in conditions:
                    if not matches([fields.get(c.get("Key"))] if c.get("Key") in fields else [], [c]):
                        return False
            elif not matches(values(finding, key), conditions):
                return False
        return True

    known_filters = {"Id", "ProductArn", "GeneratorId", "AwsAccountId", "Title", "ProductName", "CompanyName",
                     "RecordState", "ComplianceStatus", "WorkflowStatus", "SeverityLabel", "ResourceId",
                     "ResourceType", "Type", "ProductFields"}

    call_action = SH.call_action

    def counted_call_action(self):
        with lock:
            action = self._get_action()
            SECURITYHUB_CALLS[action] = SECURITYHUB_CALLS.get(action, 0) + 1
        return call_action(self)

    def get_findings(self):
        backend = self.securityhub_backend
        if not backend.enabled:
            raise not_enabled()
        params = body(self)
        filters = params.get("Filters") or {}
        unknown = set(filters) - known_filters
        if unknown:
            raise invalid(f"the Security Hub stand-in does not filter by {sorted(unknown)}")
        limit = params.get("MaxResults", 100)
        if not isinstance(limit, int) or not 1 <= limit <= 100:
            raise invalid("MaxResults must be a number between 1 and 100")
        token = params.get("NextToken") or "0"
        if not token.isdigit():
            raise invalid("The NextToken is not valid")
        with lock:
            chosen = [json.loads(json.dumps(f.data)) for f in backend.findings if selected(f.data, filters)]
        start = int(token)
        answer = {"Findings": chosen[start:start + limit]}
        if start + limit < len(chosen):
            answer["NextToken"] = str(start + limit)
        return json.dumps(answer)

    def problems(finding: dict, account: str, region: str) -> str:
        missing = [k for k in required if not finding.get(k)]
        fpf = finding.get("FindingProviderFields") or {}
        if not (finding.get("Severity") or fpf.get("Severity")):
            missing.append("Severity")
        if not (finding.get("Types") or fpf.get("Types")):
            missing.append("Types")
        if missing:
            return f"Finding is missing required fields: {missing}"
        if finding["AwsAccountId"] != account:
            return f"AwsAccountId {finding['AwsAccountId']} is not the calling account {account}"
        if finding["ProductArn"] != f"arn:aws:securityhub:{region}:{account}:product/{account}/default":
            return f"ProductArn {finding['ProductArn']} is not this account's default product in {region}"
        for key in ("CreatedAt", "UpdatedAt", "FirstObservedAt", "LastObservedAt"):
            if key in finding:
                try:
                    datetime.fromisoformat(str(finding[key]).replace("Z", "+00:00"))
                except ValueError:
                    return f"{key} {finding[key]!r} is not a timestamp"
        for severity in (finding.get("Severity"), fpf.get("Severity")):
            if severity and severity.get("Label") not in labels:
                return f"Severity.Label {severity.get('Label')!r} is not one of {sorted(labels)}"
        if finding.get("RecordState", "ACTIVE") not in ("ACTIVE", "ARCHIVED"):
            return f"RecordState {finding.get('RecordState')!r} is not ACTIVE or ARCHIVED"
        status = (finding.get("Compliance") or {}).get("Status")
        if status is not None and status not in ("PASSED", "WARNING", "FAILED", "NOT_AVAILABLE"):
            return f"Compliance.Status {status!r} is not valid"
        if not isinstance(finding["Resources"], list) or not finding["Resources"]:
            return "Finding must contain at least one resource in the Resources array"
        if len(json.dumps(finding).encode()) > 240 * 1024:
            return "Finding is larger than 240 KB"
        return ""

    def fault(action: str, finding_id: str) -> str:
        codes = faults.get((action, finding_id))
        if not codes:
            return ""
        code = codes.pop(0)
        if not codes:
            faults.pop((action, finding_id))
        return code

    def create(finding: dict, stamp: str) -> dict:
        fpf = dict(finding.get("FindingProviderFields") or {})
        for key in ("Severity", "Types", "Confidence", "Criticality", "RelatedFindings"):
            if key in finding and key not in fpf:
                fpf[key] = finding[key]
            elif key in fpf and key not in finding:
                finding[key] = fpf[key]
        workflow = (finding.get("Workflow") or {}).get("Status", "NEW")
        return {**finding, "FindingProviderFields": fpf, "RecordState": finding.get("RecordState", "ACTIVE"),
                "Workflow": {"Status": workflow if workflow in workflows else "NEW"},
                "WorkflowState": "NEW", "ProcessedAt": stamp}

    def update(old: dict, finding: dict, stamp: str) -> dict:
        incoming = {k: v for k, v in finding.items() if k not in customer_owned}
        merged = {**old, **incoming, "ProcessedAt": stamp}
        fpf = {**(old.get("FindingProviderFields") or {}), **(finding.get("FindingProviderFields") or {})}
        merged["FindingProviderFields"] = fpf
        for key in ("Severity", "Types", "Confidence", "Criticality", "RelatedFindings"):
            if key in customer_set.get(old["Id"], set()):
                merged[key] = old.get(key)  # set by a customer: an import does not change it
            elif key in (finding.get("FindingProviderFields") or {}):
                merged[key] = fpf[key]
            elif key in old:
                merged[key] = old[key]  # the provider should not update it top-level
        was = (old.get("Compliance") or {}).get("Status")
        now_status = (merged.get("Compliance") or {}).get("Status")
        reopened = (was == "PASSED" and now_status in ("FAILED", "WARNING", "NOT_AVAILABLE")) or (
            old.get("RecordState") == "ARCHIVED" and merged.get("RecordState", "ACTIVE") == "ACTIVE")
        if reopened and (old.get("Workflow") or {}).get("Status") in ("RESOLVED", "NOTIFIED"):
            merged["Workflow"] = {"Status": "NEW"}
            merged["WorkflowState"] = "NEW"
        return merged

    def batch_import_findings(self):
        backend = self.securityhub_backend
        incoming = body(self).get("Findings") or []
        if not 1 <= len(incoming) <= 100:
            raise invalid(f"Findings must hold between 1 and 100 findings, not {len(incoming)}")
        with lock:
            SECURITYHUB_LARGEST["BatchImportFindings"] = max(SECURITYHUB_LARGEST.get("BatchImportFindings", 0),
                                                             len(incoming))
            failed, success, stamp = [], 0, now()
            by_id = {f.id: f for f in backend.findings}
            for finding in incoming:
                fid = str(finding.get("Id", ""))
                if not backend.enabled:
                    failed.append({"Id": fid, "ErrorCode": "InvalidAccess",
                                   "ErrorMessage": "Account is not subscribed to AWS Security Hub"})
                    continue
                why = problems(finding, self.current_account, self.region)
                code = "InvalidInput" if why else fault("BatchImportFindings", fid)
                if code:
                    failed.append({"Id": fid, "ErrorCode": code, "ErrorMessage": why or "injected fault"})
                    continue
                if fid in by_id:
                    by_id[fid].data = update(by_id[fid].data, finding, stamp)
                else:
                    by_id[fid] = Finding(fid, create(dict(finding), stamp))
                    backend.findings.append(by_id[fid])
                success += 1
        return json.dumps({"FailedCount": len(failed), "SuccessCount": success, "FailedFindings": failed})

    def batch_update_findings(self):
        backend = self.securityhub_backend
        if not backend.enabled:
            raise not_enabled()
        params = body(self)
        identifiers = params.get("FindingIdentifiers") or []
        if not 1 <= len(identifiers) <= 100:
            raise invalid(f"FindingIdentifiers must hold between 1 and 100 identifiers, not {len(identifiers)}")
        workflow = (params.get("Workflow") or {}).get("Status")
        if workflow is not None and workflow not in workflows:
            raise invalid(f"Workflow.Status {workflow!r} is not one of {sorted(workflows)}")
        note = params.get("Note")
        if note is not None and not (note.get("Text") and note.get("UpdatedBy")):
            raise invalid("Note needs Text and UpdatedBy")
        with lock:
            SECURITYHUB_LARGEST["BatchUpdateFindings"] = max(SECURITYHUB_LARGEST.get("BatchUpdateFindings", 0),
                                                             len(identifiers))
            by_id = {f.id: f for f in backend.findings}
            processed, unprocessed = [], []
            for ident in identifiers:
                fid, arn = ident.get("Id", ""), ident.get("ProductArn", "")
                found = by_id.get(fid)
                code = "FindingNotFound" if found is None or found.data.get("ProductArn") != arn else fault(
                    "BatchUpdateFindings", fid)
                if code:
                    unprocessed.append({"FindingIdentifier": {"Id": fid, "ProductArn": arn}, "ErrorCode": code,
                                        "ErrorMessage": "injected fault" if found else "Finding not found"})
                    continue
                data = found.data
                if workflow is not None:
                    data["Workflow"] = {"Status": workflow}
                    data["WorkflowState"] = {"NEW": "NEW", "NOTIFIED": "ASSIGNED", "RESOLVED": "RESOLVED",
                                             "SUPPRESSED": "DEFERRED"}[workflow]
                if note is not None:
                    data["Note"] = {**note, "UpdatedAt": now()}
                for key in ("VerificationState", "UserDefinedFields", "Confidence", "Criticality", "Types"):
                    if key in params:
                        data[key] = params[key]
                        customer_set.setdefault(fid, set()).add(key)
                if "Severity" in params:
                    data["Severity"] = {**(data.get("Severity") or {}), **params["Severity"]}
                    customer_set.setdefault(fid, set()).add("Severity")
                processed.append({"Id": fid, "ProductArn": arn})
        return json.dumps({"ProcessedFindings": processed, "UnprocessedFindings": unprocessed})

    def set_faults(request, full_url, headers):
        asked = json.loads(request.data.decode() or "{}")
        with lock:
            for fid in asked.get("ids", []):
                faults.setdefault((asked.get("action", "BatchImportFindings"), fid), []).extend(
                    [asked.get("code", "InternalException")] * int(asked.get("times", 1)))
        return 200, {"Content-Type": "application/json"}, json.dumps({"faults": len(faults)})

    def calls(request, full_url, headers):
        with lock:
            answer = {"calls": dict(sorted(SECURITYHUB_CALLS.items())), "largest_batch": dict(SECURITYHUB_LARGEST)}
        return 200, {"Content-Type": "application/json"}, json.dumps(answer)

    SH.call_action = counted_call_action
    SH.get_findings = get_findings
    SH.batch_import_findings = batch_import_findings
    SH.batch_update_findings = batch_update_findings
    securityhub_urls.url_paths["{0}/findings/batchupdate$"] = SH.dispatch
    moto_api_urls.url_paths["{0}/moto-api/ec2audit/securityhub-faults"] = set_faults
    moto_api_urls.url_paths["{0}/moto-api/ec2audit/securityhub-calls"] = calls


CPU_BY_ACTION: dict[str, list[float]] = {}  # "service.Action" → [calls, CPU seconds] (GET /moto-api/ec2audit/cpu)


def _cpu_by_action() -> None:
    """Where the stand-in's CPU goes, per AWS action (request parsing, the backend and the response's
    serialisation, on the thread that served it): the bench reads it to tell our calls' cost from moto's."""
    import json
    import threading
    import time

    from moto.core.responses import BaseResponse
    from moto.moto_api._internal import urls as moto_api_urls

    lock = threading.Lock()
    original = BaseResponse._dispatch

    def timed(self, request, full_url=None, headers=None):
        started = time.thread_time()
        try:
            return original(self, request, full_url, headers)
        finally:
            try:
                key = f"{getattr(self, 'service_name', None) or type(self).__name__}.{self._get_action()}"
            except Exception:  # noqa: BLE001 - an unparseable request still costs CPU
                key = f"{type(self).__name__}.?"
            with lock:
                entry = CPU_BY_ACTION.setdefault(key, [0, 0.0])
                entry[0] += 1
                entry[1] += time.thread_time() - started

    def cpu(request, full_url, headers):
        with lock:
            body = json.dumps({k: {"calls": v[0], "cpu_s": round(v[1], 3)}
                               for k, v in sorted(CPU_BY_ACTION.items(), key=lambda kv: -kv[1][1])})
        return 200, {"Content-Type": "application/json"}, body

    BaseResponse._dispatch = timed
    moto_api_urls.url_paths["{0}/moto-api/ec2audit/cpu"] = cpu


def main(argv: list[str] | None = None) -> None:
    from moto.server import main as moto_main

    _cpu_by_action()
    _ingestion_follows_events()
    _filter_terms_as_aws()
    _direct_lookups()
    _query_copies_what_it_returns()
    _copy_each_level_once()
    _instance_connect_authorizes()
    _ssm_runs_commands()
    _security_hub_as_aws()
    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
