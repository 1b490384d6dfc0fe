"""KMS as AWS documents it, where moto differs: RSASSA_PSS_SHA_* signatures with a salt as long as the digest.

AWS KMS signs RSASSA_PSS_SHA_256 with a 32-byte salt (SHA-384: 48, SHA-512: 64); moto signs (and verifies) with
the longest salt the key allows, so a signature from moto does not verify offline the way one from KMS does
(include/evidence/signing.py: verify_offline, as an auditor checks a seal with the public key). Here moto's RSA
key signs and verifies with AWS's salt length. Everything else in moto's KMS is as it is.
"""
from __future__ import annotations


def pss_salt_as_aws() -> None:
    from cryptography.hazmat.primitives.asymmetric import padding
    from moto.kms.utils import RSAPrivateKey

    name = "_RSAPrivateKey__padding_and_hash_algorithm"  # moto's private choice of padding per algorithm
    original = getattr(RSAPrivateKey, name)

    def padding_and_hash(self, signing_algorithm):
        pad, algorithm = original(self, signing_algorithm)
        if isinstance(pad, padding.PSS):
            pad = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=algorithm.digest_size)
        return pad, algorithm

    setattr(RSAPrivateKey, name, padding_and_hash)
