//! The tracker through its messages, with probe recipients standing in for
//! peers and a scripted worker standing in for the node supervisor.

use std::time::Duration;

use actix::{Actor, Addr, Context, Handler, MessageResult, Recipient, ResponseFuture};

use super::*;
use crate::api::events::{
    AgentStandbyRequest, AgentStandbyResponse, AgentWelcomeRequest, AgentWelcomeResponse,
    CheckConfigurationRequest, CheckConfigurationResponse, GetCrashesRequest, GetCrashesResponse,
    GetNodesRequest, GetNodesResponse, NodeDispatchRequest, NodeDispatchResponse, RestartRequest,
    RestartResponse, SetConfigurationRequest, SetConfigurationResponse,
};
use crate::api::events::{Request, Response};
use crate::api::types::Configuration;
use crate::testing::{eventually, Probe, Seen};

/// Answers get_nodes at once, set_configuration after the next of
/// `delays` (then after `delay`), marking each result with its call number
/// in `node`.
struct Worker {
    delay: Duration,
    delays: std::collections::VecDeque<Duration>,
    calls: u32,
}

impl Actor for Worker {
    type Context = Context<Self>;
}

impl Handler<GetNodesRequest> for Worker {
    type Result = MessageResult<GetNodesRequest>;
    fn handle(&mut self, r: GetNodesRequest, _: &mut Context<Self>) -> Self::Result {
        MessageResult(GetNodesResponse {
            result: ApiResult::ok(r.reqid.clone(), "w"),
            reqid: r.reqid,
        })
    }
}

impl Handler<SetConfigurationRequest> for Worker {
    type Result = ResponseFuture<SetConfigurationResponse>;
    fn handle(&mut self, r: SetConfigurationRequest, _: &mut Context<Self>) -> Self::Result {
        let delay = self.delays.pop_front().unwrap_or(self.delay);
        self.calls += 1;
        let call = self.calls;
        Box::pin(async move {
            actix_rt::time::sleep(delay).await;
            let mut result = ApiResult::ok(r.reqid.clone(), "w");
            result.node = Some(format!("call {call}"));
            SetConfigurationResponse {
                result,
                reqid: r.reqid,
            }
        })
    }
}

/// Requests the worker answers with a plain success.
macro_rules! answered_ok {
    ($($req:ident => $resp:ident),*) => {$(
        impl Handler<$req> for Worker {
            type Result = MessageResult<$req>;
            fn handle(&mut self, r: $req, _: &mut Context<Self>) -> Self::Result {
                MessageResult($resp {
                    result: ApiResult::ok(r.reqid.clone(), "w"),
                    reqid: r.reqid,
                })
            }
        }
    )*};
}

answered_ok!(
    CheckConfigurationRequest => CheckConfigurationResponse,
    AgentWelcomeRequest => AgentWelcomeResponse,
    AgentStandbyRequest => AgentStandbyResponse,
    RestartRequest => RestartResponse,
    NodeDispatchRequest => NodeDispatchResponse,
    GetCrashesRequest => GetCrashesResponse
);

const PEER_A: PeerId = PeerId(1);
const PEER_B: PeerId = PeerId(2);

fn tracker(delay_ms: u64, timeout_ms: u64, max_in_flight: usize) -> Addr<Tracker> {
    tracker_with(&[], delay_ms, timeout_ms, max_in_flight)
}

fn tracker_with(
    delays_ms: &[u64],
    delay_ms: u64,
    timeout_ms: u64,
    max_in_flight: usize,
) -> Addr<Tracker> {
    let w = Worker {
        delay: Duration::from_millis(delay_ms),
        delays: delays_ms
            .iter()
            .map(|&d| Duration::from_millis(d))
            .collect(),
        calls: 0,
    }
    .start();
    Tracker::new(
        TrackerSettings {
            instance: "agent-t".into(),
            request_timeout: Duration::from_millis(timeout_ms),
            max_in_flight,
        },
        Workers::all(&w),
    )
    .start()
}

fn set_config(reqid: &str) -> Request {
    Request::SetConfiguration(SetConfigurationRequest {
        reqid: reqid.into(),
        config: Configuration::default(),
    })
}

fn get_nodes(reqid: &str) -> Request {
    Request::GetNodes(GetNodesRequest {
        reqid: reqid.into(),
    })
}

fn track(peer: PeerId, request: Request, to: &Recipient<Outbound>) -> Track {
    Track {
        peer,
        reply_to: to.clone(),
        request,
    }
}

