"""Real OpenSSH sshd "hosts" on loopback, each in its own mount namespace so it looks like its own machine.

Inside the namespace (`unshare -m`, private propagation) a wrapper bind-mounts:
  - a tmpfs over /opt holding a fake CloudWatch agent (ctl script + config JSON) — the agent cannot be
    installed from Debian's registry, its ctl is a shell script anyway, and only its answers matter here;
  - a sudoers.d directory granting the login user exactly the check commands (the real /etc is untouched);
  - for the "failing" profile (or where the kernel audit cannot be used), fake auditctl answers.
Profiles are host_states' names (SSHD_PROFILES): "compliant", "failing", "misconfigured".
Then it execs the real /usr/sbin/sshd. The transport, auth, sudo and shell are all real. Needs root.

Remediation (issue 18) adds a second login, REMEDIATION_LOGIN, with its own key and exactly
`fixes.remediation_sudoers`, and a "fixable" host (FixableState) whose auditd / agent state the fixes really
change: fake auditctl, service, augenrules and agent ctl read and write a state directory bind-mounted from the
workdir (so a test reads it from outside, SshdHost.state()), and log every change they make (trap_log()).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from devstack import procs
from devstack.standins.hosts.fleet import SSH_LOGIN
from devstack.standins.hosts.host_states import AUDIT_GROUP, CIS_RULES, GOOD_AUDITD_CONF, SSHD_PROFILES, WEAK_AUDITD_CONF
from include.checks.fixes import remediation_sudoers
from include.checks.probes import CWA_DIR, sudoers

LOGIN = SSH_LOGIN  # the audit's login, the same on simulated and real hosts
REMEDIATION_LOGIN = "ec2fix"  # the fixes' own login: the audit's stays read-only
STATE_DIR = "/opt/.state"  # a fixable host's state in its namespace (workdir/state outside)
EIC_COMMAND = "/opt/.sshd-test/eic_run_authorized_keys"  # in the namespace's root-owned /opt tmpfs, as sshd requires
# The same allowlist the README gives for real hosts.
SUDO_RULE = sudoers(LOGIN)
CMDLINE = {"compliant": "BOOT_IMAGE=/boot/vmlinuz-6.1.0-28-amd64 root=UUID=1f2e ro quiet audit=1 audit_backlog_limit=8192",
           "failing": "BOOT_IMAGE=/boot/vmlinuz-6.1.0-28-amd64 root=UUID=1f2e ro quiet"}
CMDLINE["misconfigured"] = CMDLINE["compliant"]
# "misconfigured": running and shipping, but each deeper check has something wrong. Its auditctl reports a
# `lost` counter that grows on every call (the kernel dropping events), kept in the namespace's /opt.
MISCONFIGURED_AUDITCTL = """case "$1" in
-s) n=$(cat /opt/.lost 2>/dev/null || echo 10); echo $((n + 15)) > /opt/.lost; cat <<EOF
enabled 1
failure 1
pid 4343
rate_limit 0
backlog_limit 320
lost $n
backlog 0
EOF
;;
-l) cat <<'EOF'
""" + "\n".join(CIS_RULES[:4]) + """
EOF
;;
-m) exit 0;;
*) echo unsupported >&2; exit 1;;
esac
"""

FAKE_AUDITCTL = {
    "compliant": ('enabled 2\nfailure 1\npid 4242\nrate_limit 0\nbacklog_limit 8192\nlost 0\nbacklog 0',
                "\n".join(CIS_RULES)),
    "failing": ("enabled 0\nfailure 1\npid 0\nrate_limit 0\nbacklog_limit 64\nlost 0\nbacklog 0", "No rules"),
}


def sshd_available() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "needs root (mount namespaces, sshd, useradd)"
    for tool in ("/usr/sbin/sshd", "/usr/bin/unshare", "/usr/bin/sudo", "/usr/bin/ssh-keygen"):
        if not os.path.exists(tool):
            return False, f"{tool} missing (apt-get install openssh-server sudo)"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        return False, f"unshare -m failed: {probe.stderr.decode(errors='replace').strip()}"
    return True, ""


def ensure_login_user(name: str = LOGIN) -> None:
    if subprocess.run(["id", name], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True, capture_output=True)
    # "*" = no password but not locked: sshd without PAM refuses locked ("!") accounts even for keys.
    subprocess.run(["usermod", "-p", "*", name], check=True, capture_output=True)


def _script(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def _toml_file_config(file_path: str, group: str, stream: str) -> str:
    return (f'    [[inputs.logfile.file_config]]\n      file_path = "{file_path}"\n'
            f'      log_group_name = "{group}"\n      log_stream_name = "{stream}"\n')


def _agent_tree(root: Path, profile: str, instance_id: str, ships: bool | None = None) -> None:
    cwa = root / "aws" / "amazon-cloudwatch-agent"
    (cwa / "bin").mkdir(parents=True)
    (cwa / "etc" / "amazon-cloudwatch-agent.d").mkdir(parents=True)
    running = profile in ("compliant", "misconfigured")
    ships = running if ships is None else ships
    status = {"status": "running" if running else "stopped", "starttime": "2026-11-23T06:00:00+00:00" if running else "",
              "configstatus": "configured", "version": "1.300057.0b1207"}
    _script(cwa / "bin" / "amazon-cloudwatch-agent-ctl",
            f"[ \"$1 $2\" = '-a status' ] || {{ echo 'unsupported' >&2; exit 1; }}\ncat <<'EOF'\n"
            f"{json.dumps(status, indent=2)}\nEOF\n")
    files = [{"file_path": "/var/log/syslog", "log_group_name": "/ec2/syslog"}]
    if ships:
        files.append({"file_path": "/var/log/audit/audit.log", "log_group_name": "/ec2/audit",
                      "log_stream_name": "{instance_id}"})
    user = "cwagent" if profile == "misconfigured" else "root"
    config = {"agent": {"run_as_user": user}, "logs": {"logs_collected": {"files": {"collect_list": files}}}}
    (cwa / "etc" / "amazon-cloudwatch-agent.json").write_text(json.dumps(config, indent=2))
    if running:  # what fetch-config would have translated; the failing host never ran it
        entry = (_toml_file_config("/var/log/audit/audit.log", "/ec2/audit",
                                   "i-UNKNOWN" if profile == "misconfigured" else instance_id) if ships
                 else _toml_file_config("/var/log/syslog", "/ec2/syslog", instance_id))
        (cwa / "etc" / "amazon-cloudwatch-agent.toml").write_text(
            '[inputs]\n  [[inputs.logfile]]\n    destination = "cloudwatchlogs"\n' + entry)


@dataclass(frozen=True)
class FixableState:
    """The starting state of a fixable host; everything else is the compliant profile's."""

    auditd_running: bool = False
    rules_loaded: bool = True
    agent_running: bool = True
    agent_ships_audit_log: bool = True
    # False: `service auditd start` says it started and exits 0, but the daemon dies at once (a bad config,
    # a full disk): the fix "ran" and must not be reported fixed.
    auditd_starts: bool = True


