//! A steady SMTP load: one 1 KB message every `1/rate` s, each on its own connection (as
//! senders on the internet do), sent by a task per message so a slow answer does not delay
//! the next one. `smtp-source -w` can only pace whole seconds, in bursts of every session at
//! once; this spreads the messages evenly.

use crate::probe::send_smtp;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Messages in flight at most (connections to Postfix's smtpd); past that the load waits and
/// the achieved rate falls below the asked one, which the report shows.
const IN_FLIGHT: usize = 400;

#[derive(Debug, Clone, Default)]
pub struct Load {
    pub asked_rate: u32,
    pub sent: u32,
    pub failed: u32,
    /// From the first message to the last one's start.
    pub seconds: f64,
}

impl Load {
    pub fn achieved_rate(&self) -> f64 {
        f64::from(self.sent) / self.seconds.max(f64::EPSILON)
    }
}

/// Starts the load; the handle ends once every message is answered.
pub fn start(addr: SocketAddr, rate: u32, seconds: u32, token: String) -> tokio::task::JoinHandle<Load> {
    tokio::spawn(async move {
        let rate = rate.max(1);
        let total = rate * seconds.max(1);
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        let mut tasks = tokio::task::JoinSet::new();
        let t0 = Instant::now();
        for n in 0..total {
            tick.tick().await;
            let Ok(slot) = slots.clone().acquire_owned().await else { break };
            let token = token.clone();
            tasks.spawn(async move {
                let sent = send_smtp(addr, &format!("load {n} {token}"), &format!("load-{n}-{token}")).await;
                drop(slot);
                sent.is_ok()
            });
        }
        // The rate is over the span the messages were sent in, not until the last answer.
        let seconds = t0.elapsed().as_secs_f64();
        let (mut sent, mut failed) = (0, 0);
        while let Some(ok) = tasks.join_next().await {
            match ok {
                Ok(true) => sent += 1,
                _ => failed += 1,
            }
        }
        Load { asked_rate: rate, sent, failed, seconds }
    })
}