fn responses(seen: &Seen<Outbound>) -> Vec<Response> {
    seen.all()
        .into_iter()
        .filter_map(|o| match o {
            Outbound::Response(r) => Some(r),
            Outbound::Notification(_) => None,
        })
        .collect()
}

#[actix_rt::test]
async fn each_response_goes_to_its_own_peer_once() {
    // On the runtime's paused clock: "nothing more arrives" is checked once
    // every task is idle, not after a guess at the machine's speed.
    tokio::time::pause();
    let t = tracker(0, 1_000, 10);
    let (a, seen_a) = Probe::<Outbound>::start();
    let (b, seen_b) = Probe::<Outbound>::start();
    t.do_send(track(PEER_A, get_nodes("r1"), &a));
    t.do_send(track(PEER_B, get_nodes("r1"), &b));
    t.do_send(track(PEER_A, set_config("r2"), &a));
    t.do_send(track(
        PEER_B,
        Request::AgentWelcome(AgentWelcomeRequest { reqid: "r3".into() }),
        &b,
    ));
    t.do_send(track(
        PEER_B,
        Request::AgentStandby(AgentStandbyRequest { reqid: "r4".into() }),
        &b,
    ));
    eventually(
        "seen_a.len() == 2 && seen_b.len() == 3",
        Duration::from_secs(2),
        || seen_a.len() == 2 && seen_b.len() == 3,
    )
    .await;
    let ra = responses(&seen_a);
    let mut ids: Vec<_> = ra.iter().map(|r| (r.stem, r.reqid.0.clone())).collect();
    ids.sort_by_key(|(_, id)| id.clone());
    assert_eq!(
        ids,
        [
            (Stem::GetNodes, "r1".to_owned()),
            (Stem::SetConfiguration, "r2".to_owned())
        ]
    );
    // Independent requests may finish in any order.
    let mut rb: Vec<_> = responses(&seen_b)
        .into_iter()
        .map(|r| (r.reqid.0, r.stem))
        .collect();
    rb.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        rb,
        [
            ("r1".to_owned(), Stem::GetNodes),
            ("r3".to_owned(), Stem::AgentWelcome),
            ("r4".to_owned(), Stem::AgentStandby)
        ]
    );
    assert!(responses(&seen_a).iter().all(|r| r.result.success));
    // Nothing more arrives.
    actix_rt::time::sleep(Duration::from_millis(50)).await;
    assert_eq!((seen_a.len(), seen_b.len()), (2, 3));
}

#[actix_rt::test]
async fn duplicate_reqid_in_flight_is_refused_but_other_peers_may_reuse_it() {
    let t = tracker(100, 1_000, 10);
    let (a, seen_a) = Probe::<Outbound>::start();
    let (b, seen_b) = Probe::<Outbound>::start();
    t.do_send(track(PEER_A, set_config("r1"), &a));
    t.do_send(track(PEER_A, set_config("r1"), &a));
    t.do_send(track(PEER_B, set_config("r1"), &b));
    eventually(
        "seen_a.len() == 2 && seen_b.len() == 1",
        Duration::from_secs(2),
        || seen_a.len() == 2 && seen_b.len() == 1,
    )
    .await;
    let ra = responses(&seen_a);
    assert!(!ra[0].result.success);
    assert!(ra[0].result.error.contains("already in flight"));
    assert_eq!(ra[0].result.instance, "agent-t");
    assert!(ra[1].result.success);
    assert!(responses(&seen_b)[0].result.success);
    // Once finished, the reqid may be used again.
    t.do_send(track(PEER_A, get_nodes("r1"), &a));
    eventually("seen_a.len() == 3", Duration::from_secs(2), || {
        seen_a.len() == 3
    })
    .await;
    assert!(responses(&seen_a)[2].result.success);
}

#[actix_rt::test]
async fn deadline_answers_timed_out_and_drops_the_late_result() {
    // On the runtime's paused clock: deadlines, not the machine's speed.
    tokio::time::pause();
    let t = tracker(200, 20, 10);
    let (a, seen) = Probe::<Outbound>::start();
    t.do_send(track(PEER_A, set_config("slow"), &a));
    eventually("seen.len() == 1", Duration::from_secs(2), || {
        seen.len() == 1
    })
    .await;
    let r = &responses(&seen)[0];
    assert_eq!(
        (r.stem, r.reqid.0.as_str()),
        (Stem::SetConfiguration, "slow")
    );
    assert!(!r.result.success);
    assert!(r.result.error.contains("timed out"), "{}", r.result.error);
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.len(), 1, "the late result must not be sent");
}

