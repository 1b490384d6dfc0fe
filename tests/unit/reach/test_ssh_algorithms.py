"""The transport only reorders asyncssh's ciphers (AES-GCM first); it never drops one a host may require."""
import asyncssh

from include.reach.ssh import ENCRYPTION_ALGS


def test_aes_gcm_first_and_every_default_cipher_still_offered():
    defaults = [a.decode() for a in asyncssh.encryption.get_default_encryption_algs()]
    assert ENCRYPTION_ALGS[0] == "aes128-gcm@openssh.com"
    assert sorted(ENCRYPTION_ALGS) == sorted(defaults) and len(set(ENCRYPTION_ALGS)) == len(ENCRYPTION_ALGS)
