//! Helpers for actor-level tests, here and in embedding applications: a
//! `Probe` actor that records the messages it receives, and a bounded
//! wait for a condition, `eventually`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;

/// The messages a `Probe` has received, in order.
pub struct Seen<M>(Arc<Mutex<Vec<M>>>);

impl<M> Clone for Seen<M> {
    fn clone(&self) -> Self {
        Seen(Arc::clone(&self.0))
    }
}

impl<M: Clone> Seen<M> {
    /// A copy of every message so far.
    pub fn all(&self) -> Vec<M> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Whether any message so far satisfies `f`.
    pub fn any(&self, f: impl Fn(&M) -> bool) -> bool {
        self.0.lock().map(|v| v.iter().any(f)).unwrap_or(false)
    }

    pub fn len(&self) -> usize {
        self.0.lock().map(|v| v.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An actor that records every `M` it receives.
pub struct Probe<M> {
    seen: Seen<M>,
}

impl<M> Probe<M>
where
    M: Message<Result = ()> + Send + Clone + Unpin + 'static,
{
    /// Starts a probe; returns its recipient and what it has seen.
    pub fn start() -> (Recipient<M>, Seen<M>) {
        let seen = Seen(Arc::new(Mutex::new(Vec::new())));
        let addr = Probe { seen: seen.clone() }.start();
        (addr.recipient(), seen)
    }
}

impl<M: Unpin + 'static> Actor for Probe<M> {
    type Context = Context<Self>;
}

impl<M> Handler<M> for Probe<M>
where
    M: Message<Result = ()> + Send + Unpin + 'static,
{
    type Result = ();

    fn handle(&mut self, msg: M, _: &mut Context<Self>) {
        if let Ok(mut v) = self.seen.0.lock() {
            v.push(msg);
        }
    }
}

/// Polls `check` every few milliseconds until it holds; after `limit`
/// panics naming `what` it waited for. The limit is on the machine's clock,
/// so that a test on tokio's paused clock still ends.
pub async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not so within {limit:?}");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
}
