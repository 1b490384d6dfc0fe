"""Signing a seal's statement with an asymmetric KMS key (param `kms_key_id`), and checking a signature.

KMS signs the statement's UTF-8 text itself (MessageType RAW: at most 4 KB; include/evidence/manifest.py keeps
the statement short) with RSASSA_PSS_SHA_256: PSS padding, SHA-256 for the digest and MGF1, a 32-byte salt.
A signature is checked by KMS (`kms:Verify`) or offline with the key's public key (`kms:GetPublicKey`, or a copy
the auditor keeps), so an auditor needs no trust in this system's code, only in the public key.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from include.evidence.manifest import SIGNING_ALGORITHM

PARAM = "kms_key_id"
PROBE_MESSAGE = b"ec2-audit seal signing probe"  # what the run's start signs to prove the key can sign
PSS_SALT_BYTES = 32  # AWS KMS's RSASSA_PSS_SHA_256: the salt is as long as the SHA-256 digest
# KMS errors a retry can cure: the task fails and is retried; every other error means the key cannot sign.
TRANSIENT = {"ThrottlingException", "KMSInternalException", "DependencyTimeoutException", "RequestTimeout",
             "ServiceUnavailableException"}


class KeyCannotSign(ValueError):
    """The `kms_key_id` param names a key this run cannot sign with (missing, disabled, not an RSA signing
    key, access denied): the run fails at its start naming the param."""


def _b64(signature: bytes) -> str:
    return base64.b64encode(signature).decode("ascii")


def _unb64(signature_b64: str) -> bytes | None:
    try:
        return base64.b64decode(signature_b64.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None


@dataclass(frozen=True)
class Signer:
    """One KMS asymmetric key the seals are signed with. `key_id` as the param names it (id, ARN or alias);
    `key_arn`, the key's ARN as KMS answered the probe, is what a statement names (an alias can be moved to
    another key later; the ARN cannot)."""

    client: Any  # boto3 KMS client
    key_id: str
    key_arn: str = ""

    @classmethod
    def open(cls, client: Any, key_id: str) -> "Signer":
        """The key, proven able to sign now (one kms:Sign of a fixed probe); KeyCannotSign naming the param
        otherwise. Transient KMS errors are raised as they are (the task's retry)."""
        from botocore.exceptions import ClientError

        try:
            response = client.sign(KeyId=key_id, Message=PROBE_MESSAGE, MessageType="RAW",
                                   SigningAlgorithm=SIGNING_ALGORITHM)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in TRANSIENT:
                raise
            raise KeyCannotSign(f"param {PARAM}: the KMS key {key_id!r} cannot sign the seals with "
                                f"{SIGNING_ALGORITHM} ({code}: {exc.response.get('Error', {}).get('Message', '')}); "
                                "it must be an enabled asymmetric RSA SIGN_VERIFY key this role may kms:Sign "
                                "with") from None
        return cls(client, key_id, str(response.get("KeyId") or key_id))

    def sign(self, text: str) -> str:
        """The base64 signature of the statement's text."""
        response = self.client.sign(KeyId=self.key_arn or self.key_id, Message=text.encode("utf-8"),
                                    MessageType="RAW", SigningAlgorithm=SIGNING_ALGORITHM)
        return _b64(response["Signature"])


def verify_with_kms(client: Any, key_id: str, text: str, signature_b64: str) -> bool:
    """kms:Verify of a statement's text and its signature (KMS answers KMSInvalidSignatureException for a
    signature that does not match: that is False, not an error)."""
    from botocore.exceptions import ClientError

    signature = _unb64(signature_b64)
    if not signature:
        return False
    try:
        response = client.verify(KeyId=key_id, Message=text.encode("utf-8"), MessageType="RAW",
                                 Signature=signature, SigningAlgorithm=SIGNING_ALGORITHM)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "KMSInvalidSignatureException":
            return False
        raise
    return bool(response.get("SignatureValid"))


def public_key_der(client: Any, key_id: str) -> bytes:
    """The key's public key (DER SubjectPublicKeyInfo), for offline checks; an auditor may keep a copy."""
    return bytes(client.get_public_key(KeyId=key_id)["PublicKey"])


def verify_offline(public_key: bytes, text: str, signature_b64: str) -> bool:
    """Checks a statement's signature with the public key alone (DER or PEM), as KMS signs: RSASSA-PSS,
    SHA-256, MGF1(SHA-256), a 32-byte salt."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    signature = _unb64(signature_b64)
    if not signature:
        return False
    key = (serialization.load_pem_public_key(public_key) if public_key.lstrip().startswith(b"-----")
           else serialization.load_der_public_key(public_key))
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(signature, text.encode("utf-8"),
                   padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=PSS_SALT_BYTES), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def open_signer(key_id: str) -> Signer:
    """The `kms_key_id` param's key, through the evidence account's connection, proven able to sign."""
    from include.aws.clients import kms_client

    return Signer.open(kms_client(key_id), key_id)
