//! Registered domains.

use super::sql::{flag, opt_ts, ts};
use super::{Domain, DomainCheck, DomainStore, NewDomain, PageQuery, SqlStore, StoreError, StoreResult};
use crate::ids::AccountId;
use crate::time::Timestamp;
use crate::vocab::ProbeStatus;
use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

const DOMAIN_COLS: &str = "d.domain, d.account_id, d.verification_token, d.verified, d.operator_owned, \
     d.verified_at, d.last_checked_at, d.txt_status, d.mx_status, d.created_at, \
     (SELECT COUNT(*) FROM agents a WHERE a.domain = d.domain AND a.deleted_at IS NULL) AS agent_count";

fn domain(row: &AnyRow) -> StoreResult<Domain> {
    Ok(Domain {
        domain: row.try_get("domain")?,
        account_id: AccountId::from_stored(row.try_get("account_id")?),
        verification_token: row.try_get("verification_token")?,
        verified: flag(row, "verified")?,
        operator_owned: flag(row, "operator_owned")?,
        verified_at: opt_ts(row, "verified_at")?,
        last_checked_at: opt_ts(row, "last_checked_at")?,
        txt_status: super::sql::word(row, "txt_status")?,
        mx_status: super::sql::word(row, "mx_status")?,
        created_at: ts(row, "created_at")?,
        agent_count: row.try_get("agent_count")?,
    })
}

impl SqlStore {
    async fn domain_by_name(&self, name: &str) -> StoreResult<Option<Domain>> {
        self.fetch_by(&format!("SELECT {DOMAIN_COLS} FROM domains d WHERE d.domain = $1"), name, domain).await
    }
}

