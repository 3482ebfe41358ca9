"""Schemathesis hooks for .ci/fuzz-api: NDJSON for POST /v1/referrals/batch.

The batch takes one referral per line and answers one result line per input
line. Schemathesis generates one referral (the documented line schema); it goes
out as a one-line batch, and the one result line comes back as the object the
document describes, so the batch is checked like every other operation.
"""

import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson_request(ctx, value):
    if isinstance(value, bytes):
        return {"data": value}
    return {"data": json.dumps(value).encode("utf-8") + b"\n"}


@schemathesis.deserializer("application/x-ndjson")
def ndjson_response(ctx, response):
    lines = [line for line in response.content.splitlines() if line.strip()]
    if len(lines) != 1:
        raise ValueError(f"expected one result line for a one-line batch, got {len(lines)}")
    return json.loads(lines[0])
