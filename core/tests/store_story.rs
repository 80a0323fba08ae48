//! One story of the store, told against SQLite and against PostgreSQL: every behaviour the
//! rest of postagent relies on, on both backends.

use postagent_core::apikey::{self, KeyScope};
use postagent_core::ids::AccountId;
use postagent_core::store::{
    AccountStore, After, DomainCheck, IdempotencyBegin, JobQueue, NewAgent, NewApiKey, NewDomain, PageQuery,
    SqlStore, Store, StoreError,
};
use postagent_core::time::Timestamp;
use postagent_core::vocab::{JobKind, ProbeStatus, Word};
use postagent_lab::pg::PgCluster;
use std::collections::HashSet;
use std::sync::Arc;

async fn sqlite_store(dir: &tempfile::TempDir) -> Arc<SqlStore> {
    let url = format!("sqlite://{}/story.db", dir.path().display());
    Arc::new(SqlStore::open(&url, 5).await.expect("open sqlite"))
}

fn pg_url() -> Option<String> {
    let cluster = PgCluster::shared()?;
    Some(cluster.create_database().expect("create database"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn story_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    story(sqlite_store(&dir).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn story_on_postgres() {
    let Some(url) = pg_url() else { return };
    story(Arc::new(SqlStore::open(&url, 5).await.expect("open postgres"))).await;
}

/// Several replicas starting at once against an empty database: migrations run once, under
/// the advisory lock, and every replica comes up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_replicas_migrate_together() {
    let Some(url) = pg_url() else { return };
    open_together(&url, 4).await;
}

/// Opens `n` stores on `url` at the same moment (all spawned before any is awaited) and
/// checks each one sees the schema.
async fn open_together(url: &str, n: usize) {
    let opens: Vec<_> = (0..n)
        .map(|_| {
            let url = url.to_owned();
            tokio::spawn(async move { SqlStore::open(&url, 2).await })
        })
        .collect();
    for handle in opens {
        let store = handle.await.expect("join").expect("every replica opens");
        store.list_accounts().await.expect("schema present");
    }
}

/// Several processes starting at once on a new SQLite file all come up on one schema (the
/// migration runs under a file lock). The file is created private: it holds mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_first_start_is_race_free_and_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/new/fresh.db", dir.path().display());
    open_together(&url, 4).await;
    let mode = std::fs::metadata(dir.path().join("new/fresh.db")).expect("db").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// Two stores on one SQLite file behave like two processes: claims never overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_processes_share_the_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = sqlite_store(&dir).await;
    let b = sqlite_store(&dir).await;
    concurrent_claims(vec![a, b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_two_replicas_share_the_queue() {
    let Some(url) = pg_url() else { return };
    let a = Arc::new(SqlStore::open(&url, 4).await.expect("open"));
    let b = Arc::new(SqlStore::open(&url, 4).await.expect("open"));
    concurrent_claims(vec![a, b]).await;
}

#[tokio::test]
async fn reopening_sqlite_keeps_data_and_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = sqlite_store(&dir).await;
    first.create_account("keep@example.org").await.expect("create");
    first.close().await;
    let second = sqlite_store(&dir).await;
    assert!(second.find_account_by_email("keep@example.org").await.expect("query").is_some());
}

#[tokio::test]
async fn refuses_unknown_schemes_and_memory_databases() {
    assert!(matches!(SqlStore::open("mysql://x/y", 1).await, Err(StoreError::BadUrl(_))));
    assert!(matches!(SqlStore::open("sqlite::memory:", 1).await, Err(StoreError::BadUrl(_))));
}

async fn story(store: Arc<SqlStore>) {
    let s: &dyn Store = store.as_ref();
    let (a, b) = accounts(s).await;
    api_keys(s, &a, &b).await;
    domains(s, &a, &b).await;
    agents(s, &a, &b).await;
    jobs(s).await;
    idempotency(s, &a).await;
    concurrent_claims(vec![store.clone(), store]).await;
}

async fn accounts(s: &dyn Store) -> (AccountId, AccountId) {
    let a = s.create_account("alice@example.org").await.expect("create a");
    let b = s.create_account("bob@example.org").await.expect("create b");
    assert!(matches!(s.create_account("alice@example.org").await, Err(StoreError::Conflict(_))));
    assert_eq!(s.get_account(&a.id).await.expect("get"), Some(a.clone()));
    assert_eq!(
        s.find_account_by_email("bob@example.org").await.expect("find").map(|x| x.id),
        Some(b.id.clone())
    );
    assert_eq!(s.find_account_by_email("carol@example.org").await.expect("find"), None);
    let all: Vec<_> = s.list_accounts().await.expect("list").into_iter().map(|x| x.email).collect();
    assert_eq!(all, vec!["alice@example.org", "bob@example.org"]);
    assert_eq!(a.plan_code, "selfhost");
    (a.id, b.id)
}

fn new_key(
    account: &AccountId,
    scope: KeyScope,
    agent: Option<&str>,
    expires_at: Option<Timestamp>,
) -> (NewApiKey, String) {
    let minted = apikey::mint(scope);
    let new = NewApiKey {
        account_id: account.clone(),
        name: "k".into(),
        scope,
        agent_email: agent.map(str::to_owned),
        expires_at,
        key_hash: minted.hash.clone(),
        key_prefix: minted.prefix.clone(),
    };
    (new, minted.plaintext)
}

async fn api_keys(s: &dyn Store, a: &AccountId, b: &AccountId) {
    let now = Timestamp::now();
    let (new, plain) = new_key(a, KeyScope::Account, None, None);
    let key = s.create_api_key(new).await.expect("create key");
    assert_eq!(key.last_used_at, None);
    let authed = s.authenticate(&apikey::hash(&plain), now).await.expect("auth").expect("valid key");
    assert_eq!(authed.id, key.id);
    assert_eq!(authed.last_used_at, Some(now));
    assert!(s.authenticate(&apikey::hash("e2a_acct_nope"), now).await.expect("auth").is_none());

    let (expired, expired_plain) = new_key(a, KeyScope::Account, None, Some(now.plus_secs(-1)));
    s.create_api_key(expired).await.expect("create expired");
    assert!(s.authenticate(&apikey::hash(&expired_plain), now).await.expect("auth").is_none());

    let page = PageQuery { after: None, limit: 10 };
    assert_eq!(s.list_api_keys(a, &page).await.expect("list").len(), 2);
    assert!(s.list_api_keys(b, &page).await.expect("list").is_empty());
    assert!(!s.revoke_api_key(b, &key.id, now).await.expect("revoke"), "another account's key");
    assert!(s.revoke_api_key(a, &key.id, now).await.expect("revoke"));
    assert!(!s.revoke_api_key(a, &key.id, now).await.expect("revoke twice"));
    assert!(s.authenticate(&apikey::hash(&plain), now).await.expect("auth").is_none(), "revoked");
    assert_eq!(s.list_api_keys(a, &page).await.expect("list").len(), 1);
}

async fn domains(s: &dyn Store, a: &AccountId, b: &AccountId) {
    let reg = |account: &AccountId, name: &str, operator_owned: bool| NewDomain {
        account_id: account.clone(),
        domain: name.into(),
        verification_token: postagent_core::ids::mint("e2a-verify=", 16),
        operator_owned,
    };
    let (d, created) = s.register_domain(reg(a, "a.example", false)).await.expect("register");
    assert!(created && !d.verified && d.verified_at.is_none());
    let (again, created) = s.register_domain(reg(a, "a.example", false)).await.expect("re-register");
    assert!(!created);
    assert_eq!(again.verification_token, d.verification_token, "the token is minted once");
    assert!(matches!(s.register_domain(reg(b, "a.example", false)).await, Err(StoreError::Conflict(_))));
    assert_eq!(s.get_domain(b, "a.example").await.expect("get"), None, "tenant isolation");

    let (op, _) = s.register_domain(reg(a, "ops.example", true)).await.expect("operator domain");
    assert!(op.verified && op.verified_at.is_some());
    assert!(s.is_agent_domain("ops.example").await.expect("query"), "verified domains take mail");
    assert!(!s.is_agent_domain("a.example").await.expect("query"), "unverified domains do not");
    assert!(!s.is_agent_domain("elsewhere.example").await.expect("query"));
    let (own, _) = s.register_domain(reg(a, "claimed.example", false)).await.expect("register");
    assert!(!own.verified);
    assert!(!s.claim_operator_domain(b, "claimed.example", Timestamp::now()).await.expect("claim"));
    assert!(s.claim_operator_domain(a, "claimed.example", Timestamp::now()).await.expect("claim"));
    let own = s.get_domain(a, "claimed.example").await.expect("get").expect("exists");
    assert!(own.verified && own.operator_owned && own.verified_at.is_some());

    let t = Timestamp::now();
    let check = |verified: bool, status: &str| DomainCheck {
        verified,
        txt_status: ProbeStatus::parse(status).expect("probe status"),
        mx_status: ProbeStatus::parse(status).expect("probe status"),
        checked_at: t,
    };
    let token = d.verification_token.clone();
    assert!(
        !s.record_domain_check(b, "a.example", &token, check(true, "found")).await.expect("check"),
        "another account's probe never lands"
    );
    assert!(
        !s.record_domain_check(a, "a.example", "e2a-verify=old", check(true, "found")).await.expect("check"),
        "a probe of a previous registration (other token) never lands"
    );
    assert!(s.record_domain_check(a, "a.example", &token, check(false, "missing")).await.expect("check"));
    let d = s.get_domain(a, "a.example").await.expect("get").expect("exists");
    assert!(!d.verified);
    assert_eq!((d.txt_status.as_str(), d.last_checked_at), ("missing", Some(t)));
    s.record_domain_check(a, "a.example", &token, check(true, "found")).await.expect("check");
    let d = s.get_domain(a, "a.example").await.expect("get").expect("exists");
    assert!(d.verified && d.verified_at == Some(t));
    s.record_domain_check(a, "a.example", &token, check(false, "deferred")).await.expect("check");
    let d = s.get_domain(a, "a.example").await.expect("get").expect("exists");
    assert!(d.verified, "verification is sticky across a failed probe");
    assert_eq!(d.txt_status.as_str(), "deferred");

    for i in 0..5 {
        s.register_domain(reg(b, &format!("b{i}.example"), false)).await.expect("register");
    }
    let mut seen = Vec::new();
    let mut after: Option<After> = None;
    loop {
        let rows = s.list_domains(b, &PageQuery { after: after.clone(), limit: 2 }).await.expect("page");
        let more = rows.len() > 2;
        let page: Vec<_> = rows.into_iter().take(2).collect();
        after = page.last().map(|d| After { created_at: d.created_at, key: d.domain.clone() });
        seen.extend(page.into_iter().map(|d| (d.created_at, d.domain)));
        if !more {
            break;
        }
    }
    assert_eq!(seen.len(), 5);
    let mut sorted = seen.clone();
    sorted.sort_by(|x, y| y.cmp(x));
    assert_eq!(seen, sorted, "newest first, no duplicates, nothing skipped");
}

async fn agents(s: &dyn Store, a: &AccountId, b: &AccountId) {
    let new = |account: &AccountId, email: &str| NewAgent {
        account_id: account.clone(),
        email: email.into(),
        domain: email.split('@').nth(1).unwrap_or_default().into(),
        name: "Bot".into(),
        require_verified_domain: !email.ends_with("@shared.example"),
    };
    let bot = s.create_agent(new(a, "bot@a.example")).await.expect("create");
    assert!(bot.domain_verified && bot.deleted_at.is_none());
    assert!(matches!(s.create_agent(new(a, "bot@a.example")).await, Err(StoreError::Conflict("agent"))));
    assert!(matches!(
        s.create_agent(new(b, "bot@a.example")).await,
        Err(StoreError::Precondition("domain_not_registered"))
    ));
    assert!(matches!(
        s.create_agent(new(a, "bot@nowhere.example")).await,
        Err(StoreError::Precondition("domain_not_registered"))
    ));
    s.register_domain(NewDomain {
        account_id: a.clone(),
        domain: "unproven.example".into(),
        verification_token: "e2a-verify=x".into(),
        operator_owned: false,
    })
    .await
    .expect("register");
    assert!(matches!(
        s.create_agent(new(a, "bot@unproven.example")).await,
        Err(StoreError::Precondition("domain_not_verified"))
    ));
    // An agent key lives exactly as long as its agent does.
    let (agent_key, agent_plain) = new_key(a, KeyScope::Agent, Some("bot@a.example"), None);
    s.create_api_key(agent_key).await.expect("agent key");
    let agent_hash = apikey::hash(&agent_plain);
    assert!(s.authenticate(&agent_hash, Timestamp::now()).await.expect("auth").is_some());
    let shared = s.create_agent(new(a, "slug@shared.example")).await.expect("agent off the domains table");
    assert!(!shared.domain_verified);

    let d = s.get_domain(a, "a.example").await.expect("get").expect("exists");
    assert_eq!(d.agent_count, 1);
    assert!(matches!(s.delete_domain(a, "a.example").await, Err(StoreError::Conflict("agents"))));

    assert_eq!(s.get_agent(b, "bot@a.example").await.expect("get"), None, "tenant isolation");
    let renamed = s.rename_agent(a, "bot@a.example", "Robot").await.expect("rename").expect("exists");
    assert_eq!(renamed.name, "Robot");
    assert_eq!(s.rename_agent(b, "bot@a.example", "x").await.expect("rename"), None);

    let page = PageQuery { after: None, limit: 10 };
    assert!(s.trash_agent(a, "bot@a.example", Timestamp::now()).await.expect("trash"));
    assert!(!s.trash_agent(a, "bot@a.example", Timestamp::now()).await.expect("trash twice"));
    assert_eq!(s.list_agents(a, false, &page).await.expect("live").len(), 1);
    let trash = s.list_agents(a, true, &page).await.expect("trash");
    assert_eq!(trash.len(), 1);
    assert!(trash[0].deleted_at.is_some());
    assert_eq!(s.find_live_agent("bot@a.example").await.expect("find"), None);
    assert!(s.authenticate(&agent_hash, Timestamp::now()).await.expect("auth").is_none(), "agent in trash");
    assert!(matches!(
        s.create_agent(new(a, "bot@a.example")).await,
        Err(StoreError::Conflict("agent_in_trash"))
    ));
    assert_eq!(s.rename_agent(a, "bot@a.example", "x").await.expect("rename"), None, "trash is read-only");

    let restored = s.restore_agent(a, "bot@a.example").await.expect("restore").expect("was in trash");
    assert!(restored.deleted_at.is_none());
    assert_eq!(s.restore_agent(a, "bot@a.example").await.expect("restore"), None);
    assert!(s.find_live_agent("bot@a.example").await.expect("find").is_some());
    assert!(s.authenticate(&agent_hash, Timestamp::now()).await.expect("auth").is_some(), "restored");

    let usage = s.account_usage(a, Timestamp::from_micros(0)).await.expect("usage");
    assert_eq!((usage.agents, usage.domains, usage.messages_month, usage.storage_bytes), (2, 4, 0, 0));

    assert_eq!(s.purge_agent(b, "bot@a.example").await.expect("purge"), None);
    assert_eq!(s.purge_agent(a, "bot@a.example").await.expect("purge"), Some(0));
    assert_eq!(s.get_agent(a, "bot@a.example").await.expect("get"), None);
    s.create_agent(new(a, "bot@a.example")).await.expect("the address is free again");
    assert!(
        s.authenticate(&agent_hash, Timestamp::now()).await.expect("auth").is_none(),
        "a purged agent's keys do not open its successor"
    );
    s.purge_agent(a, "bot@a.example").await.expect("purge");
    assert!(s.delete_domain(a, "a.example").await.expect("delete"));
    assert!(!s.delete_domain(a, "a.example").await.expect("delete twice"));
}

async fn jobs(s: &dyn Store) {
    let now = Timestamp::now();
    for i in 0..3 {
        s.enqueue_job(JobKind::Submit, &format!("ref{i}"), now).await.expect("enqueue");
    }
    s.enqueue_job(JobKind::Submit, "later", now.plus_secs(3600)).await.expect("enqueue");
    s.enqueue_job(JobKind::Submit, "ref0", now.plus_secs(99))
        .await
        .expect("re-enqueue keeps the earlier run_at");

    let first = s.claim_jobs(JobKind::Submit, "w1", now, 30, 2).await.expect("claim");
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|j| j.attempts == 1));
    let second = s.claim_jobs(JobKind::Submit, "w2", now, 30, 10).await.expect("claim");
    assert_eq!(second.len(), 1, "leased and future jobs are not handed out");
    assert!(
        s.claim_jobs(JobKind::ReviewNotify, "w2", now, 30, 10).await.expect("claim").is_empty(),
        "kinds are separate"
    );

    assert!(!s.complete_job(first[0].id, "w2").await.expect("complete"), "only the lease holder completes");
    assert!(s.complete_job(first[0].id, "w1").await.expect("complete"));
    assert!(s.retry_job(second[0].id, "w2", now, "receiver said 500").await.expect("retry"));
    let again = s.claim_jobs(JobKind::Submit, "w3", now, 30, 10).await.expect("claim");
    assert_eq!(again.iter().map(|j| j.ref_id.as_str()).collect::<Vec<_>>(), vec![second[0].ref_id.as_str()]);
    assert_eq!(again[0].attempts, 2);

    // w1 died holding first[1]: after its lease runs out, another worker takes it over.
    let later = now.plus_secs(31);
    let reclaimed = s.claim_jobs(JobKind::Submit, "w4", later, 30, 10).await.expect("claim");
    let refs: HashSet<_> = reclaimed.iter().map(|j| j.ref_id.clone()).collect();
    assert!(refs.contains(&first[1].ref_id));
    assert!(!s.complete_job(first[1].id, "w1").await.expect("complete"), "the lease was lost");
    assert_eq!(s.release_jobs("w4").await.expect("release"), reclaimed.len() as u64);
    let after_release = s.claim_jobs(JobKind::Submit, "w5", later, 30, 10).await.expect("claim");
    assert_eq!(after_release.len(), reclaimed.len(), "released jobs are due again at once");
    for j in after_release {
        assert!(s.complete_job(j.id, "w5").await.expect("complete"));
    }
}

async fn idempotency(s: &dyn Store, a: &AccountId) {
    let now = Timestamp::now();
    let stale = now.plus_secs(-60);
    assert_eq!(
        s.idempotency_begin(a, "k1", "fp1", now, stale).await.expect("begin"),
        IdempotencyBegin::Started
    );
    assert_eq!(
        s.idempotency_begin(a, "k1", "fp1", now, stale).await.expect("begin"),
        IdempotencyBegin::InFlight
    );
    assert_eq!(
        s.idempotency_begin(a, "k1", "fp2", now, stale).await.expect("begin"),
        IdempotencyBegin::Mismatch
    );
    s.idempotency_finish(a, "k1", 201, "{\"ok\":true}").await.expect("finish");
    assert_eq!(
        s.idempotency_begin(a, "k1", "fp1", now, stale).await.expect("begin"),
        IdempotencyBegin::Replay { status: 201, body: "{\"ok\":true}".into() }
    );
    assert_eq!(
        s.idempotency_begin(a, "k2", "fp", now, stale).await.expect("begin"),
        IdempotencyBegin::Started
    );
    s.idempotency_release(a, "k2").await.expect("release");
    assert_eq!(
        s.idempotency_begin(a, "k2", "fp", now, stale).await.expect("begin"),
        IdempotencyBegin::Started
    );
    // A request that died in flight: once its row is stale, a retry takes it over.
    assert_eq!(
        s.idempotency_begin(a, "k3", "fp", now, stale).await.expect("begin"),
        IdempotencyBegin::Started
    );
    let later = now.plus_secs(61);
    assert_eq!(
        s.idempotency_begin(a, "k3", "fp", later, now).await.expect("begin"),
        IdempotencyBegin::InFlight
    );
    assert_eq!(
        s.idempotency_begin(a, "k3", "fp", later, later).await.expect("begin"),
        IdempotencyBegin::Started,
        "stale in-flight rows are taken over"
    );
    assert_eq!(
        s.idempotency_begin(a, "k3", "other", later, later).await.expect("begin"),
        IdempotencyBegin::Mismatch
    );
    let day = postagent_core::janitor::IDEMPOTENCY_KEEP_SECS;
    assert_eq!(
        postagent_core::janitor::sweep(s, now.plus_secs(day - 1), Default::default()).await.expect("sweep"),
        0,
        "kept 24 h"
    );
    assert_eq!(
        postagent_core::janitor::sweep(s, later.plus_secs(day + 1), Default::default()).await.expect("sweep"),
        3
    );
    assert_eq!(
        s.idempotency_begin(a, "k1", "fp9", now, stale).await.expect("begin"),
        IdempotencyBegin::Started
    );
}

/// Several claimers drain one queue at once: every job is handed out exactly once.
async fn concurrent_claims(stores: Vec<Arc<SqlStore>>) {
    let kind = JobKind::Submit;
    let now = Timestamp::now();
    let total = 60;
    for i in 0..total {
        stores[0].enqueue_job(kind, &format!("job{i}"), now).await.expect("enqueue");
    }
    // Collected before any is awaited, so the six really run at once.
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let store = stores[w % stores.len()].clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let jobs = store.claim_jobs(kind, &format!("w{w}"), now, 60, 3).await.expect("claim");
                    if jobs.is_empty() {
                        break mine;
                    }
                    for j in jobs {
                        assert!(store.complete_job(j.id, &format!("w{w}")).await.expect("complete"));
                        mine.push(j.ref_id);
                    }
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut busy_workers = 0;
    for w in workers {
        let mine = w.await.expect("join");
        busy_workers += usize::from(!mine.is_empty());
        all.extend(mine);
    }
    assert!(busy_workers > 1, "the claimers overlapped in time");
    let unique: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), total, "every job once");
    assert_eq!(unique.len(), total, "no job twice");
}