#[async_trait]
impl DomainStore for SqlStore {
    async fn register_domain(&self, new: NewDomain) -> StoreResult<(Domain, bool)> {
        let now = Timestamp::now().as_micros();
        let verified = i64::from(new.operator_owned);
        let inserted = sqlx::query(
            "INSERT INTO domains (domain, account_id, verification_token, verified, operator_owned, verified_at,
                                  txt_status, mx_status, created_at)
             VALUES ($1, $2, $3, $4, $4, $5, $6, $6, $7) ON CONFLICT (domain) DO NOTHING",
        )
        .bind(new.domain.as_str())
        .bind(new.account_id.as_str())
        .bind(new.verification_token.as_str())
        .bind(verified)
        .bind(new.operator_owned.then_some(now))
        .bind(if new.operator_owned { ProbeStatus::Found } else { ProbeStatus::Pending }.as_str())
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        if inserted && new.operator_owned {
            // Verified from the start: Postfix's maps must hear of it.
            self.directory_changed().await;
        }
        let row = self.domain_by_name(&new.domain).await?.ok_or(StoreError::NotFound)?;
        if row.account_id != new.account_id {
            return Err(StoreError::Conflict("domain"));
        }
        Ok((row, inserted))
    }

    async fn get_domain(&self, account: &AccountId, name: &str) -> StoreResult<Option<Domain>> {
        Ok(self.domain_by_name(name).await?.filter(|d| &d.account_id == account))
    }

    async fn find_domain(&self, name: &str) -> StoreResult<Option<Domain>> {
        self.domain_by_name(name).await
    }

    async fn take_over_domain(
        &self,
        held: &Domain,
        new: &NewDomain,
        check: Option<DomainCheck>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let at = now.as_micros();
        let (verified, txt, mx, checked) = match &check {
            Some(c) => (
                i64::from(c.verified),
                c.txt_status.as_str(),
                c.mx_status.as_str(),
                Some(c.checked_at.as_micros()),
            ),
            None => (0, ProbeStatus::Pending.as_str(), ProbeStatus::Pending.as_str(), None),
        };
        let done = sqlx::query(
            "UPDATE domains SET account_id = $3, verification_token = $4, verified = $5,
                 verified_at = CASE WHEN $5 = 1 THEN $8 ELSE NULL END, txt_status = $6, mx_status = $7,
                 last_checked_at = $9, created_at = $8
             WHERE domain = $1 AND account_id = $2 AND verified = 0 AND operator_owned = 0
               AND created_at = $10",
        )
        .bind(held.domain.as_str())
        .bind(held.account_id.as_str())
        .bind(new.account_id.as_str())
        .bind(new.verification_token.as_str())
        .bind(verified)
        .bind(txt)
        .bind(mx)
        .bind(at)
        .bind(checked)
        .bind(held.created_at.as_micros())
        .execute(&self.pool)
        .await?;
        let changed = done.rows_affected() == 1;
        if changed {
            self.directory_changed().await;
        }
        Ok(changed)
    }

    async fn expire_unverified_domains(&self, before: Timestamp) -> StoreResult<u64> {
        // An unverified domain has no agents (they need a verified one), so nothing hangs on it.
        let done = sqlx::query(
            "DELETE FROM domains WHERE verified = 0 AND operator_owned = 0 AND created_at < $1
               AND NOT EXISTS (SELECT 1 FROM agents a WHERE a.domain = domains.domain)",
        )
        .bind(before.as_micros())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn list_domains(&self, account: &AccountId, page: &PageQuery) -> StoreResult<Vec<Domain>> {
        let sql = format!(
            "SELECT {DOMAIN_COLS} FROM domains d
             WHERE d.account_id = $1 AND (d.created_at < $2 OR (d.created_at = $2 AND d.domain < $3))
             ORDER BY d.created_at DESC, d.domain DESC LIMIT $4"
        );
        self.fetch_page(&sql, account, page, domain).await
    }

    async fn record_domain_check(
        &self,
        account: &AccountId,
        name: &str,
        token: &str,
        check: DomainCheck,
    ) -> StoreResult<bool> {
        // Verification is sticky: once proven, a later failed probe (a DNS outage, a record
        // edited away) is reported in the statuses but does not stop mail to live agents.
        // verified_at keeps the first time it was proven.
        let done = sqlx::query(
            "UPDATE domains SET
                 verified = CASE WHEN operator_owned = 1 OR verified = 1 THEN 1 ELSE $4 END,
                 verified_at = CASE WHEN $4 = 1 AND verified_at IS NULL THEN $7 ELSE verified_at END,
                 txt_status = $5, mx_status = $6, last_checked_at = $7
             WHERE domain = $1 AND account_id = $2 AND verification_token = $3",
        )
        .bind(name)
        .bind(account.as_str())
        .bind(token)
        .bind(i64::from(check.verified))
        .bind(check.txt_status.as_str())
        .bind(check.mx_status.as_str())
        .bind(check.checked_at.as_micros())
        .execute(&self.pool)
        .await?;
        let changed = done.rows_affected() == 1;
        // Verification is sticky, so only a probe that verified can change what the maps
        // answer.
        if changed && check.verified {
            self.directory_changed().await;
        }
        Ok(changed)
    }

    async fn is_agent_domain(&self, domain: &str) -> StoreResult<bool> {
        let row = sqlx::query("SELECT 1 AS one FROM domains WHERE domain = $1 AND verified = 1")
            .bind(domain)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    async fn claim_operator_domain(
        &self,
        account: &AccountId,
        name: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE domains SET operator_owned = 1, verified = 1, verified_at = COALESCE(verified_at, $3)
             WHERE domain = $1 AND account_id = $2",
        )
        .bind(name)
        .bind(account.as_str())
        .bind(now.as_micros())
        .execute(&self.pool)
        .await?;
        let changed = done.rows_affected() == 1;
        if changed {
            self.directory_changed().await;
        }
        Ok(changed)
    }

    async fn delete_domain(&self, account: &AccountId, name: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        // Take the domain row first: create_agent locks it too, so the count below cannot
        // miss an agent being created right now.
        let exists = sqlx::query(&format!(
            "SELECT domain FROM domains WHERE domain = $1 AND account_id = $2{}",
            self.lock_rows()
        ))
        .bind(name)
        .bind(account.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
        if !exists {
            return Ok(false);
        }
        let agents: i64 = sqlx::query("SELECT COUNT(*) FROM agents WHERE domain = $1 AND account_id = $2")
            .bind(name)
            .bind(account.as_str())
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if agents > 0 {
            return Err(StoreError::Conflict("agents"));
        }
        let done = sqlx::query("DELETE FROM domains WHERE domain = $1 AND account_id = $2")
            .bind(name)
            .bind(account.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.directory_changed().await;
        Ok(done.rows_affected() == 1)
    }
}
