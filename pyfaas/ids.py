"""The digests every side computes alike: function ids and cache keys.

Owns :func:`function_id` (a registered function's id, from its name and
pickled code) and :func:`cache_key` (a cached result's key, from the
function id and the argument bytes). Both hash opaque bytes, so the
Director computes them without unpickling anything; the Worker and the
client compute the same values.
"""

import hashlib


def function_id(code_bytes, name=""):
    """The id of a registered function: a digest of its name and pickled code.

    16 hex digits. The name is part of it so one function registered under
    two names is two entries.
    """
    digest = hashlib.sha256(name.encode("utf-8", "replace") + b"\0")
    digest.update(code_bytes)
    return digest.hexdigest()[:16]


def cache_key(func_id, args_payload):
    """The cache key of a call: 32 hex digits.

    A digest of the function id (itself a digest of the function's name and
    code) and the serialized arguments: new code never meets results of
    old code, and arguments of any picklable type work.
    """
    digest = hashlib.sha256(func_id.encode("ascii", "replace") + b"\0")
    digest.update(args_payload)
    return digest.hexdigest()[:32]
