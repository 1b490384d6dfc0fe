"""What the EC2 Instance Connect stand-in received, as the hosts read it: one key directory shared by the
moto server (writes), the simulated fleet and the real sshd hosts (read).

Layout: `<dir>/<instance_id>/<os_user>/<expires_epoch>-<uuid>.pub`, the file holding one OpenSSH public key
line. A key authorizes only that instance and that user, and only while `expires_epoch` is in the future —
as a key pushed by `SendSSHPublicKey` lives 60 s in the instance metadata that EC2's own
`eic_run_authorized_keys` reads. The directory comes from `EC2AUDIT_EIC_KEY_DIR`; the lifetime from
`EC2AUDIT_EIC_KEY_TTL` (seconds, default 60: tests set it to 0 to push keys that are already expired).
"""
from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path

KEY_DIR_ENV = "EC2AUDIT_EIC_KEY_DIR"
TTL_ENV = "EC2AUDIT_EIC_KEY_TTL"
DEFAULT_TTL_S = 60
_INSTANCE = re.compile(r"^i-[0-9a-f]{1,32}$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


def key_dir_from_env() -> Path | None:
    value = os.environ.get(KEY_DIR_ENV)
    return Path(value) if value else None


def ttl_from_env() -> float:
    return float(os.environ.get(TTL_ENV) or DEFAULT_TTL_S)


def _checked(instance_id: str, os_user: str) -> None:
    if not _INSTANCE.match(instance_id or ""):
        raise ValueError(f"not an instance id: {instance_id!r}")
    if not _USER.match(os_user or ""):
        raise ValueError(f"not an OS user name: {os_user!r}")


def push(key_dir: Path, instance_id: str, os_user: str, public_key: str, ttl_s: float | None = None,
         now: float | None = None) -> Path:
    """Record one pushed key; returns its file. Written whole, then renamed: a reader never sees half a key."""
    _checked(instance_id, os_user)
    line = public_key.strip()
    if "\n" in line or not line.startswith(("ssh-ed25519 ", "ssh-rsa ", "ecdsa-sha2-")):
        raise ValueError("not one OpenSSH public key line")
    expires = int((time.time() if now is None else now) + (ttl_from_env() if ttl_s is None else ttl_s))
    folder = Path(key_dir) / instance_id / os_user
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{expires}-{uuid.uuid4().hex}.pub"
    tmp = folder / f".{target.name}.tmp"
    tmp.write_text(line + "\n")
    os.replace(tmp, target)
    return target


def valid_keys(key_dir: Path | None, instance_id: str | None, os_user: str, now: float | None = None) -> list[str]:
    """The keys pushed for this instance and user that have not expired (`now` < expiry)."""
    if key_dir is None or not instance_id:
        return []
    try:
        _checked(instance_id, os_user)
    except ValueError:
        return []
    now = time.time() if now is None else now
    keys = []
    folder = Path(key_dir) / instance_id / os_user
    for path in sorted(folder.glob("*.pub")) if folder.is_dir() else []:
        expires = path.name.split("-", 1)[0]
        if expires.isdigit() and now < int(expires):
            keys.append(path.read_text().strip())
    return keys


def authorized_keys_command(key_dir: Path, instance_id: str) -> str:
    """A shell script for sshd's `AuthorizedKeysCommand <script> %u` on the host of `instance_id`: prints the
    unexpired keys pushed for that instance and the connecting user — like EC2's eic_run_authorized_keys."""
    _checked(instance_id, "root")
    if "'" in str(key_dir):
        raise ValueError("the key directory's path must not contain a quote")
    return f"""#!/bin/sh
# EC2 Instance Connect stand-in: keys pushed for {instance_id} and user $1 that have not expired.
user="$1"
case "$user" in ''|*[!a-z0-9_-]*) exit 0;; esac
dir='{key_dir}/{instance_id}'/"$user"
[ -d "$dir" ] || exit 0
now=$(date +%s)
for f in "$dir"/*.pub; do
  [ -f "$f" ] || continue
  name=${{f##*/}}
  expires=${{name%%-*}}
  case "$expires" in ''|*[!0-9]*) continue;; esac
  [ "$now" -lt "$expires" ] && head -n 1 "$f"
done
exit 0
"""