# Shared by the fakes of a fixable host. The trap line is written BEFORE the change, as root: a caller that is
# not root (no sudo) cannot write it, so it fails there and changes nothing. uid is who the fake runs as (0
# under sudo); sudo_uid is the login that asked (sudo sets SUDO_UID itself).
_FAKE_PRELUDE = f"""set -e
PATH=/usr/sbin:/usr/bin:/sbin:/bin
S={STATE_DIR}
record() {{ printf '%s uid=%s sudo_uid=%s %s\\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(id -u)" "${{SUDO_UID:--}}" "$*" >> $S/trap.log; }}
# What the kernel / auditd write to the audit log when the audit is tampered with (issue 28): one record,
# msg=audit(<epoch>.<ms>:<serial>), the serial counting up per host. The host's agent ships the file
# (devstack/standins/hosts/log_agent.py).
audit_record() {{ n=$(( $(cat $S/serial 2>/dev/null || echo 900) + 1 )); echo $n > $S/serial
  printf 'type=%s msg=audit(%s:%s): %s\\n' "$1" "$(date +%s.%3N)" "$n" "$2" >> /var/log/audit/audit.log; }}
"""

# Reads never write the trap log; enabled stays 1 (never immutable), so `augenrules --load` is allowed, until
# `-e 0` turns it off. `-D` writes one CONFIG_CHANGE per loaded rule, as the kernel does.
FIXABLE_AUDITCTL = _FAKE_PRELUDE + f"RULE_KEYS='{' '.join(dict.fromkeys(r.rsplit('=', 1)[-1].rsplit(' ', 1)[-1] for r in CIS_RULES))}'\n" + """case "$1" in
-s) pid=0; if [ "$(cat $S/auditd)" = running ]; then pid=4242; fi; cat <<EOF
enabled $(cat $S/enabled 2>/dev/null || echo 1)
failure 1
pid $pid
rate_limit 0
backlog_limit 8192
lost 0
backlog 0
EOF
;;
-l) if [ "$(cat $S/rules)" = loaded ]; then cat <<'EOF'
""" + "\n".join(CIS_RULES) + """
EOF
else echo "No rules"; fi;;
-m) exit 0;;
-D) [ $# = 1 ] || { echo unsupported >&2; exit 1; }
  record "$0" "$@"
  if [ "$(cat $S/rules)" = loaded ]; then for key in $RULE_KEYS; do
    audit_record CONFIG_CHANGE "auid=0 ses=3 op=remove_rule key=\\"$key\\" list=4 res=1"; done; fi
  echo empty > $S/rules;;
-e) [ "$*" = "-e 0" ] || { echo unsupported >&2; exit 1; }
  record "$0" "$@"
  audit_record CONFIG_CHANGE "op=set audit_enabled=0 old=$(cat $S/enabled 2>/dev/null || echo 1) auid=0 ses=3 res=1"
  echo 0 > $S/enabled;;
*) echo unsupported >&2; exit 1;;
esac
"""

