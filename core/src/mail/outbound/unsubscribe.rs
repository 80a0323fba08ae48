//! Managed unsubscribe tokens: `unsub|<account>|<agent>|<recipient>|<exp_unix>`, signed like
//! every capability token ([`crate::magic`]). Whoever holds one may put that one recipient on
//! that agent's suppression list until it expires; nothing else.

use crate::ids::AccountId;
use crate::secret::Secret;
use crate::time::Timestamp;

/// How long an unsubscribe link works: mail is read late, and people unsubscribe from old mail.
pub const VALID_SECS: i64 = 180 * 86_400;

/// What an unsubscribe token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub account_id: AccountId,
    pub agent_email: String,
    pub recipient: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not ours, or altered.
    Forged,
    Expired,
}

/// A token for `recipient` of `agent_email`'s mail.
pub fn mint(
    secret: &Secret,
    account: &AccountId,
    agent_email: &str,
    recipient: &str,
    now: Timestamp,
) -> String {
    let exp = now.as_micros() / 1_000_000 + VALID_SECS;
    let payload =
        format!("unsub|{}|{}|{}|{exp}", account.as_str(), agent_email, recipient.to_ascii_lowercase());
    crate::magic::sign(secret, &payload)
}

/// The grant of a token, when it is ours and not expired.
pub fn open(secret: &Secret, token: &str, now: Timestamp) -> Result<Grant, TokenError> {
    let payload = crate::magic::open(secret, token).ok_or(TokenError::Forged)?;
    let parts: Vec<&str> = payload.split('|').collect();
    let ["unsub", account, agent, recipient, exp] = parts.as_slice() else { return Err(TokenError::Forged) };
    let exp: i64 = exp.parse().map_err(|_| TokenError::Forged)?;
    if now.as_micros() / 1_000_000 > exp {
        return Err(TokenError::Expired);
    }
    Ok(Grant {
        account_id: AccountId::from_stored((*account).to_owned()),
        agent_email: (*agent).to_owned(),
        recipient: (*recipient).to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_grant_one_recipient_until_they_expire() {
        let secret = Secret::new(vec![9; 32]);
        let account = AccountId::from_stored("acct_1".into());
        let now = Timestamp::from_micros(1_800_000_000_000_000);
        let t = mint(&secret, &account, "bot@agents.test", "Ann@Example.org", now);
        let g = open(&secret, &t, now).expect("valid");
        assert_eq!((g.agent_email.as_str(), g.recipient.as_str()), ("bot@agents.test", "ann@example.org"));
        assert_eq!(open(&secret, &t, now.plus_secs(VALID_SECS + 1)), Err(TokenError::Expired));
        assert_eq!(open(&Secret::new(vec![8; 32]), &t, now), Err(TokenError::Forged));
        let mut bytes = t.into_bytes();
        bytes[2] ^= 1;
        assert_eq!(open(&secret, &String::from_utf8_lossy(&bytes), now), Err(TokenError::Forged));
        let review = crate::magic::sign(&secret, "msg_1|approve|9999999999");
        assert_eq!(open(&secret, &review, now), Err(TokenError::Forged), "another token kind grants nothing");
    }
}
