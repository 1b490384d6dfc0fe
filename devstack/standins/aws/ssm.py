"""SSM Run Command that really runs the script on the stand-in's hosts.

moto's SendCommand answers success and runs nothing, and it has no ListCommandInvocations or
DescribeInstanceInformation. With `EC2AUDIT_SSM_DIR` (the registry of devstack/standins/hosts/ssm_agents.py:
which instances are managed, their ping status, and how the stand-in "agent" reaches each) the server has all
four: DescribeInstanceInformation lists the registered instances that exist in EC2 (InstanceIds/PingStatus
filters, pages); SendCommand (AWS-RunShellScript, or a one-step aws:runShellScript document created in this
moto — its parameters checked against their allowedPattern and substituted, as SSM does; ≤ 50 instances, each
registered and Online, none `deny_send` — else the whole call fails as AWS fails it) records moto's Command and
really runs the joined `commands` on each host through its channel, in a bounded pool (64 threads,
MaxConcurrency per command; no MaxErrors), bounded by `executionTimeout`, so invocations go Pending →
InProgress → Success / Failed / TimedOut with the real exit code and output; with OutputS3BucketName the full
stdout (and stderr) lands in moto's S3 under the agent's key layout. GetCommandInvocation returns at most
24,000 characters of stdout (8,000 of stderr), ListCommandInvocations (Details) 2,500 per plugin, as AWS does.
The SSM calls served are counted per action: `GET /moto-api/ec2audit/ssm-calls` → `{"calls": {"SendCommand":
3, ...}}`. Without the variable SSM is moto's own.
"""
from __future__ import annotations

import json
import math
import queue
import re
import threading
from datetime import timedelta, timezone
from pathlib import Path

from devstack.clock import aws_millis, now
from devstack.standins.aws.patching import answer_with, count_calls
from devstack.standins.hosts import ssm_agents

SSM_CALLS: dict[str, int] = {}  # SSM action → calls served (GET /moto-api/ec2audit/ssm-calls)
SSM_POOL_THREADS = 64  # every command's invocations share this many agent threads
SSM_OUTPUT_CAP = 64 << 20  # stdout bytes kept per invocation (the fleet's 50 MB `huge` host fits)
PLUGIN, DOCUMENT = "aws:runShellScript", "AWS-RunShellScript"
TERMINAL = ("Success", "Failed", "TimedOut")


def invalid(code: str, message: str):
    """SSM's own error: serialized with SSM's error shapes."""
    from moto.ssm.exceptions import SSMException

    return SSMException(code, message)


def existing(account: str, region: str, instance_id: str):
    """The EC2 instance, or None."""
    from moto.ec2.exceptions import InvalidInstanceIdError
    from moto.ec2.models import ec2_backends

    try:
        return ec2_backends[account][region].get_instance(instance_id)
    except InvalidInstanceIdError:
        return None


def page(response, items: list, key: str, limit: int, low: int) -> dict:
    """One page of `items` under `key`, from the request's NextToken (an offset), as SSM bounds MaxResults."""
    if not low <= limit <= 50:
        raise invalid("ValidationException", f"1 validation error detected: Value '{limit}' at 'maxResults' "
                                             f"failed to satisfy constraint: Member must have value between {low} and 50")
    token = response._get_param("NextToken") or "0"
    if not token.isdigit():
        raise invalid("InvalidNextToken", "The specified token is not valid.")
    start = int(token)
    result = {key: items[start:start + limit]}
    if start + limit < len(items):
        result["NextToken"] = str(start + limit)
    return result


def concurrency(value: str, targets: int) -> int:
    value = (value or "50").strip()
    try:
        n = math.ceil(targets * int(value[:-1]) / 100) if value.endswith("%") else int(value)
    except ValueError:
        raise invalid("ValidationException", f"MaxConcurrency {value!r} is neither a number nor a percentage")
    return max(1, min(n, SSM_POOL_THREADS))


def custom_document(response, name: str, parameters: dict) -> tuple[list[str], str, str, str]:
    """A Command document created in this moto (one aws:runShellScript step): its commands and timeout
    with the parameters substituted and checked against their allowedPattern, as SSM does; returns
    (commands, timeout, step name, version)."""
    try:
        found = response.ssm_backend.get_document(name, response._get_param("DocumentVersion"), None, "JSON")
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