FIXABLE_SERVICE = _FAKE_PRELUDE + """case "$*" in
"auditd start") record "$0" "$@"
  if [ "$(cat $S/auditd_starts)" = yes ]; then echo running > $S/auditd; fi
  echo "Starting audit daemon: auditd.";;
"auditd stop") record "$0" "$@"
  if [ "$(cat $S/auditd)" = running ]; then
    audit_record DAEMON_END "op=terminate auid=0 uid=0 ses=4294967295 pid=1 res=success"; fi
  echo stopped > $S/auditd
  echo "Stopping audit daemon: auditd.";;
*) echo "service: only 'auditd start' and 'auditd stop' here" >&2; exit 1;;
esac
"""
# What an attacker with root does to blind the audit (issue 28), granted to the fix login only when a test
# asks (start_sshd_host(tamper_sudo=True)): the real fix login never has them.
TAMPER_COMMANDS = ("/usr/sbin/service auditd stop", "/usr/sbin/auditctl -D", "/usr/sbin/auditctl -e 0")

# The fix login may `sudo systemctl enable --now auditd` (used where systemd runs): on a test host that must
# never reach this machine's own systemd.
FIXABLE_SYSTEMCTL = """echo "System has not been booted with systemd as init system (PID 1). Can't operate." >&2
exit 1
"""

FIXABLE_AUGENRULES = _FAKE_PRELUDE + """[ "$*" = "--load" ] || { echo "augenrules: only --load here" >&2; exit 1; }
record "$0" "$@"
echo loaded > $S/rules
"""


