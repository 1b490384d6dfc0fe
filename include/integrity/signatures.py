"""Checking a seal's signature: with KMS (kms:Verify on the key the statement names) or offline with the key's
public half (PEM, from kms:GetPublicKey), RSASSA-PSS with SHA-256 and MGF1-SHA-256. KMS uses a salt as long as the
digest; the salt length is read from the signature (PSS.AUTO), as `openssl pkeyutl -verify` does by default."""
from __future__ import annotations

import base64
import binascii

from include.aws.errors import error_code
from include.evidence.manifest import SIGNING_ALGORITHM
from include.integrity.reader import StoreUnreadable, Verifier


def _signature(signature_b64: str) -> bytes | None:
    try:
        return base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return None


def kms_verifier(kms) -> Verifier:
    from botocore.exceptions import BotoCoreError, ClientError

    def check(statement_text: str, signature_b64: str, key_id: str) -> bool:
        signature = _signature(signature_b64)
        if signature is None or not key_id:
            return False
        try:
            response = kms.verify(KeyId=key_id, Message=statement_text.encode("utf-8"), MessageType="RAW",
                                  Signature=signature, SigningAlgorithm=SIGNING_ALGORITHM)
        except ClientError as exc:
            if error_code(exc)[0] == "KMSInvalidSignatureException":
                return False
            # The key is gone, disabled or not ours to use: the signature cannot be judged here.
            raise StoreUnreadable(f"kms:Verify with {key_id}: {error_code(exc)[0]}: {error_code(exc)[1]} "
                                  "(verify offline with --public-key)") from exc
        except BotoCoreError as exc:
            raise StoreUnreadable(f"kms:Verify with {key_id}: {exc}") from exc
        return bool(response.get("SignatureValid"))

    return check


def pem_verifier(pem: bytes) -> Verifier:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    key = serialization.load_pem_public_key(pem)

    def check(statement_text: str, signature_b64: str, key_id: str) -> bool:
        signature = _signature(signature_b64)
        if signature is None:
            return False
        try:
            key.verify(signature, statement_text.encode("utf-8"),
                       padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO),
                       hashes.SHA256())
        except InvalidSignature:
            return False
        return True

    return check