def requested_script(response) -> tuple[str, list[str], dict, list[str], str, str, str]:
    """SendCommand's document, instances and script, checked as SSM checks them before looking at any instance:
    (document, instance ids, parameters, commands, timeout, step name, document version)."""
    name, ids = response._get_param("DocumentName"), list(response._get_param("InstanceIds") or [])
    parameters = response._get_param("Parameters") or {}
    if name == DOCUMENT:
        commands = parameters.get("commands") or []
        timeout = (parameters.get("executionTimeout") or ["3600"])[0]
        step, version = "0.awsrunShellScript", "$DEFAULT"
    else:  # the audit's own document (include/reach/ssm_document.py), or any one-step shell document
        commands, timeout, step, version = custom_document(response, name, parameters)
    if response._get_param("Targets") or not ids:
        raise invalid("ValidationException", "the SSM stand-in takes InstanceIds (1 to 50), not Targets")
    if len(ids) > 50:
        raise invalid("ValidationException", f"1 validation error detected: Value '{ids}' at 'instanceIds' failed "
                                             "to satisfy constraint: Member must have length less than or equal to 50")
    if len(set(ids)) != len(ids):
        raise invalid("DuplicateInstanceId", "Instance Id is duplicated.")
    if not commands or not str(timeout).isdigit() or not 1 <= int(timeout) <= 172800:
        raise invalid("InvalidParameters", "commands is required; executionTimeout must be 1 to 172800 seconds")
    return name, ids, parameters, commands, timeout, step, version


