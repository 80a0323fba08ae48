"""Verifies real postagent webhook deliveries with the two published verifiers, unmodified:
the e2a SDK's construct_event (X-E2A-Signature) and the standardwebhooks package
(webhook-id / webhook-timestamp / webhook-signature).

stdin: {"hits": [{"body": str, "headers": {lowercase name: value}, "secrets": [str, ...]}]}
where every secret listed must verify the delivery on its own (current, and the previous
one during a rotation). A tampered body must fail both. Prints "VERIFIED <n>".
"""
import json
import sys

from e2a import construct_event
from standardwebhooks import Webhook

req = json.load(sys.stdin)
for i, hit in enumerate(req["hits"]):
    body, headers = hit["body"], hit["headers"]
    for secret in hit["secrets"]:
        event = construct_event(body.encode(), headers["x-e2a-signature"], secret)
        assert event.id == headers["webhook-id"], (event.id, headers["webhook-id"])
        assert event.schema_version == "1"
        std = {k: headers[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
        parsed = Webhook(secret).verify(body, std)
        assert parsed["id"] == event.id
        tampered = body.replace('"', "'", 1)
        for check in (
            lambda: construct_event(tampered.encode(), headers["x-e2a-signature"], secret),
            lambda: Webhook(secret).verify(tampered, std),
        ):
            try:
                check()
            except Exception:
                pass
            else:
                sys.exit(f"hit {i}: a tampered body verified")
    wrong = "whsec_" + "0" * 64
    try:
        construct_event(body.encode(), headers["x-e2a-signature"], wrong)
    except Exception:
        pass
    else:
        sys.exit(f"hit {i}: verified with the wrong secret")
print(f"VERIFIED {len(req['hits'])}")
