//! The milter's agent directory with a short-lived cache, so a busy agent's every message
//! does not ask the database the same two questions (is this one of our domains, is this a
//! live agent) at RCPT.
//!
//! The same policy as the socketmap's ([`crate::socketmap::Maps`]): answers live for a few
//! seconds, the cache is emptied at once when the bus says agents or domains changed (on this
//! replica or another), an answer read while a change was announced is not kept, and failures
//! are never cached. A stale "yes" for a just-deleted agent lets at most a few seconds of mail
//! through RCPT; LMTP looks the agent up again before it stores anything.

use crate::recipients::{AgentDirectory, DirectoryError};
use async_trait::async_trait;
use postagent_core::bus::BusMessage;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// Entries kept at most; the cache is emptied when full (a flood of distinct names costs
/// lookups, never memory).
const MAX_CACHED: usize = 10_000;

#[derive(Clone, PartialEq, Eq, Hash)]
enum Question {
    Domain(String),
    Agent(String),
}

/// An [`AgentDirectory`] answering from a cache in front of another.
pub struct CachedDirectory {
    inner: Arc<dyn AgentDirectory>,
    ttl: Duration,
    cache: Mutex<HashMap<Question, (bool, Instant)>>,
    /// Bumped by every invalidation: an answer read before a change was announced is not
    /// cached after it.
    generation: AtomicU64,
}

impl CachedDirectory {
    /// The cache over `inner`, emptied whenever `bus` carries [`BusMessage::Directory`]
    /// (a task on the current runtime listens until the bus closes).
    pub fn new(
        inner: Arc<dyn AgentDirectory>,
        ttl: Duration,
        mut bus: broadcast::Receiver<Arc<BusMessage>>,
    ) -> Arc<Self> {
        let cache =
            Arc::new(Self { inner, ttl, cache: Mutex::new(HashMap::new()), generation: AtomicU64::new(0) });
        let weak = Arc::downgrade(&cache);
        tokio::spawn(async move {
            loop {
                let heard = bus.recv().await;
                let Some(cache) = weak.upgrade() else { return };
                match heard {
                    Ok(m) if matches!(*m, BusMessage::Directory) => cache.invalidate(),
                    Ok(_) => {}
                    // Missed messages may have been directory changes.
                    Err(broadcast::error::RecvError::Lagged(_)) => cache.invalidate(),
                    Err(broadcast::error::RecvError::Closed) => {
                        tracing::warn!("milter: the bus closed; directory answers now live for their TTL");
                        return;
                    }
                }
            }
        });
        cache
    }

    /// Forgets every cached answer.
    pub fn invalidate(&self) {
        if let Ok(mut c) = self.cache.lock() {
            self.generation.fetch_add(1, Ordering::SeqCst);
            c.clear();
        }
    }

    async fn answer(&self, question: Question) -> Result<bool, DirectoryError> {
        let generation = self.generation.load(Ordering::SeqCst);
        if let Ok(c) = self.cache.lock()
            && let Some((answer, at)) = c.get(&question)
            && at.elapsed() < self.ttl
        {
            return Ok(*answer);
        }
        let answer = match &question {
            Question::Domain(d) => self.inner.is_agent_domain(d).await?,
            Question::Agent(a) => self.inner.is_live_agent(a).await?,
        };
        if let Ok(mut c) = self.cache.lock()
            && self.generation.load(Ordering::SeqCst) == generation
        {
            if c.len() >= MAX_CACHED {
                c.clear();
            }
            c.insert(question, (answer, Instant::now()));
        }
        Ok(answer)
    }
}

#[async_trait]
impl AgentDirectory for CachedDirectory {
    async fn is_agent_domain(&self, domain: &str) -> Result<bool, DirectoryError> {
        self.answer(Question::Domain(domain.to_owned())).await
    }

    async fn is_live_agent(&self, email: &str) -> Result<bool, DirectoryError> {
        self.answer(Question::Agent(email.to_owned())).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts the questions that reach it; fails while `failing`.
    #[derive(Default)]
    struct Counting {
        asked: AtomicUsize,
        failing: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl AgentDirectory for Counting {
        async fn is_agent_domain(&self, domain: &str) -> Result<bool, DirectoryError> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            if self.failing.load(Ordering::SeqCst) {
                return Err("down".into());
            }
            Ok(domain == "agents.test")
        }

        async fn is_live_agent(&self, email: &str) -> Result<bool, DirectoryError> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            Ok(email == "bot@agents.test")
        }
    }

    #[tokio::test]
    async fn answers_are_cached_until_the_bus_says_the_directory_changed() {
        let inner = Arc::new(Counting::default());
        let bus = postagent_core::bus::EventBus::new();
        let cached = CachedDirectory::new(inner.clone(), Duration::from_secs(60), bus.subscribe());
        for _ in 0..3 {
            assert!(cached.is_agent_domain("agents.test").await.expect("domain"));
            assert!(cached.is_live_agent("bot@agents.test").await.expect("agent"));
            assert!(!cached.is_live_agent("nobody@agents.test").await.expect("agent"));
        }
        assert_eq!(inner.asked.load(Ordering::SeqCst), 3, "each question asked once");
        bus.publish(BusMessage::Directory);
        // The listener runs on this runtime: wait until it has emptied the cache.
        for _ in 0..100 {
            if cached.cache.lock().expect("lock").is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(cached.is_live_agent("bot@agents.test").await.expect("agent"));
        assert_eq!(inner.asked.load(Ordering::SeqCst), 4, "asked again after the change");
    }

    #[tokio::test]
    async fn failures_and_expired_answers_are_asked_again() {
        let inner = Arc::new(Counting::default());
        let bus = postagent_core::bus::EventBus::new();
        let cached = CachedDirectory::new(inner.clone(), Duration::ZERO, bus.subscribe());
        assert!(cached.is_agent_domain("agents.test").await.expect("domain"));
        assert!(cached.is_agent_domain("agents.test").await.expect("domain"));
        assert_eq!(inner.asked.load(Ordering::SeqCst), 2, "a zero TTL caches nothing");
        let cached = CachedDirectory::new(inner.clone(), Duration::from_secs(60), bus.subscribe());
        inner.failing.store(true, Ordering::SeqCst);
        assert!(cached.is_agent_domain("agents.test").await.is_err());
        inner.failing.store(false, Ordering::SeqCst);
        assert!(cached.is_agent_domain("agents.test").await.expect("domain"), "the failure was not kept");
    }
}
