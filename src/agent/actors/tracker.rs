//! `Tracker`: every request in flight, by the peer that sent it and its
//! reqid. It refuses a reqid already in flight from the same peer and
//! requests beyond the per-peer limit, hands the work to the actor that does
//! it, and routes every response back to its peer exactly once — the answer,
//! or `request timed out` when the deadline passes first (a late answer is
//! then dropped). Deadlines are kept by one timer for all requests, armed
//! for the oldest one (answers come at most a hundredth of the timeout
//! late), not by a timer each. It logs the `rx`/`tx` line of
//! every request and response.

use std::collections::{hash_map, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

// The runtime's clock, which tests can pause and advance.
use std::sync::Arc;
use tokio::time::Instant;

use actix::prelude::*;

use crate::agent::actors::messages::{Outbound, PeerClosed, PeerId, Track};
use crate::api::events::{self, with_requests, Request, Response, Stem};
use crate::api::types::{ApiResult, ReqId};

macro_rules! declare_workers {
    ($(
        $(#[$doc:meta])*
        $stem:ident($snake:ident) $req:ident { $($field:ident: $ty:ty = $what:literal $($record:ident)?),* } -> $resp:ident;
    )*) => {
        /// Where the tracker sends each kind of request: one recipient per
        /// request of the API (named by its stem).
        #[derive(Clone)]
        pub struct Workers {
            $(pub $snake: Recipient<events::$req>,)*
        }

        impl Workers {
            /// One actor that does the work of every request.
            pub fn all<A>(addr: &Addr<A>) -> Workers
            where
                A: Actor<Context = Context<A>> $(+ Handler<events::$req>)*,
            {
                Workers {
                    $($snake: addr.clone().recipient(),)*
                }
            }

            /// Sends a request to its worker; `None` for an invalid one,
            /// which the tracker answers itself.
            fn dispatch(&self, request: Request) -> Option<Work> {
                Some(match request {
                    $(Request::$stem(r) => {
                        let f = self.$snake.send(r);
                        Box::pin(async move { f.await.map(Response::from) })
                    })*
                    Request::Invalid { .. } => return None,
                })
            }
        }
    };
}

with_requests!(declare_workers);

/// The tracker's limits.
#[derive(Debug, Clone)]
pub struct TrackerSettings {
    /// `Result$instance` of every response.
    pub instance: String,
    pub request_timeout: Duration,
    pub max_in_flight: usize,
}

struct Pending {
    reply_to: Recipient<Outbound>,
    stem: Stem,
    since: Instant,
    /// Tells this request from an earlier one with the same reqid whose
    /// late answer may still come.
    seq: u64,
}

pub struct Tracker {
    settings: TrackerSettings,
    workers: Workers,
    in_flight: HashMap<(PeerId, ReqId), Pending>,
    per_peer: HashMap<PeerId, usize>,
    next_seq: u64,
    /// The deadline timer is armed.
    sweeping: bool,
    /// Requests were tracked or peers closed since memory was last handed
    /// back.
    busy: bool,
    /// Where each answered request is counted, with its latency.
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// How often an idle tracker hands memory left from a burst back.
const TRIM_INTERVAL: Duration = Duration::from_secs(2);

/// The shortest wait between two deadline sweeps.
const MIN_SWEEP: Duration = Duration::from_millis(1);

/// Table capacity above which a mostly empty table is shrunk.
const SHRINK_ABOVE: usize = 4096;

type Work = Pin<Box<dyn Future<Output = Result<Response, MailboxError>>>>;

impl Tracker {
    pub fn new(settings: TrackerSettings, workers: Workers) -> Self {
        Tracker {
            settings,
            workers,
            in_flight: HashMap::new(),
            per_peer: HashMap::new(),
            next_seq: 0,
            sweeping: false,
            busy: false,
            metrics: None,
        }
    }

    /// Counts each answered request, by kind and result, with its latency.
    pub fn with_metrics(mut self, metrics: Option<Arc<crate::metrics::Metrics>>) -> Self {
        self.metrics = metrics;
        self
    }

    fn answer_now(
        &self,
        peer: PeerId,
        reply_to: &Recipient<Outbound>,
        stem: Stem,
        reqid: ReqId,
        error: String,
    ) {
        let result = ApiResult::failure(reqid.clone(), &self.settings.instance, error);
        log_tx(peer, stem, &reqid, &result);
        if let Some(m) = &self.metrics {
            m.request(stem.as_str(), false, Duration::ZERO);
        }
        reply_to.do_send(Outbound::Response(Response {
            stem,
            reqid,
            result,
        }));
    }

    /// Answers the request `(peer, reqid)`, if it is still in flight (and,
    /// with `seq`, if it is that request and not a later one that reuses
    /// the reqid).
    fn finish(
        &mut self,
        peer: PeerId,
        reqid: ReqId,
        seq: Option<u64>,
        outcome: Result<Response, MailboxError>,
    ) {
        // One lookup on the hot path; a mismatch (a reused reqid) is rare.
        let (entry, (peer, reqid)) = match self.in_flight.entry((peer, reqid)) {
            hash_map::Entry::Occupied(o) if seq.is_none_or(|s| s == o.get().seq) => {
                let (key, entry) = o.remove_entry();
                (Some(entry), key)
            }
            hash_map::Entry::Occupied(o) => (None, o.key().clone()),
            hash_map::Entry::Vacant(v) => (None, v.into_key()),
        };
        let Some(entry) = entry else {
            tracing::info!(%peer, %reqid, "dropped a response: its request timed out or its peer has gone");
            return;
        };
        if let Some(n) = self.per_peer.get_mut(&peer) {
            *n = n.saturating_sub(1);
        }
        // A burst leaves a large table behind: give the memory back once
        // it has drained.
        if self.in_flight.capacity() > SHRINK_ABOVE
            && self.in_flight.len() < self.in_flight.capacity() / 8
        {
            self.in_flight.shrink_to(self.in_flight.len() * 2);
            self.per_peer.shrink_to_fit();
        }
        let instance = &self.settings.instance;
        let response = match outcome {
            Ok(r) => r,
            Err(MailboxError::Timeout) => Response {
                stem: entry.stem,
                reqid: reqid.clone(),
                result: ApiResult::failure(
                    reqid.clone(),
                    instance,
                    format!(
                        "request timed out after {:.1} s",
                        self.settings.request_timeout.as_secs_f64()
                    ),
                ),
            },
            Err(MailboxError::Closed) => Response {
                stem: entry.stem,
                reqid: reqid.clone(),
                result: ApiResult::failure(reqid.clone(), instance, "agent is shutting down"),
            },
        };
        let took = entry.since.elapsed();
        tracing::debug!(%peer, %reqid, elapsed = ?took, "request done");
        if let Some(m) = &self.metrics {
            m.request(response.stem.as_str(), response.result.success, took);
        }
        log_tx(peer, response.stem, &reqid, &response.result);
        entry.reply_to.do_send(Outbound::Response(response));
    }
}

impl Tracker {
    /// Answers every request past its deadline with `request timed out`,
    /// then arms the timer again for the oldest one left.
    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let timeout = self.settings.request_timeout;
        let expired: Vec<(PeerId, ReqId)> = self
            .in_flight
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.since) >= timeout)
            .map(|(k, _)| k.clone())
            .collect();
        for (peer, reqid) in expired {
            self.finish(peer, reqid, None, Err(MailboxError::Timeout));
        }
        match self.in_flight.values().map(|e| e.since).min() {
            Some(oldest) => {
                // Not sooner than a hundredth of the timeout: each sweep
                // looks at every request in flight, and deadlines spread
                // finely over the timeout must not make it run back to back.
                let wait = (oldest + timeout)
                    .saturating_duration_since(now)
                    .max(timeout / 100)
                    .max(MIN_SWEEP);
                ctx.run_later(wait, |act, ctx| act.sweep(ctx));
            }
            None => self.sweeping = false,
        }
    }
}