def _fixable_ctl(base_toml: str, instance_id: str) -> str:
    """The agent ctl of a fixable host. append-config does what the real one does to the files we judge: the
    fragment lands in .d/ as file_<name>, the TOML is re-translated (the base one plus an audit.log entry for
    the fragment's group) and the agent (re)starts."""
    audit_entry = _toml_file_config("/var/log/audit/audit.log", "$g", instance_id)  # $g: the fragment's group
    return _FAKE_PRELUDE + f"""A={CWA_DIR}
if [ "$*" = "-a status" ]; then
  if [ "$(cat $S/agent)" = running ]; then st=running t=2026-11-23T06:00:00+00:00; else st=stopped t=; fi
  printf '{{\\n  "status": "%s",\\n  "starttime": "%s",\\n  "configstatus": "configured",\\n  "version": "1.300057.0b1207"\\n}}\\n' "$st" "$t"
elif [ "$*" = "-a start" ]; then
  [ -f $A/etc/amazon-cloudwatch-agent.toml ] || {{ echo "no translated config: run fetch-config first" >&2; exit 1; }}
  record "$0" "$@"
  echo running > $S/agent
elif [ $# = 7 ] && [ "$1 $2 $3 $4 $5 $6" = "-a append-config -m ec2 -s -c" ] && [ "${{7#file:}}" != "$7" ]; then
  src=${{7#file:}}
  # The real ctl validates the merged config; here the fragment must name a group the TOML can hold.
  g=$(sed -n 's|^ *"log_group_name": "\\([-._/#A-Za-z0-9]*\\)".*|\\1|p' "$src" | head -n 1)
  [ -n "$g" ] || {{ echo "append-config: $src: no usable log_group_name" >&2; exit 1; }}
  record "$0" "$@"
  cp "$src" "$A/etc/amazon-cloudwatch-agent.d/file_$(basename "$src")"
  {{ cat <<'EOF'
{base_toml.rstrip(chr(10))}
EOF
  cat <<EOF
{audit_entry.rstrip(chr(10))}
EOF
  }} > $A/etc/amazon-cloudwatch-agent.toml
  echo running > $S/agent
else echo unsupported >&2; exit 1; fi
"""


@dataclass
class SshdHost:
    address: str
    port: int
    proc: subprocess.Popen
    host_key_fingerprint: str
    log: Path
    state_dir: Path | None = None  # a fixable host's state (workdir/state), else None
    shippers: list = field(default_factory=list)  # log_agent.LogShipper threads, stopped with the host

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def audit_log(self) -> Path:
        """The host's /var/log/audit/audit.log as seen from outside (fixable and misconfigured hosts have a
        private one; others would be this machine's, which nothing here ships)."""
        if self.state_dir is None:
            raise ValueError("not a fixable host")
        return self.state_dir.parent / "auditlog" / "audit.log"

    def ship_audit_log(self, endpoint: str, stream: str, region: str = "us-east-1"):
        """Start the host's "CloudWatch agent" for its audit log: new lines of audit_log go to /ec2/audit,
        `stream` (the instance id) within about a second. Returns the shipper (stopped by stop())."""
        from devstack.standins.hosts.log_agent import LogShipper

        shipper = LogShipper(self.audit_log, endpoint, AUDIT_GROUP, stream, region).start()
        self.shippers.append(shipper)
        return shipper

    def state(self) -> dict[str, str]:
        """{"auditd": running|stopped, "rules": loaded|empty, "agent": running|stopped}, read from outside."""
        if self.state_dir is None:
            raise ValueError("not a fixable host")
        return {name: (self.state_dir / name).read_text().strip() for name in ("auditd", "rules", "agent")}

    def trap_log(self) -> list[str]:
        """One line per privileged change the fakes made: `<ISO time> uid=<id -u> sudo_uid=<login> <argv>`."""
        if self.state_dir is None:
            raise ValueError("not a fixable host")
        return (self.state_dir / "trap.log").read_text().splitlines()

    def stop(self) -> None:
        for shipper in self.shippers:
            shipper.stop()
        procs.stop_group(self.proc, timeout=10)


