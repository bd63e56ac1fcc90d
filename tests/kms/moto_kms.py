"""moto's server (`moto_server`'s command line) with AWS KMS's key-state check on Encrypt and Decrypt.

AWS KMS refuses Encrypt and Decrypt under a disabled key (DisabledException) or a key pending deletion
(KMSInvalidStateException); moto 5.2.6 decrypts whatever the key's state. This wrapper adds that check, as AWS
documents it, so that tests/kms/run.sh can disable the key and show byoc's refused start. Nothing else changes.

Usage: python moto_kms.py -H 127.0.0.1 -p PORT   (the arguments of moto_server)
"""

from moto.core.exceptions import JsonRESTError
from moto.kms.models import KmsBackend
from moto.server import main

_encrypt = KmsBackend.encrypt
_decrypt = KmsBackend.decrypt


def _refuse_unusable(backend, key_id):
    """Raises what AWS KMS answers for a key that is not enabled."""
    key = backend.keys[backend.any_id_to_key_id(key_id)]
    if key.key_state == "Disabled":
        raise JsonRESTError("DisabledException", f"{key.arn} is disabled.")
    if key.key_state != "Enabled":
        raise JsonRESTError("KMSInvalidStateException", f"{key.arn} is {key.key_state}.")


def encrypt(self, key_id, plaintext, encryption_context):
    _refuse_unusable(self, key_id)
    return _encrypt(self, key_id=key_id, plaintext=plaintext, encryption_context=encryption_context)


def decrypt(self, ciphertext_blob, encryption_context, key_id=None):
    plaintext, arn = _decrypt(self, ciphertext_blob, encryption_context, key_id)
    _refuse_unusable(self, arn.split("/")[-1])
    return plaintext, arn


KmsBackend.encrypt = encrypt
KmsBackend.decrypt = decrypt

if __name__ == "__main__":
    main()
