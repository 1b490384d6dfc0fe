"""An SSM Command document that holds the audit script itself (`ssm_document` param), so the workers' role can
be allowed `ssm:SendCommand` on that document only — and can then run nothing else on the hosts.

With `AWS-RunShellScript` the script travels as a parameter, and IAM cannot restrict parameters: the role
that sends our read-only script could send any command, as root. With this document the only input is the
nonce (32 hex digits, `allowedPattern`) and the execution timeout (digits). Before each batch the document's
default version is read back (`GetDocument`) and compared with what this release would create; a document
that differs — an older release, or someone's edit — makes every host ERROR, and the version compared is the
one sent (`DocumentVersion`), so nothing can change between the check and the run.

    python -m include.reach.ssm_document > ec2-audit-document.json
    aws ssm create-document --name EC2Audit-ReadOnlyChecks --document-type Command \\
        --document-format JSON --content file://ec2-audit-document.json
    # a new release: aws ssm update-document ... --document-version '$LATEST', then
    #                aws ssm update-document-default-version --document-version <new>
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from include.checks.probes import NONCE_VAR

STEP = "ec2auditChecks"  # the step (plugin) name: GetCommandInvocation's PluginName and the S3 path's last folder
TIMEOUT_PATTERN = "^[0-9]{1,5}$"


def content(script: str) -> dict:
    """The document this release expects (schema 2.2, Linux only). The nonce is the script's first line, as
    probes.frame puts it for SSH."""
    if "{{" in script:  # SSM would substitute it: the script run would not be the script checked
        raise ValueError("the audit script must not contain '{{'")
    return {
        "schemaVersion": "2.2",
        "description": "EC2 audit compliance: the read-only audit-trail checks (ec2_audit_compliance DAG). "
                       "Changes nothing on the host.",
        "parameters": {
            "nonce": {"type": "String", "allowedPattern": "^[0-9a-f]{32}$",
                      "description": "The run's random section-marker nonce"},
            "executionTimeout": {"type": "String", "default": "60", "allowedPattern": TIMEOUT_PATTERN,
                                 "description": "Seconds the checks may run"},
        },
        "mainSteps": [{
            "action": "aws:runShellScript", "name": STEP,
            "precondition": {"StringEquals": ["platformType", "Linux"]},
            "inputs": {"timeoutSeconds": "{{ executionTimeout }}",
                       "runCommand": [f"{NONCE_VAR}={{{{ nonce }}}}", *script.rstrip("\n").split("\n")]},
        }],
    }


@dataclass(frozen=True)
class Verified:
    name: str
    version: str  # the version whose content matched: the one SendCommand names


class DocumentMismatch(RuntimeError):
    pass


def verify(client, name: str, script: str) -> Verified:
    """The document's default version, if it holds exactly this release's script; else DocumentMismatch."""
    answer = client.get_document(Name=name, DocumentFormat="JSON")
    version = str(answer.get("DocumentVersion", ""))
    try:
        found = json.loads(answer.get("Content") or "")
    except ValueError as exc:
        raise DocumentMismatch(f"SSM document {name} (version {version}) is not JSON: {exc}") from exc
    if found != content(script):
        raise DocumentMismatch(f"SSM document {name} (version {version}) does not hold this release's audit "
                               "script: update it from `python -m include.reach.ssm_document` and make that version "
                               "the default")
    return Verified(name, version)


def main() -> None:
    from include.checks.catalogue import SCRIPT

    json.dump(content(SCRIPT), sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