def _private_audit_log(workdir: Path, dir_mode: int, file_mode: int) -> Path:
    """A /var/log/audit of the host's own (bind-mounted over the real one), with one record, in these modes."""
    logdir = workdir / "auditlog"
    logdir.mkdir()
    (logdir / "audit.log").write_text("type=DAEMON_START msg=audit(1700000000.000:1): op=start\n")
    logdir.chmod(dir_mode)
    (logdir / "audit.log").chmod(file_mode)
    return logdir


def _fixable(workdir: Path, fixable: FixableState, base_toml: str, instance_id: str) -> list[str]:
    """Write a fixable host's state and fakes; return the wrapper lines that mount them.

    Everything is root-owned and 0755/0644, so the logins can read the state and run the fakes but change
    either only as root, through the sudo lines they were given."""
    state = workdir / "state"
    state.mkdir(mode=0o755)
    for name, value in (("auditd", "running" if fixable.auditd_running else "stopped"),
                        ("rules", "loaded" if fixable.rules_loaded else "empty"),
                        ("agent", "running" if fixable.agent_running else "stopped"),
                        ("auditd_starts", "yes" if fixable.auditd_starts else "no"), ("trap.log", None)):
        (state / name).write_text("" if value is None else value + "\n")
        (state / name).chmod(0o644)
    state.chmod(0o755)
    fake = workdir / "fake"
    fake.mkdir(mode=0o755)
    tools = {"/usr/sbin/auditctl": FIXABLE_AUDITCTL, "/usr/sbin/service": FIXABLE_SERVICE,
             "/usr/sbin/augenrules": FIXABLE_AUGENRULES, "/usr/bin/systemctl": FIXABLE_SYSTEMCTL}
    for path, body in tools.items():
        _script(fake / Path(path).name, body)
    _script(workdir / "opt" / CWA_DIR.removeprefix("/opt/") / "bin" / "amazon-cloudwatch-agent-ctl",
            _fixable_ctl(base_toml, instance_id))
    (workdir / "auditd.conf").write_text(GOOD_AUDITD_CONF + "\n")
    # The fixes chown/chmod /var/log/audit: give them a private one, never this machine's.
    logdir = _private_audit_log(workdir, 0o750, 0o640)
    lines = [f"mkdir -m 755 {STATE_DIR}", f"mount --bind {state} {STATE_DIR}"]
    for path in tools:
        mount = f"mount --bind {fake / Path(path).name} {path}"
        # A bind mount needs a target: where a tool the fixes use is missing, an empty file stands in for it
        # (on the real filesystem). No systemctl: nothing to guard.
        lines.append(f"[ -e {path} ] && {mount} || true" if path.endswith("systemctl")
                     else f"[ -e {path} ] || touch {path}; {mount}")
    return lines + [f"mount --bind {workdir / 'auditd.conf'} /etc/audit/auditd.conf",
                    f"mount --bind {logdir} /var/log/audit"]