def invocation_item(cid: str, instance_id: str, run: dict, details: bool) -> dict:
    """One entry of ListCommandInvocations."""
    inv = run["invocations"][instance_id]
    item = {"CommandId": cid, "InstanceId": instance_id, "InstanceName": "", "Comment": run["command"].comment,
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
    return item


def elapsed(inv: dict) -> str:
    if not inv["start"]:
        return ""
    return f"PT{((inv['end'] or now()) - inv['start']).total_seconds():.3f}S"


class RunCommand:
    """The stand-in's SSM state: the registry it reads, the agent thread pool, and every command it ran."""

    def __init__(self, ssm_dir: Path) -> None:
        self.ssm_dir = ssm_dir
        self.work: queue.SimpleQueue = queue.SimpleQueue()
        for n in range(SSM_POOL_THREADS):  # daemon threads: a hung host never holds up the server's exit
            threading.Thread(target=lambda: [job() for job in iter(self.work.get, None)], name=f"ssm-agent-{n}",
                             daemon=True).start()
        self.lock = threading.Lock()  # guards runs, every invocation dict and SSM_CALLS
        self.runs: dict[str, dict] = {}  # command id → the command, its instances (in order) and their invocations

    # -- DescribeInstanceInformation
    def describe_instance_information(self, response):
        wanted = self._information_filters(response)
        items = []
        if "InstanceIds" in wanted:  # only the files asked for: a 10,000-host registry is not re-read per page
            asked = {i: ssm_agents.registration(self.ssm_dir, i) for i in sorted(wanted["InstanceIds"])}
            chosen = {i: r for i, r in asked.items() if r is not None}
        else:
            chosen = ssm_agents.registrations(self.ssm_dir)
        for instance_id, record in chosen.items():
            ping = record.get("ping_status", "Online")
            if instance_id not in wanted.get("InstanceIds", {instance_id}) or ping not in wanted.get("PingStatus", {ping}):
                continue
            instance = existing(response.current_account, response.region, instance_id)
            if instance is not None:
                items.append(self._information(instance_id, record, ping, instance))
        from moto.core.responses import ActionResult

        return ActionResult(page(response, items, "InstanceInformationList", response._get_int_param("MaxResults") or 10, 5))

    @staticmethod
    def _information_filters(response) -> dict[str, set]:
        wanted: dict[str, set] = {}
        for f in response._get_param("Filters") or []:
            wanted.setdefault(f.get("Key"), set()).update(f.get("Values") or [])
        for f in response._get_param("InstanceInformationFilterList") or []:  # the older form
            wanted.setdefault(f.get("key"), set()).update(f.get("valueSet") or [])
        unknown = set(wanted) - {"InstanceIds", "PingStatus"}
        if unknown:
            raise invalid("InvalidFilterKey", f"the SSM stand-in filters by InstanceIds and PingStatus, not {sorted(unknown)}")
        return wanted

    @staticmethod
    def _information(instance_id: str, record: dict, ping: str, instance) -> dict:
        version = record.get("agent_version", ssm_agents.DEFAULT_AGENT_VERSION)
        return {
            "InstanceId": instance_id, "PingStatus": ping,
            "LastPingDateTime": now() - (timedelta(0) if ping == "Online" else timedelta(hours=1)),
            "AgentVersion": version, "IsLatestVersion": version == ssm_agents.DEFAULT_AGENT_VERSION,
            "PlatformType": "Linux", "PlatformName": record.get("platform_name", "Amazon Linux"),
            "PlatformVersion": record.get("platform_version", "2023"), "ResourceType": "EC2Instance",
            "IPAddress": record.get("ip_address") or instance.private_ip_address or "",
            "ComputerName": record.get("computer_name") or ""}

    # -- SendCommand
    def send_command(self, response):
        from moto.core.responses import ActionResult

        account, region = response.current_account, response.region
        name, ids, parameters, commands, timeout, step, version = requested_script(response)
        self._check_instances(account, region, ids)
        width = concurrency(response._get_param("MaxConcurrency"), len(ids))
        bucket, prefix = response._get_param("OutputS3BucketName", ""), response._get_param("OutputS3KeyPrefix", "")
        command = response.ssm_backend.send_command(
            comment=response._get_param("Comment", ""), document_name=name,
            timeout_seconds=response._get_int_param("TimeoutSeconds"), instance_ids=list(ids),
            max_concurrency=response._get_param("MaxConcurrency", "50"), max_errors=response._get_param("MaxErrors", "0"),
            notification_config=response._get_param("NotificationConfig"), output_s3_bucket_name=bucket,
            output_s3_key_prefix=prefix, output_s3_region=response._get_param("OutputS3Region", ""),
            parameters=parameters, service_role_arn=response._get_param("ServiceRoleArn", ""), targets=[])
        with self.lock:
            # moto's Command adds every instance of the region for an empty Targets, and claims success.
            command.instance_ids, command.invocations = ids, []
            command.status = command.status_details = "Pending"
            command.completed_count, command.error_count, command.target_count = 0, 0, len(ids)
            run = {"command": command, "ids": ids, "queue": list(ids), "account": account, "region": region,
                   "requested": command.requested_date_time.replace(tzinfo=timezone.utc),
                   "script": ("\n".join(commands) + "\n").encode(), "timeout": int(timeout), "bucket": bucket,
                   "prefix": prefix, "s3_region": response._get_param("OutputS3Region") or region,
                   "document": name, "version": version, "step": step,
                   "plugin": PLUGIN if name == DOCUMENT else step,
                   "invocations": {i: {"Status": "Pending", "StatusDetails": "Pending", "ResponseCode": -1,
                                       "start": None, "end": None, "out": "", "err": "", "output": "",
                                       "out_url": "", "err_url": ""} for i in ids}}
            self.runs[command.command_id] = run
            answer = {"Command": command.response_object()}
        for _ in range(min(width, len(ids))):  # each worker takes this command's next instance when done
            self.work.put(lambda: self.drain(run))
        return ActionResult(answer)

    def _check_instances(self, account: str, region: str, ids: list[str]) -> None:
        records = {i: ssm_agents.registration(self.ssm_dir, i) for i in ids}
        for instance_id, record in records.items():  # IAM decides before SSM looks at the instances
            if record and record.get("deny_send"):
                raise invalid("AccessDeniedException", f"User: arn:aws:iam::{account}:user/ec2-audit is not authorized "
                                                       f"to perform: ssm:SendCommand on resource: "
                                                       f"arn:aws:ec2:{region}:{account}:instance/{instance_id}")
        unusable = [i for i, r in records.items()
                    if not r or r.get("ping_status") != "Online" or existing(account, region, i) is None]
        if unusable:
            raise invalid("InvalidInstanceId", f"Instances [[{', '.join(unusable)}]] not in a valid state for account {account}")

    # -- the agents: run each invocation, store its output, settle the command
    def drain(self, run: dict) -> None:
        while True:
            with self.lock:
                if not run["queue"]:
                    return
                instance_id = run["queue"].pop(0)
                inv = run["invocations"][instance_id]
                inv.update(Status="InProgress", StatusDetails="InProgress", start=now())
                run["command"].status = run["command"].status_details = "InProgress"
            try:
                self.execute(run, instance_id, inv)
            except Exception as exc:  # noqa: BLE001 — an invocation never stays InProgress
                with self.lock:
                    self.finish(run, inv, "Failed", "Failed", -1,
                                ssm_agents.HostRun(stderr=f"ssm stand-in: {exc}".encode()))

    def execute(self, run: dict, instance_id: str, inv: dict) -> None:
        record = ssm_agents.registration(self.ssm_dir, instance_id)
        if record is None:
            raise RuntimeError(f"{instance_id} is no longer registered")
        result = ssm_agents.run_script(record["channel"], run["script"], run["timeout"], SSM_OUTPUT_CAP)
        if result.timed_out:
            status = ("TimedOut", "ExecutionTimedOut")
        else:
            status = ("Success", "Success") if result.exit_code == 0 else ("Failed", "Failed")
        urls = self.upload(run, instance_id, result) if run["bucket"] else ("", "")
        with self.lock:
            self.finish(run, inv, *status, -1 if result.timed_out else result.exit_code, result, urls)

    @staticmethod
    def upload(run: dict, instance_id: str, result) -> tuple[str, str]:
        """The agent's S3 layout; the bucket must exist (as on AWS, a missing one just gets no output)."""
        from moto.s3.models import s3_backends

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

    @staticmethod
    def finish(run: dict, inv: dict, status: str, details: str, code: int, result, urls=("", "")) -> None:
        """Settle one invocation (under the lock), and the command once every invocation has."""
        def text(data: bytes, chars: int) -> str:  # decode only what can be shown (a 50 MB stdout stays bytes)
            return data[:chars * 4 + 4].decode("utf-8", "replace")[:chars]

        inv.update(Status=status, StatusDetails=details, ResponseCode=code, end=now(), out_url=urls[0],
                   err_url=urls[1], out=text(result.stdout, 24000), err=text(result.stderr, 8000),
                   output=text(result.stdout, 2500))
        done = [v["Status"] for v in run["invocations"].values() if v["Status"] in TERMINAL]
        command = run["command"]
        command.completed_count, command.error_count = len(done), sum(s != "Success" for s in done)
        if len(done) == len(run["ids"]):
            command.status = ("Success" if set(done) == {"Success"} else "Failed" if "Failed" in done else "TimedOut")
            command.status_details = command.status

    # -- GetCommandInvocation, ListCommandInvocations
    def found(self, response, command_id: str) -> dict | None:
        run = self.runs.get(command_id or "")
        return run if run and (run["account"], run["region"]) == (response.current_account, response.region) else None

    def get_command_invocation(self, response):
        from moto.core.responses import ActionResult

        command_id, instance_id = response._get_param("CommandId"), response._get_param("InstanceId")
        with self.lock:
            run = self.found(response, command_id)
            inv = run["invocations"].get(instance_id) if run else None
            if inv is None:
                raise invalid("InvocationDoesNotExist", f"no invocation of command {command_id} on {instance_id}")
            if response._get_param("PluginName") not in (None, "", run["plugin"]):
                raise invalid("InvalidPluginName", f"the only plugin is {run['plugin']}")
            command = run["command"]
            return ActionResult({
                "CommandId": command_id, "InstanceId": instance_id, "Comment": command.comment,
                "DocumentName": run["document"], "DocumentVersion": run["version"], "PluginName": run["plugin"],
                "ResponseCode": inv["ResponseCode"], "ExecutionStartDateTime": aws_millis(inv["start"]),
                "ExecutionElapsedTime": elapsed(inv), "ExecutionEndDateTime": aws_millis(inv["end"]),
                "Status": inv["Status"], "StatusDetails": inv["StatusDetails"],
                "StandardOutputContent": inv["out"], "StandardOutputUrl": inv["out_url"],
                "StandardErrorContent": inv["err"], "StandardErrorUrl": inv["err_url"],
                "CloudWatchOutputConfig": {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": False}})

    def list_command_invocations(self, response):
        from moto.core.responses import ActionResult

        command_id, instance_id = response._get_param("CommandId"), response._get_param("InstanceId")
        details = response._get_bool_param("Details", False)
        if response._get_param("Filters"):
            raise invalid("InvalidFilterKey", "the SSM stand-in filters by CommandId and InstanceId only")
        items = []
        with self.lock:
            for cid in reversed(list(self.runs)):  # newest command first, as AWS lists them
                run = self.found(response, cid)
                if run is None or (command_id and cid != command_id):
                    continue
                items += [invocation_item(cid, i, run, details) for i in run["ids"] if not instance_id or i == instance_id]
        return ActionResult(page(response, items, "CommandInvocations", response._get_int_param("MaxResults") or 50, 1))

    # -- GET /moto-api/ec2audit/ssm-calls
    def calls(self, request, full_url, headers):
        with self.lock:
            body = json.dumps({"calls": dict(sorted(SSM_CALLS.items()))})
        return 200, {"Content-Type": "application/json"}, body


def ssm_runs_commands() -> None:
    """Patch moto's SSM responses with RunCommand's (only with EC2AUDIT_SSM_DIR set)."""
    from moto.moto_api._internal import urls as moto_api_urls
    from moto.ssm.responses import SimpleSystemManagerResponse as SSM

    ssm_dir = ssm_agents.ssm_dir_from_env()
    if ssm_dir is None:
        return
    standin = RunCommand(ssm_dir)
    count_calls(SSM, SSM_CALLS, standin.lock)
    answer_with(SSM, {"describe_instance_information": standin.describe_instance_information,
                      "send_command": standin.send_command, "get_command_invocation": standin.get_command_invocation,
                      "list_command_invocations": standin.list_command_invocations})
    moto_api_urls.url_paths["{0}/moto-api/ec2audit/ssm-calls"] = standin.calls
