"""ClientRequestToken for DynamoDB transactions: derived from the request, so a resend of the same transaction
(botocore's retry of a call whose reply was lost) is applied once; another request has another token."""
from __future__ import annotations

import hashlib
import json
from typing import Any


def request_token(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:36]
