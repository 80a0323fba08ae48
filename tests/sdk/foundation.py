"""Drives postagent's endpoints through the published e2a SDK, unmodified: the foundation
(info, account, keys, domains, agents), sending, the review queue, suppressions, the agent
test, templates, the lifecycle ledger, and (SDK 5.5+/5.7+) contacts, scheduled send and
metrics, then the data rights (export, then the account's deletion).

Run by tests/it/sdk_compat.rs with E2A_API_KEY and E2A_API_URL set. Prints
"TOKEN <domain> <token>" and waits for a line on stdin while the test publishes the TXT
record in its loopback DNS server. Any failed assertion exits non-zero.
"""

import importlib.metadata
import os
import sys
from datetime import datetime, timedelta, timezone

import httpx
from e2a import (
    E2AAuthError,
    E2AClient,
    E2AConflictError,
    E2AError,
    E2ANotFoundError,
    E2APermissionError,
    E2AValidationError,
)

DOMAIN = "sdk.example"
AGENT = "bot+x@sdk.example"
SLUG = "helper@agents.test"
SDK = tuple(int(x) for x in importlib.metadata.version("e2a").split(".")[:2])


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

    # The lifecycle ledger: a held send's stages, a rejected one's end.
    rows = c.messages.get_lifecycle(SLUG, held2.message_id).items
    assert [r.reason_code for r in rows] == ["acceptance.outbound_api", "review.hold_created", "review.rejected"], rows
    assert rows[1].stage == "review" and rows[1].outcome == "pending" and rows[0].reconstructed is False, rows
    page = c.messages.get_lifecycle(SLUG, held.message_id, limit=1)
    assert len(page.items) == 1 and page.next_cursor, page
    rest = c.messages.get_lifecycle(SLUG, held.message_id, cursor=page.next_cursor)
    assert [r.reason_code for r in rest.items][:3] == ["review.hold_created", "review.approved", "queue.outbound_submission"], rest

    # Templates: stored, validated, listed, rendered on send, deleted.
    t = c.templates.create({"name": "Greeting", "alias": "greet", "subject": "Hi {{name}}",
                            "text": "Hello {{name}}, plan {{plan.tier}}", "html": "<p>{{name}}</p>"})
    assert t.id.startswith("tmpl_") and t.alias == "greet" and t.html == "<p>{{name}}</p>", t
    assert [x.id for x in c.templates.list()] == [t.id]
    assert c.templates.update(t.id, {"name": "Greeting 2"}).name == "Greeting 2"
    assert c.templates.get(t.id).name == "Greeting 2"
    v = c.templates.validate({"subject": "Hi {{name}}", "text": "x {{a.b}}", "test_data": {"name": "Ada"}})
    assert v.valid is True and v.rendered.subject == "Hi Ada", v
    assert v.suggested_data == {"name": "name_value", "a": {"b": "a.b_value"}}, v.suggested_data
    bad = c.templates.validate({"subject": "Hi {{name"})
    assert bad.valid is False and bad.errors[0].part == "subject" and bad.rendered is None, bad
    starters = list(c.templates.list_starters())
    assert len(starters) == 7 and starters[-1].alias == "welcome", [s.alias for s in starters]
    welcome = c.templates.get_starter("welcome")
    assert "{{recipient_name}}" in welcome.text and "{{cta_url}}" in welcome.html, welcome
    copied = c.templates.create({"from_starter": "verify-code"})
    assert copied.from_starter_alias == "verify-code" and copied.from_starter_version == "1.0.0", copied
    sent = c.messages.send(AGENT, {"to": ["tpl@example.net"], "template_alias": "greet",
                                   "template_data": {"name": "Ann", "plan": {"tier": "pro"}}})
    assert sent.status == "accepted", sent
    assert c.messages.get(AGENT, sent.message_id).subject == "Hi Ann"
    e = expect(E2ANotFoundError, c.messages.send, AGENT, {"to": ["x@example.net"], "template_id": "tmpl_missing"})
    assert e.code == "template_not_found", e
    for tid in (t.id, copied.id):
        d = c.templates.delete(tid)
        assert d.deleted is True and d.id == tid, d
    assert list(c.templates.list()) == []

    if SDK >= (5, 5):
        # Scheduled send: accepted as scheduled, cancelled by the trash, re-armed by a restore.
        later = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=1)
        s = c.messages.send(AGENT, {"to": ["later@example.net"], "subject": "later", "text": "t", "send_at": later})
        assert s.status == "scheduled" and s.scheduled_at == later, s
        mv = c.messages.get(AGENT, s.message_id)
        assert mv.delivery_status == "accepted" and mv.scheduled_at == later, mv
        assert c.messages.delete(AGENT, s.message_id).deleted is True
        assert c.messages.restore(AGENT, s.message_id).delivery_status == "accepted"

        # Contacts: canonical addresses, If-Match, imports and their reversal, outreach.
        ct = c.contacts.create({"address": "A. Partner <Partner@fund.vc>", "display_name": "A", "metadata": {"tier": 1}})
        assert ct.address == "partner@fund.vc" and ct.source == "manual" and ct.metadata == {"tier": 1}, ct
        got, etag = c.contacts.get_with_etag("A. Partner <partner@fund.vc>")
        assert got.address == "partner@fund.vc" and etag, (got, etag)
        assert c.contacts.update("partner@fund.vc", {"display_name": "B"}, if_match=etag).display_name == "B"
        e = expect(E2AError, lambda: c.contacts.update("partner@fund.vc", {"display_name": "C"}, if_match=etag))
        assert e.code == "precondition_failed", e
        expect(E2AConflictError, c.contacts.create, {"address": "partner@fund.vc"})
        imp = c.contacts.import_({"contacts": [{"address": "x1@fund.vc"}, {"address": "bad"}],
                                  "agent_email": AGENT, "stage": "new"})
        assert (imp.created, imp.failed, imp.results[1].code) == (1, 1, "invalid_recipient"), imp
        assert [x.address for x in c.contacts.list(import_batch_id=imp.batch_id)] == ["x1@fund.vc"]
        eng = c.contacts.set_outreach(AGENT, "partner@fund.vc", {"stage": "pitched", "next_action_at": later})
        assert eng.stage == "pitched" and eng.replied is False and eng.next_action_at == later, eng
        assert eng.contact.display_name == "B", eng.contact
        assert [x.address for x in c.contacts.outreach(AGENT, stage="new")] == ["x1@fund.vc"]
        due = list(c.contacts.outreach(AGENT, replied=False, next_action_before=later + timedelta(minutes=1)))
        assert [x.address for x in due] == ["partner@fund.vc"], due
        rev = c.contacts.delete_import(imp.batch_id)
        assert (rev.contacts_deleted, rev.engagements_deleted) == (1, 1), rev
        assert c.contacts.delete_outreach(AGENT, "partner@fund.vc").deleted is True
        assert c.contacts.delete("partner@fund.vc").deleted is True
        expect(E2ANotFoundError, c.contacts.get, "partner@fund.vc")

    if SDK >= (5, 7):
        # Metrics from the ledger: the agent's and the account's, by agent and by day.
        am = c.messages.get_metrics(AGENT)
        assert am.agent_email == AGENT and am.summary.accepted >= 2 and am.messages_with_lifecycle >= 2, am
        acct = c.account.metrics(group_by="agent", bucket="day")
        assert acct.summary.review_held == 2 and acct.summary.review_rejected == 1, acct.summary
        assert {a.agent_email for a in acct.agents} >= {AGENT, SLUG}, acct.agents
        assert len(acct.buckets) >= 30 and acct.webhooks.deliveries >= 0, acct
        old = c.account.metrics(start=datetime(2020, 1, 1, tzinfo=timezone.utc), end=datetime(2020, 1, 2))
        assert old.summary.accepted == 0 and old.messages_in_window == 0, old

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