fn log_tx(peer: PeerId, stem: Stem, reqid: &ReqId, result: &ApiResult) {
    tracing::debug!(%peer, %reqid, instance = %result.instance, "tx {}_response: {}", stem.as_str(), result.summary());
}

impl Actor for Tracker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(TRIM_INTERVAL, |act, _| {
            if act.busy && act.in_flight.is_empty() {
                act.busy = false;
                act.in_flight.shrink_to_fit();
                crate::memory::release_free_memory();
            }
        });
    }
}

impl Handler<Track> for Tracker {
    type Result = ();

    fn handle(&mut self, msg: Track, ctx: &mut Context<Self>) {
        let Track {
            peer,
            reply_to,
            request,
        } = msg;
        let stem = request.stem();
        let reqid = request.reqid().clone();
        tracing::debug!(%peer, %reqid, "rx {}_request", stem.as_str());
        let key = (peer, reqid.clone());
        if self.in_flight.contains_key(&key) {
            let error = format!("request {reqid} is already in flight from this peer");
            self.answer_now(peer, &reply_to, stem, reqid, error);
            return;
        }
        let count = self.per_peer.get(&peer).copied().unwrap_or(0);
        if count >= self.settings.max_in_flight {
            self.answer_now(peer, &reply_to, stem, reqid, "overloaded".to_owned());
            return;
        }
        if let Request::Invalid { error, .. } = &request {
            let error = error.clone();
            self.answer_now(peer, &reply_to, stem, reqid, error);
            return;
        }
        let Some(work) = self.workers.dispatch(request) else {
            return;
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight.insert(
            key,
            Pending {
                reply_to,
                stem,
                since: Instant::now(),
                seq,
            },
        );
        *self.per_peer.entry(peer).or_insert(0) += 1;
        self.busy = true;
        if !self.sweeping {
            self.sweeping = true;
            ctx.run_later(self.settings.request_timeout, |act, ctx| act.sweep(ctx));
        }
        // Await the worker on its own task, not in this actor's context:
        // actix polls every future of a context on each wake-up, which
        // would make thousands of requests in flight cost quadratic time.
        // The outcome comes back to this actor as `Finished`.
        let me = ctx.address();
        actix_rt::spawn(async move {
            let outcome = work.await;
            me.do_send(Finished {
                peer,
                reqid,
                seq,
                outcome,
            });
        });
    }
}

/// Sent by the task awaiting a worker to the tracker itself: the request is
/// done (or its worker has gone).
#[derive(Message)]
#[rtype(result = "()")]
struct Finished {
    peer: PeerId,
    reqid: ReqId,
    seq: u64,
    outcome: Result<Response, MailboxError>,
}

impl Handler<Finished> for Tracker {
    type Result = ();

    fn handle(&mut self, msg: Finished, _: &mut Context<Self>) {
        self.finish(msg.peer, msg.reqid, Some(msg.seq), msg.outcome);
    }
}

impl Handler<PeerClosed> for Tracker {
    type Result = ();

    fn handle(&mut self, msg: PeerClosed, _: &mut Context<Self>) {
        // A closed connection frees its buffers: worth a trim once idle.
        self.busy = true;
        self.per_peer.remove(&msg.peer);
        let before = self.in_flight.len();
        self.in_flight.retain(|(p, _), _| *p != msg.peer);
        let dropped = before - self.in_flight.len();
        if dropped > 0 {
            tracing::info!(peer = %msg.peer, dropped, "peer gone with requests in flight; their work goes on");
        }
    }
}

#[cfg(test)]
mod tests;
