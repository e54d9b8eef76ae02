"""Deterministic queue payloads: the content follows from the item's meta, so a reopened item can be checked.

Shared by tests/test_persistent_queue.py and the kill -9 child script it runs::

    payload = payload_for(b"item-7", 900)
    assert item.payload == payload_for(item.meta, len(item.payload))
"""

from __future__ import annotations

import random


def payload_for(meta: bytes, size: int) -> bytes:
    return random.Random(meta).randbytes(size)
