//! `Tracker`: every request in flight, by the peer that sent it and its
//! reqid. It refuses a reqid already in flight from the same peer and
//! requests beyond the per-peer limit, hands the work to the actor that does
//! it, and routes every response back to its peer exactly once — the answer,
//! or `request timed out` when the deadline passes first (a late answer is
//! then dropped). It logs the `rx`/`tx` line of every request and response.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::actors::peer::{PeerClosed, PeerId};
use crate::api::events::{
    AgentStandbyRequest, AgentWelcomeRequest, GetNodesRequest, Outbound, Request, Response,
    SetConfigurationRequest, Stem,
};
use crate::api::types::{ApiResult, ReqId};

/// Sent by a peer (or an embedding application) for every decoded request.
/// The response goes to `reply_to`, once.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Track {
    pub peer: PeerId,
    pub reply_to: Recipient<Outbound>,
    pub request: Request,
}

/// Where the tracker sends each kind of request.
#[derive(Clone)]
pub struct Workers {
    pub set_configuration: Recipient<SetConfigurationRequest>,
    pub get_nodes: Recipient<GetNodesRequest>,
    pub agent_welcome: Recipient<AgentWelcomeRequest>,
    pub agent_standby: Recipient<AgentStandbyRequest>,
}

/// The tracker's limits.
#[derive(Debug, Clone)]
pub struct TrackerSettings {
    /// `Result$instance` of every response.
    pub instance: String,
    pub request_timeout: Duration,
    pub max_in_flight: usize,
}

struct Entry {
    reply_to: Recipient<Outbound>,
    stem: Stem,
    since: Instant,
}

pub struct Tracker {
    settings: TrackerSettings,
    workers: Workers,
    in_flight: HashMap<(PeerId, ReqId), Entry>,
    per_peer: HashMap<PeerId, usize>,
    /// Requests were tracked or peers closed since memory was last handed
    /// back.
    busy: bool,
}

/// Hands freed heap pages back to the system after a burst (glibc keeps
/// them otherwise, and a long-lived daemon would stay at its peak).
fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How often an idle tracker hands memory left from a burst back.
const TRIM_INTERVAL: Duration = Duration::from_secs(2);

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
            busy: false,
        }
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
        reply_to.do_send(Outbound::Response(Response {
            stem,
            reqid,
            result,
        }));
    }

    fn dispatch(&self, request: Request) -> Option<Work> {
        let t = self.settings.request_timeout;
        let w = &self.workers;
        Some(match request {
            Request::SetConfiguration(r) => {
                let f = w.set_configuration.send(r).timeout(t);
                Box::pin(async move { f.await.map(Response::from) })
            }
            Request::GetNodes(r) => {
                let f = w.get_nodes.send(r).timeout(t);
                Box::pin(async move { f.await.map(Response::from) })
            }
            Request::AgentWelcome(r) => {
                let f = w.agent_welcome.send(r).timeout(t);
                Box::pin(async move { f.await.map(Response::from) })
            }
            Request::AgentStandby(r) => {
                let f = w.agent_standby.send(r).timeout(t);
                Box::pin(async move { f.await.map(Response::from) })
            }
            Request::Invalid { .. } => return None,
        })
    }

    fn finish(&mut self, peer: PeerId, reqid: ReqId, outcome: Result<Response, MailboxError>) {
        let Some(entry) = self.in_flight.remove(&(peer, reqid.clone())) else {
            tracing::info!(%peer, %reqid, "dropped a response: its peer has gone");
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
        tracing::debug!(%peer, %reqid, elapsed = ?entry.since.elapsed(), "request done");
        log_tx(peer, response.stem, &reqid, &response.result);
        entry.reply_to.do_send(Outbound::Response(response));
    }
}

fn log_tx(peer: PeerId, stem: Stem, reqid: &ReqId, result: &ApiResult) {
    tracing::info!(%peer, %reqid, instance = %result.instance, "tx {}_response: {}", stem.as_str(), result.summary());
}

impl Actor for Tracker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(TRIM_INTERVAL, |act, _| {
            if act.busy && act.in_flight.is_empty() {
                act.busy = false;
                act.in_flight.shrink_to_fit();
                release_free_memory();
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
        tracing::info!(%peer, %reqid, "rx {}_request", stem.as_str());
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
        let Some(work) = self.dispatch(request) else {
            return;
        };
        self.in_flight.insert(
            key,
            Entry {
                reply_to,
                stem,
                since: Instant::now(),
            },
        );
        *self.per_peer.entry(peer).or_insert(0) += 1;
        self.busy = true;
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
                outcome,
            });
        });
    }
}

/// Sent by the task awaiting a worker to the tracker itself: the request is
/// done (or timed out, or its worker has gone).
#[derive(Message)]
#[rtype(result = "()")]
struct Finished {
    peer: PeerId,
    reqid: ReqId,
    outcome: Result<Response, MailboxError>,
}

impl Handler<Finished> for Tracker {
    type Result = ();

    fn handle(&mut self, msg: Finished, _: &mut Context<Self>) {
        self.finish(msg.peer, msg.reqid, msg.outcome);
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
