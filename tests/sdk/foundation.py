"""Drives postagent's endpoints through the published e2a SDK, unmodified: the foundation
(info, account, keys, domains, agents), sending, the review queue, suppressions, the agent
test, and the data rights (export, then the account's deletion).

Run by tests/it/sdk_compat.rs with E2A_API_KEY and E2A_API_URL set. Prints
"TOKEN <domain> <token>" and waits for a line on stdin while the test publishes the TXT
record in its loopback DNS server. Any failed assertion exits non-zero.
"""

import os
import sys

import httpx
from e2a import (
    E2AAuthError,
    E2AClient,
    E2AConflictError,
    E2ANotFoundError,
    E2APermissionError,
    E2AValidationError,
)

DOMAIN = "sdk.example"
AGENT = "bot+x@sdk.example"
SLUG = "helper@agents.test"


def expect(exc_type, fn, *args):
    try:
        fn(*args)
    except exc_type as e:
        return e
    raise AssertionError(f"{fn.__name__}{args} did not raise {exc_type.__name__}")


with E2AClient() as c:
    info = c.info()
    assert info.version == "1.0.0", info
    assert info.shared_domain == "agents.test" and info.slug_registration_enabled is True, info

    acct = c.account.get()
    assert acct.scope == "account" and acct.user.email == "sdk@example.org", acct
    assert acct.usage.agents == 0 and acct.limits.max_agents > 0, acct

    d = c.domains.create({"domain": DOMAIN})
    assert d.domain == DOMAIN and d.verified is False, d
    assert d.dns_records[0].purpose == "ownership" and d.dns_records[1].priority == 10, d
    again = c.domains.create({"domain": DOMAIN})
    assert again.verification_token == d.verification_token
    unverified = c.domains.verify(DOMAIN)
    assert unverified.verified is False and unverified.mx == "found", unverified
    print("TOKEN", DOMAIN, d.verification_token, flush=True)
    sys.stdin.readline()
    v = c.domains.verify(DOMAIN)
    assert v.verified is True and v.mx == "found", v
    assert v.verified_at is not None
    assert c.domains.get(DOMAIN).verified is True
    assert [x.domain for x in c.domains.list()] == [DOMAIN]

    a = c.agents.create({"email": AGENT, "name": "Bot"})
    assert a.email == AGENT and a.domain == DOMAIN and a.domain_verified is True, a
    s = c.agents.create({"email": SLUG})
    assert s.name == "" and s.registered_domain == "agents.test", s
    e = expect(E2AValidationError, c.agents.create, {"email": "admin@agents.test"})
    assert e.code == "invalid_slug", e
    e = expect(E2AConflictError, c.agents.create, {"email": AGENT})
    assert e.code == "agent_taken", e

    # limit=1 makes the pager follow next_cursor across pages.
    listed = [x.email for x in c.agents.list(limit=1)]
    assert listed == [SLUG, AGENT], listed
    assert c.agents.get(AGENT).name == "Bot"
    assert c.agents.update(AGENT, {"name": "Bot 2"}).name == "Bot 2"
    expect(E2ANotFoundError, c.agents.get, "nobody@sdk.example")

    r = c.agents.delete(AGENT)
    assert r.deleted is True and r.email == AGENT and r.messages_deleted == 0, r
    trash = c.agents.list(deleted=True).to_list(limit=10)
    assert [t.email for t in trash] == [AGENT] and trash[0].deleted_at is not None, trash
    restored = c.agents.restore(AGENT)
    assert restored.email == AGENT and restored.deleted_at is None, restored

    k = c.account.api_keys.create({"name": "ci", "scope": "account"})
    assert k.key.startswith("e2a_acct_") and k.key_prefix == k.key[:16], k
    assert k.id in [x.id for x in c.account.api_keys.list()]
    assert c.account.api_keys.delete(k.id).deleted is True
    assert k.id not in [x.id for x in c.account.api_keys.list()]

    ak = c.account.api_keys.create({"name": "helper", "scope": "agent", "agent_email": SLUG})
    assert ak.scope == "agent" and ak.agent_email == SLUG, ak
    with E2AClient(api_key=ak.key) as agent_client:
        assert agent_client.account.get().agent_email == SLUG
        assert agent_client.agents.get(SLUG).email == SLUG
        expect(E2APermissionError, agent_client.agents.get, AGENT)
        expect(E2APermissionError, agent_client.domains.get, DOMAIN)

    # Sending. A self-send is delivered at once (200, loopback); mail for anyone else is
    # queued for Postfix (202 accepted); a reply to the self-sent copy is a self-send too.
    own = c.messages.send(SLUG, {"to": [SLUG], "subject": "memo", "text": "note to self"})
    assert own.status == "sent" and own.method == "loopback", own
    twin = c.messages.list(SLUG).to_list(limit=10)
    assert [m.subject for m in twin] == ["memo"], twin
    full = c.messages.get(SLUG, twin[0].id)
    assert full.authentication is None and full.conversation_id, full
    queued = c.messages.send(SLUG, {"to": ["Alice <alice@example.net>"], "subject": "Hi", "text": "Hello"})
    assert queued.status == "accepted" and queued.method == "smtp", queued
    again = c.messages.send(
        SLUG, {"to": ["alice@example.net"], "subject": "Once", "text": "x"}, idempotency_key="sdk-once"
    )
    same = c.messages.send(
        SLUG, {"to": ["alice@example.net"], "subject": "Once", "text": "x"}, idempotency_key="sdk-once"
    )
    assert again.message_id == same.message_id, (again, same)
    re = c.messages.reply(SLUG, twin[0].id, {"text": "ack"})
    assert re.status == "sent" and re.method == "loopback", re
    e = expect(E2AValidationError, c.messages.send, SLUG, {"to": ["a@example.net"], "subject": "x\r\nBcc: b@evil.test", "text": "t"})
    assert e.code == "invalid_request", e

    # Human in the loop: every send held, then approved or rejected from the review queue.
    hitl = {
        "inbound": {"gate": {"policy": "open"}, "scan": {"sensitivity": "off"}},
        "outbound": {"gate": {"policy": "allowlist", "allowlist": [], "action": "review"}, "scan": {"sensitivity": "off"}},
        "holds": {"ttl_seconds": 3600, "on_expiry": "reject"},
    }
    p = c.agents.replace_protection(SLUG, hitl)
    assert p.outbound.gate.action == "review" and p.holds.ttl_seconds == 3600, p
    assert c.agents.get_protection(SLUG).outbound.gate.policy == "allowlist"
    held = c.messages.send(SLUG, {"to": ["bob@example.net"], "subject": "Offer", "text": "20% off"})
    assert held.status == "pending_review" and held.approval_expires_at is not None, held
    queue = list(c.reviews.list())
    assert [r.id for r in queue] == [held.message_id] and queue[0].review_status == "pending_review", queue
    draft = c.reviews.get(held.message_id)
    assert draft.raw_message is None and draft.body.text == "20% off", draft
    with E2AClient(api_key=ak.key) as agent_client:
        expect(E2APermissionError, agent_client.reviews.approve, held.message_id)
    ok = c.reviews.approve(held.message_id, {"subject": "Offer (approved)"})
    assert ok.status == "accepted" and ok.edited is True, ok
    e = expect(E2AConflictError, c.reviews.approve, held.message_id)
    assert e.code == "message_not_pending", e
    held2 = c.messages.send(SLUG, {"to": ["carol@example.net"], "subject": "Risky", "text": "?"})
    rej = c.reviews.reject(held2.message_id, {"reason": "off-brand"})
    assert rej.status == "review_rejected" and rej.rejection_reason == "off-brand", rej
    assert list(c.reviews.list()) == []

    # Suppressions: an agent's block refuses the send (422 recipient_suppressed), is listed,
    # and lifting it lets mail through; the account's list starts empty.
    block = c.agents.create_suppression(AGENT, {"address": "blocked@example.net", "reason": "asked"})
    assert block.address == "blocked@example.net" and block.source == "manual" and block.agent_email == AGENT, block
    assert [b.address for b in c.agents.list_suppressions(AGENT)] == ["blocked@example.net"]
    e = expect(E2AValidationError, c.messages.send, AGENT, {"to": ["Blocked <Blocked@example.net>"], "subject": "s", "text": "t"})
    assert e.code == "recipient_suppressed", e
    lifted = c.agents.delete_suppression(AGENT, "blocked@example.net")
    assert lifted.deleted is True and lifted.address == "blocked@example.net", lifted
    assert list(c.agents.list_suppressions(AGENT)) == []
    assert list(c.account.suppressions.list()) == []
    assert c.messages.send(AGENT, {"to": ["blocked@example.net"], "subject": "s", "text": "t"}).status == "accepted"

    # The agent test: the deployment's test message, queued over the real route.
    test = c.agents.test(AGENT)
    assert test.status == "accepted" and test.message_id.startswith("msg_"), test

    # Data rights: the export validates against the SDK's own models (schema 4).
    export = c.account.export()
    assert export.schema_version == "4", export.schema_version
    assert export.user.email == "sdk@example.org", export.user
    assert sorted(a.email for a in export.agents) == sorted([AGENT, SLUG]), export.agents
    assert all(k.key_prefix for k in export.api_keys), export.api_keys
    assert export.messages and all(m.agent_email in (AGENT, SLUG) for m in export.messages), len(export.messages)
    assert any(m.raw_message for m in export.messages), "raw MIME is exported"

    # The high-level SDK only trashes; a permanent delete is the documented raw call.
    for email in (AGENT, SLUG):
        res = httpx.delete(
            f"{os.environ['E2A_API_URL']}/v1/agents/{email}",
            params={"confirm": "DELETE", "permanent": "true"},
            headers={"Authorization": "Bearer " + os.environ["E2A_API_KEY"]},
        )
        assert res.status_code == 200, res.text
    gone = c.domains.delete(DOMAIN)
    assert gone.deleted is True and gone.domain == DOMAIN, gone
    assert list(c.domains.list()) == []

    # The account, deleted with everything it owns; its key dies with it.
    gone = c.account.delete()
    assert gone.deleted is True and gone.user_deleted is True and gone.api_keys_deleted >= 1, gone
    expect(E2AAuthError, c.account.get)

print("SDK OK", flush=True)