#[actix_rt::test]
async fn each_request_times_out_on_its_own_deadline() {
    // On the runtime's paused clock: deadlines, not the machine's speed.
    tokio::time::pause();
    // Requests sent 100 ms apart, each slower than the deadline: each times
    // out on its own deadline, not on the first one's or the last one's.
    let t = tracker(10_000, 300, 10);
    let (a, seen) = Probe::<Outbound>::start();
    let start = tokio::time::Instant::now();
    for id in ["a", "b", "c"] {
        t.do_send(track(PEER_A, set_config(id), &a));
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    let mut at = Vec::new();
    for n in 1..=3 {
        eventually("seen.len() == n", Duration::from_secs(2), || {
            seen.len() == n
        })
        .await;
        at.push(start.elapsed().as_millis());
    }
    let ids: Vec<_> = responses(&seen).into_iter().map(|r| r.reqid.0).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert!(responses(&seen)
        .iter()
        .all(|r| r.result.error.contains("timed out")));
    // Deadlines at 300, 400, 500 ms; eventually polls every few ms.
    for (i, ms) in at.iter().enumerate() {
        let due = 300 + 100 * i as u128;
        assert!(
            *ms >= due && *ms < due + 90,
            "answer {i} at {ms} ms: {at:?}"
        );
    }
}

#[actix_rt::test]
async fn a_late_answer_never_goes_to_a_later_request_with_the_same_reqid() {
    // On the runtime's paused clock: deadlines, not the machine's speed.
    tokio::time::pause();
    // The first call times out at 400 ms and answers at 1000 ms; by then
    // the peer has sent the reqid again (at about 800 ms), and that call
    // answers at about 1150 ms, within its own deadline.
    let t = tracker_with(&[1_000, 350], 0, 400, 10);
    let (a, seen) = Probe::<Outbound>::start();
    t.do_send(track(PEER_A, set_config("r"), &a));
    eventually("seen.len() == 1", Duration::from_secs(2), || {
        seen.len() == 1
    })
    .await;
    assert!(responses(&seen)[0].result.error.contains("timed out"));
    actix_rt::time::sleep(Duration::from_millis(400)).await;
    t.do_send(track(PEER_A, set_config("r"), &a));
    eventually("seen.len() == 2", Duration::from_secs(2), || {
        seen.len() == 2
    })
    .await;
    let second = &responses(&seen)[1];
    assert!(second.result.success, "{second:?}");
    assert_eq!(second.result.node.as_deref(), Some("call 2"));
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.len(), 2);
}

#[actix_rt::test]
async fn beyond_the_in_flight_limit_is_overloaded() {
    let t = tracker(100, 1_000, 2);
    let (a, seen) = Probe::<Outbound>::start();
    for id in ["a", "b", "c"] {
        t.do_send(track(PEER_A, set_config(id), &a));
    }
    eventually("seen.len() == 3", Duration::from_secs(2), || {
        seen.len() == 3
    })
    .await;
    let rs = responses(&seen);
    assert_eq!(rs[0].reqid.0, "c");
    assert_eq!(rs[0].result.error, "overloaded");
    assert!(rs[1].result.success && rs[2].result.success);
}

#[actix_rt::test]
async fn invalid_requests_are_answered_with_their_error() {
    let t = tracker(0, 1_000, 2);
    let (a, seen) = Probe::<Outbound>::start();
    t.do_send(track(
        PEER_A,
        Request::Invalid {
            stem: Stem::SetConfiguration,
            reqid: "bad".into(),
            error: "invalid configuration: x".into(),
        },
        &a,
    ));
    eventually("seen.len() == 1", Duration::from_secs(2), || {
        seen.len() == 1
    })
    .await;
    let r = &responses(&seen)[0];
    assert_eq!(r.stem, Stem::SetConfiguration);
    assert_eq!(r.result.error, "invalid configuration: x");
}

#[actix_rt::test]
async fn closed_peer_gets_nothing_and_its_slots_are_freed() {
    // On the runtime's paused clock: "nothing more arrives" is checked once
    // every task is idle, not after a guess at the machine's speed.
    tokio::time::pause();
    let t = tracker(100, 1_000, 1);
    let (a, seen) = Probe::<Outbound>::start();
    t.do_send(track(PEER_A, set_config("r1"), &a));
    t.do_send(PeerClosed { peer: PEER_A });
    // The limit counts per peer: the closed peer's slot is free again.
    t.do_send(track(PEER_A, get_nodes("r2"), &a));
    eventually("seen.len() == 1", Duration::from_secs(2), || {
        seen.len() == 1
    })
    .await;
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    let rs = responses(&seen);
    assert_eq!(rs.len(), 1, "{rs:?}");
    assert_eq!(rs[0].reqid.0, "r2");
}