def start_sshd_host(workdir: Path, address: str, port: int, authorized_key: str, profile: str,
                    instance_id: str, fake_auditctl: bool | None = None, host_key_type: str = "ed25519",
                    agent_files: dict[str, str | bytes] | None = None, rules: str | None = None,
                    eic_key_dir: Path | None = None, remediation_key: str | None = None,
                    fixable: FixableState | None = None, auditd_conf: str | None = None,
                    hostname: str | None = None, sudo_logfile: Path | None = None,
                    tamper_sudo: bool = False) -> SshdHost:
    """profile: one of host_states.SSHD_PROFILES ("compliant", "failing", "misconfigured"). fake_auditctl
    defaults to True for failing, False for compliant.

    host_key_type: the one host key sshd offers ("ed25519", "rsa", "ecdsa"), e.g. to play a host whose key
    type changed since it was pinned.
    agent_files: files to write (or replace) under the agent's etc/ (e.g. "amazon-cloudwatch-agent.toml",
    "amazon-cloudwatch-agent.d/x.json"): crafted configs a lying or odd host would have.
    rules: what the (fake) `auditctl -l` lists, with the compliant `auditctl -s` answer.
    eic_key_dir: also authorize, through sshd's AuthorizedKeysCommand (run as root, like EC2's
    eic_run_authorized_keys), the unexpired keys the EC2 Instance Connect stand-in received for this
    instance and the connecting user (devstack/standins/hosts/eic_keys.py). None: authorized_keys only, as before.
    remediation_key: also let REMEDIATION_LOGIN in with this key, with exactly `remediation_sudoers` (the
    caller creates the user: ensure_login_user(REMEDIATION_LOGIN)). Only with `fixable`: elsewhere those sudo
    lines would act on this machine.
    fixable: a compliant host whose auditd / rules / agent state (this starting state) the fixes can change,
    with fake auditctl, service, augenrules and agent ctl, a private /var/log/audit and auditd.conf;
    SshdHost.state() and trap_log() read it.
    auditd_conf: the host's /etc/audit/auditd.conf (not with fixable, which has its own).
    sudo_logfile: sudo logs every command it runs there, one line each (as a host's auth log would), e.g. for a
    test to ship into CloudWatch Logs the way an agent shipping /var/log/secure does.
    tamper_sudo: also let REMEDIATION_LOGIN run TAMPER_COMMANDS under sudo (stop auditd, delete the rules, turn
    the audit off): a test playing an attacker with root (issue 28). Only with `fixable` and `remediation_key`;
    each writes its audit record into the host's audit log (SshdHost.audit_log), which ship_audit_log ships.
    hostname: the host's own OS hostname (a UTS namespace of its own); None: the machine's, like every other
    test host (e.g. to play AMI clones with a baked hostname, or a host with a unique one)."""
    if remediation_key and not fixable:  # its sudo lines would start, chmod and chown this machine's real auditd
        raise ValueError("remediation_key needs a fixable host")
    if tamper_sudo and not (fixable and remediation_key):  # elsewhere they would stop this machine's auditd
        raise ValueError("tamper_sudo needs a fixable host with a remediation_key")
    if profile not in SSHD_PROFILES:
        raise ValueError(f"sshd host profile {profile!r} is not one of host_states.SSHD_PROFILES {SSHD_PROFILES}")
    if fixable and (profile != "compliant" or rules is not None):
        raise ValueError("a fixable host is the compliant profile with its own fakes: no other profile or rules")
    if hostname is not None and not re.fullmatch(r"[A-Za-z0-9.-]{1,63}", hostname):
        raise ValueError(f"hostname {hostname!r} goes into the namespace's shell: letters, digits, . and - only")
    if fixable and not re.fullmatch(r"[A-Za-z0-9-]{1,64}", instance_id):
        raise ValueError(f"instance id {instance_id!r} goes into the fake ctl: letters, digits and - only")
    workdir = Path(workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "opt").mkdir(parents=True)
    _agent_tree(workdir / "opt", profile, instance_id, fixable.agent_ships_audit_log if fixable else None)
    etc = workdir / "opt" / "aws" / "amazon-cloudwatch-agent" / "etc"
    for name, content in (agent_files or {}).items():
        target = etc / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
    sudoers = workdir / "sudoers.d"
    sudoers.mkdir()
    (sudoers / "ec2-audit").write_text(SUDO_RULE)
    (sudoers / "ec2-audit").chmod(0o440)
    if sudo_logfile is not None:  # loglinelen=0: one line per command, never wrapped
        (sudoers / "zz-logfile").write_text(f"Defaults logfile={sudo_logfile}\nDefaults loglinelen=0\n")
        (sudoers / "zz-logfile").chmod(0o440)
    if remediation_key:
        (sudoers / "ec2-audit-fix").write_text(remediation_sudoers(REMEDIATION_LOGIN))
        (sudoers / "ec2-audit-fix").chmod(0o440)
    if tamper_sudo:
        (sudoers / "ec2-audit-tamper").write_text(f"{REMEDIATION_LOGIN} ALL=(root) NOPASSWD: {', '.join(TAMPER_COMMANDS)}\n")
        (sudoers / "ec2-audit-tamper").chmod(0o440)
    key = workdir / f"ssh_host_{host_key_type}_key"
    subprocess.run(["ssh-keygen", "-q", "-t", host_key_type, "-N", "", "-f", str(key)], check=True)
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(key) + ".pub"], check=True,
                                 capture_output=True, text=True).stdout.split()[1]
    # One file per login (sshd's %u): the audit key never opens the fix login, nor the reverse.
    logins = {LOGIN: authorized_key, **({REMEDIATION_LOGIN: remediation_key} if remediation_key else {})}
    (workdir / "authorized_keys").mkdir()
    for login, public in logins.items():
        (workdir / "authorized_keys" / login).write_text(public.strip() + "\n")
    if eic_key_dir:
        from devstack.standins.hosts.eic_keys import authorized_keys_command

        (workdir / "eic_run_authorized_keys").write_text(authorized_keys_command(Path(eic_key_dir), instance_id))
    (workdir / "sshd_config").write_text(f"""\
ListenAddress {address}:{port}
HostKey {key}
PidFile {workdir / 'sshd.pid'}
AuthorizedKeysFile /opt/.sshd-test/authorized_keys/%u
AllowUsers {" ".join(logins)}
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
X11Forwarding no
AllowTcpForwarding no
LogLevel VERBOSE
""" + (f"AuthorizedKeysCommand {EIC_COMMAND} %u\nAuthorizedKeysCommandUser root\n" if eic_key_dir else ""))
    # sshd reads authorized_keys as the login user, who cannot traverse the (0700) test folders: copy it
    # into the namespace's own /opt tmpfs.
    (workdir / "cmdline").write_text(CMDLINE[profile] + "\n")
    mounts = ["mount -t tmpfs -o mode=755 tmpfs /opt", f"cp -a {workdir / 'opt'}/. /opt/",
              "mkdir -m 755 /opt/.sshd-test /opt/.sshd-test/authorized_keys",
              f"install -m 644 {workdir / 'authorized_keys'}/* /opt/.sshd-test/authorized_keys/",
              *([f"install -m 755 {workdir / 'eic_run_authorized_keys'} {EIC_COMMAND}"] if eic_key_dir else []),
              f"mount --bind {sudoers} /etc/sudoers.d",
              # The boot command line is this VM's, not an EC2 instance's: each host gets its own.
              f"mount --bind {workdir / 'cmdline'} /proc/cmdline"]
    if auditd_conf is not None and not fixable:
        (workdir / "auditd.conf").write_text(auditd_conf)
        mounts.append(f"mount --bind {workdir / 'auditd.conf'} /etc/audit/auditd.conf")
    if fixable:
        mounts += _fixable(workdir, fixable, (etc / "amazon-cloudwatch-agent.toml").read_text(), instance_id)
    elif profile == "misconfigured":
        _script(workdir / "auditctl", MISCONFIGURED_AUDITCTL)
        (workdir / "auditd.conf").write_text(WEAK_AUDITD_CONF + "\n")
        loose = _private_audit_log(workdir, 0o755, 0o644)
        mounts += [f"mount --bind {workdir / 'auditctl'} /usr/sbin/auditctl",
                   f"mount --bind {workdir / 'auditd.conf'} /etc/audit/auditd.conf",
                   f"mount --bind {loose} /var/log/audit"]
    elif rules is not None or (fake_auditctl if fake_auditctl is not None else profile != "compliant"):
        status, listed = FAKE_AUDITCTL["compliant" if rules is not None else profile]
        rules = listed if rules is None else rules
        # -m: the kernel takes a user message (the canary) and says nothing, as the real auditctl does.
        _script(workdir / "auditctl", f'case "$1" in -s) cat <<EOF\n{status}\nEOF\n;; -l) cat <<EOF\n{rules}\nEOF\n;; '
                                      f"-m) exit 0;; *) echo unsupported >&2; exit 1;; esac\n")
        mounts.append(f"mount --bind {workdir / 'auditctl'} /usr/sbin/auditctl")
    if hostname is not None:
        mounts.append(f"hostname {hostname}")
    wrapper = "set -e\n" + "\n".join(mounts) + f"\nexec /usr/sbin/sshd -D -e -f {workdir / 'sshd_config'}\n"
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    log = workdir / "sshd.log"
    namespaces = ["-m", *(["-u"] if hostname is not None else [])]  # -u: its own hostname
    proc = procs.spawn(["unshare", *namespaces, "--propagation", "private", "sh", "-c", wrapper], log, log_mode="wb")
    host = SshdHost(address, port, proc, fingerprint, log, workdir / "state" if fixable else None)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd on {address}:{port} exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return host
        except OSError:
            time.sleep(0.1)
    host.stop()
    raise TimeoutError(f"sshd on {address}:{port} not listening: {log.read_text(errors='replace')[-2000:]}")


class RealAuditd:
    """Start the real auditd (kernel audit) with the CIS rule set for the compliant host; undo it afterwards.

    `available` is False (and nothing is changed) where the kernel audit cannot be used; callers then fall
    back to fake auditctl answers.
    """

    @staticmethod
    def _rules() -> list[list[str]]:
        return [line.split() for line in CIS_RULES]

    def __init__(self) -> None:
        self.available = False
        self.started_pid: int | None = None
        self.reason = ""
        self.had_rules = True

    @staticmethod
    def _status() -> dict[str, int]:
        out = subprocess.run(["/usr/sbin/auditctl", "-s"], capture_output=True, text=True)
        values = {}
        for line in out.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[1].lstrip("-").isdigit():
                values[parts[0]] = int(parts[1])
        return values

    def __enter__(self) -> "RealAuditd":
        if not os.path.exists("/usr/sbin/auditd") or os.geteuid() != 0:
            self.reason = "auditd not installed or not root"
            return self
        status = self._status()
        if "pid" not in status:
            self.reason = "kernel audit not reachable (auditctl -s failed)"
            return self
        if status["pid"] == 0:
            if subprocess.run(["/usr/sbin/auditd"], capture_output=True).returncode != 0:
                self.reason = "auditd failed to start"
                return self
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not self._status().get("pid"):
                time.sleep(0.1)
            self.started_pid = self._status().get("pid") or None
            if not self.started_pid:
                self.reason = "auditd did not register with the kernel"
                return self
        listing = subprocess.run(["/usr/sbin/auditctl", "-l"], capture_output=True, text=True).stdout.strip()
        self.had_rules = listing != "No rules"
        for rule in self._rules():
            subprocess.run(["/usr/sbin/auditctl", *rule], capture_output=True)
        self.available = True
        return self

    def __exit__(self, *exc) -> None:
        if not self.available:
            return
        if self.had_rules:  # someone else's rules are loaded too: delete exactly ours
            for rule in self._rules():
                undo = ["-W" if rule[0] == "-w" else "-d", *rule[1:]]
                subprocess.run(["/usr/sbin/auditctl", *undo], capture_output=True)
        else:
            subprocess.run(["/usr/sbin/auditctl", "-D"], capture_output=True)
        if self.started_pid:
            try:
                os.kill(self.started_pid, 15)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self._status().get("pid"):
                time.sleep(0.1)
            subprocess.run(["/usr/sbin/auditctl", "-e", "0"], capture_output=True)
