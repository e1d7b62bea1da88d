//! The core through its messages: fake agents behind `AgentLink`s, a probe
//! subscribed through the real hub in place of zeek-client.

use std::sync::{Arc, Mutex};

use super::*;
use crate::api::events::Stem;
use crate::api::types::{Addr as ZeekAddr, ApiResult, Node, Role};
use crate::broker::message::{Event, CONTROLLER_TOPIC};
use crate::controller::actors::hub::Join;
use crate::controller::actors::messages::{ClientId, SendText};
use crate::controller::requests::Call;
use crate::testing::{eventually, Probe, Seen};

/// How a fake agent answers `set_configuration`.
#[derive(Clone, Copy)]
enum Answer {
    Success,
    Lost,
    Never,
    /// Announces `restart`, then answers it `unknown-event`.
    UnknownRestart,
    /// Its connection is gone, not yet noticed: every call is lost.
    Dead,
}

/// An agent that records what it was asked.
struct FakeAgent {
    name: String,
    asked: Arc<Mutex<Vec<Stem>>>,
    deploy: Answer,
    /// Where the configurations it is sent live (to see them shared).
    configs: Arc<Mutex<Vec<usize>>>,
}

impl Actor for FakeAgent {
    type Context = Context<Self>;
}

impl Handler<AgentCall> for FakeAgent {
    type Result = ResponseFuture<Result<Response, CallError>>;

    fn handle(&mut self, msg: AgentCall, _: &mut Context<Self>) -> Self::Result {
        let stem = msg.ask.stem();
        if let (Ask::SetConfiguration { config, .. }, Ok(mut c)) = (&msg.ask, self.configs.lock()) {
            c.push(Arc::as_ptr(config) as usize);
        }
        if let Ok(mut a) = self.asked.lock() {
            a.push(stem);
        }
        let reqid = msg.ask.reqid().clone();
        let result = ApiResult::ok(reqid.clone(), &self.name);
        let answer = match (stem, self.deploy) {
            (_, Answer::Dead) => Err(CallError::Lost),
            (Stem::SetConfiguration, Answer::Lost) => Err(CallError::Lost),
            (Stem::Restart, Answer::UnknownRestart) => Err(CallError::Unsupported),
            (Stem::SetConfiguration, Answer::Never) => {
                return Box::pin(async move {
                    tokio::time::sleep(msg.timeout).await;
                    Err(CallError::TimedOut)
                })
            }
            _ => Ok(Response {
                stem,
                reqid,
                result,
            }),
        };
        Box::pin(async move { answer })
    }
}

impl Handler<CloseAgent> for FakeAgent {
    type Result = ();

    fn handle(&mut self, _: CloseAgent, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

struct Setup {
    core: Addr<Core>,
    seen: Seen<SendText>,
    dials: Seen<DialAgent>,
    _dir: tempfile::TempDir,
}

fn setup_with(snapshot: Snapshot, dir: tempfile::TempDir) -> Setup {
    let hub = Hub::default().start();
    let (probe, seen) = Probe::<SendText>::start();
    hub.do_send(Join {
        id: ClientId(1),
        subscriptions: vec![CONTROLLER_TOPIC.to_owned()],
        out: probe,
    });
    let path = dir.path().to_owned();
    let store = SyncArbiter::start(1, move || Store { dir: path.clone() });
    let settings = CoreSettings {
        request_timeout: Duration::from_secs(5),
        policy: PortPolicy::default(),
        dial_interval: Duration::from_secs(1),
    };
    let (dial, dials) = Probe::<DialAgent>::start();
    let core = Core::new(settings, hub, store, snapshot, dial).start();
    Setup {
        core,
        seen,
        dials,
        _dir: dir,
    }
}

fn setup() -> Setup {
    setup_with(Snapshot::default(), tempfile::tempdir().expect("tmp"))
}

/// A fake agent checked in at the core; returns what it gets asked.
fn agent(core: &Addr<Core>, id: u64, name: &str, deploy: Answer) -> Arc<Mutex<Vec<Stem>>> {
    agent_with(core, id, name, deploy, &[])
}

fn agent_with(
    core: &Addr<Core>,
    id: u64,
    name: &str,
    deploy: Answer,
    features: &[&str],
) -> Arc<Mutex<Vec<Stem>>> {
    fake_agent(core, id, name, deploy, features, Arc::default())
}

/// A fake agent that also records where each configuration it gets lives.
fn fake_agent(
    core: &Addr<Core>,
    id: u64,
    name: &str,
    deploy: Answer,
    features: &[&str],
    configs: Arc<Mutex<Vec<usize>>>,
) -> Arc<Mutex<Vec<Stem>>> {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let fake = FakeAgent {
        name: name.into(),
        asked: Arc::clone(&asked),
        deploy,
        configs,
    }
    .start();
    core.do_send(AgentUp {
        id: AgentConnId(id),
        name: name.into(),
        api_version: 1,
        host: IpAddr::from([127, 0, 0, 1]),
        peer: Some(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            40000 + id as u16,
        ))),
        listen_port: None,
        features: features.iter().map(|f| (*f).to_owned()).collect(),
        link: AgentLink {
            call: fake.clone().recipient(),
            close: fake.recipient(),
        },
    });
    asked
}

fn asked(a: &Arc<Mutex<Vec<Stem>>>) -> Vec<Stem> {
    a.lock().map(|v| v.clone()).unwrap_or_default()
}

fn two_agents() -> Configuration {
    let inst = |name: &str| Instance {
        name: name.into(),
        host: ZeekAddr(IpAddr::from([0, 0, 0, 0])),
        listen_port: None,
    };
    Configuration {
        id: "c1".into(),
        instances: vec![inst("a"), inst("b")],
        nodes: vec![
            Node::new("manager", "a", Role::Manager),
            Node::new("worker-1", "b", Role::Worker),
        ],
        zeromq: None,
    }
}

fn ask(core: &Addr<Core>, reqid: &str, call: Call) {
    core.do_send(ClientRequest {
        reqid: reqid.into(),
        call,
    });
}

/// The response events published so far: (name, reqid, second argument).
fn responses(seen: &Seen<SendText>) -> Vec<(String, String, Value)> {
    seen.all()
        .into_iter()
        .filter_map(|t| {
            let m = crate::broker::message::DataMessage::parse(&t.0).ok()?;
            let e = Event::from_value(&m.value)?;
            let name = e.name.rsplit("::").next()?.to_owned();
            Some((name, e.args[0].as_str()?.to_owned(), e.args[1].clone()))
        })
        .collect()
}

/// What a test reads of a Result: (success, error, instance, node).
type Seen4 = (bool, Option<String>, Option<String>, Option<String>);

/// Each Result of a response.
fn results(v: &Value) -> Vec<Seen4> {
    v.as_list()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let f = r.as_list().unwrap_or_default();
            let text = |i: usize| f.get(i).and_then(Value::as_str).map(str::to_owned);
            (
                f.get(1) == Some(&Value::Boolean(true)),
                text(4),
                text(2),
                text(5),
            )
        })
        .collect()
}

#[actix_rt::test]
async fn a_deployment_waits_until_every_configured_agent_is_ready() {
    let s = setup();
    let a = agent(&s.core, 1, "a", Answer::Success);
    ask(&s.core, "s1", Call::Stage(two_agents()));
    eventually(
        "responses(&s.seen).len() == 1",
        Duration::from_secs(2),
        || responses(&s.seen).len() == 1,
    )
    .await;
    ask(&s.core, "d1", Call::Deploy);
    eventually(
        "asked(&a) == [Stem::AgentWelcome]",
        Duration::from_secs(2),
        || asked(&a) == [Stem::AgentWelcome],
    )
    .await;
    // b is configured but not connected: nobody gets the configuration.
    ask(&s.core, "d2", Call::Deploy);
    eventually(
        "responses(&s.seen).len() == 2",
        Duration::from_secs(2),
        || responses(&s.seen).len() == 2,
    )
    .await;
    let (name, reqid, v) = &responses(&s.seen)[1];
    assert_eq!((name.as_str(), reqid.as_str()), ("deploy_response", "d2"));
    assert_eq!(
        results(v),
        [(
            false,
            Some("earlier deployment d1 still pending".into()),
            None,
            None
        )]
    );
    assert_eq!(asked(&a), [Stem::AgentWelcome]);
    let b = agent(&s.core, 2, "b", Answer::Success);
    eventually(
        "responses(&s.seen).len() == 3",
        Duration::from_secs(2),
        || responses(&s.seen).len() == 3,
    )
    .await;
    assert_eq!(asked(&a), [Stem::AgentWelcome, Stem::SetConfiguration]);
    assert_eq!(asked(&b), [Stem::AgentWelcome, Stem::SetConfiguration]);
    let (name, reqid, v) = &responses(&s.seen)[2];
    assert_eq!((name.as_str(), reqid.as_str()), ("deploy_response", "d1"));
    // One node-less success per agent (the fakes send no per-node
    // results), then the controller's own with the id.
    let r = results(v);
    assert_eq!(r.len(), 3, "{r:?}");
    assert_eq!(r[0].2.as_deref(), Some("a"));
    assert_eq!(r[1].2.as_deref(), Some("b"));
    assert_eq!(r[2], (true, None, None, None));
    // Deployed: get_configuration shows it, with the resolved host.
    ask(&s.core, "g", Call::GetConfiguration { deployed: true });
    eventually(
        "responses(&s.seen).len() == 4",
        Duration::from_secs(2),
        || responses(&s.seen).len() == 4,
    )
    .await;
    let (_, _, v) = &responses(&s.seen)[3];
    assert!(v.to_json().contains("127.0.0.1"), "{}", v.to_json());
}

#[actix_rt::test]
async fn an_agent_lost_mid_deploy_fails_its_part_at_once() {
    let s = setup();
    let _a = agent(&s.core, 1, "a", Answer::Success);
    let _b = agent(&s.core, 2, "b", Answer::Lost);
    ask(&s.core, "s1", Call::Stage(two_agents()));
    ask(&s.core, "d1", Call::Deploy);
    eventually(
        "responses(&s.seen).len() == 2",
        Duration::from_secs(2),
        || responses(&s.seen).len() == 2,
    )
    .await;
    let r = results(&responses(&s.seen)[1].2);
    assert_eq!(
        r[1],
        (
            false,
            Some("lost connection to agent b".into()),
            Some("b".into()),
            None
        )
    );
    // Every agent answered: the configuration counts as deployed.
    assert_eq!(r[2], (true, None, None, None));
}

#[actix_rt::test]
async fn a_deployment_that_outlives_its_deadline_answers_timed_out() {
    tokio::time::pause();
    let s = setup();
    let _a = agent(&s.core, 1, "a", Answer::Success);
    let _b = agent(&s.core, 2, "b", Answer::Never);
    ask(&s.core, "s1", Call::Stage(two_agents()));
    ask(&s.core, "d1", Call::Deploy);
    eventually(
        "responses(&s.seen).len() == 2",
        Duration::from_secs(20),
        || responses(&s.seen).len() == 2,
    )
    .await;
    let r = results(&responses(&s.seen)[1].2);
    assert_eq!(
        r.last(),
        Some(&(false, Some("request timed out".into()), None, None))
    );
    // Nothing was deployed.
    ask(&s.core, "g", Call::GetConfiguration { deployed: true });
    eventually(
        "responses(&s.seen).len() == 3",
        Duration::from_secs(2),
        || responses(&s.seen).len() == 3,
    )
    .await;
    assert_eq!(
        results(&Value::Vector(vec![responses(&s.seen)[2].2.clone()])),
        [(
            false,
            Some("no deployed configuration available".into()),
            None,
            None
        )]
    );
}

/// A core started from `snapshot`, once agents a and b have checked in
/// and each was sent a configuration unasked.
async fn restarted_with(snapshot: Snapshot, dir: tempfile::TempDir) -> Setup {
    let s = setup_with(snapshot, dir);
    let a = agent(&s.core, 1, "a", Answer::Success);
    let b = agent(&s.core, 2, "b", Answer::Success);
    eventually("asked(&a).contains(&Stem::SetConfiguration) && asked(&b).contains(&Stem::SetConfiguration)", Duration::from_secs(2), || {
            asked(&a).contains(&Stem::SetConfiguration)
                && asked(&b).contains(&Stem::SetConfiguration)
        })
    .await;
    s
}

#[actix_rt::test]
async fn after_a_restart_the_deployed_configuration_goes_out_again_unasked() {
    let dir = tempfile::tempdir().expect("tmp");
    let snapshot = Snapshot {
        version: 1,
        staged: Some(two_agents()),
        ready: Some(two_agents()),
        deployed: Some(two_agents()),
        deploying: None,
    };
    let s = restarted_with(snapshot, dir).await;
    // An internal deployment answers nobody.
    ask(&s.core, "n", Call::GetNodes);
    eventually(
        "!responses(&s.seen).is_empty()",
        Duration::from_secs(2),
        || !responses(&s.seen).is_empty(),
    )
    .await;
    assert_eq!(responses(&s.seen)[0].0, "get_nodes_response");
}

#[actix_rt::test]
async fn a_newer_connection_of_an_agent_replaces_the_older() {
    let s = setup();
    let _old = agent(&s.core, 1, "a", Answer::Dead);
    let _new = agent(&s.core, 2, "a", Answer::Success);
    // The older one's loss is not the newer one's.
    s.core.do_send(AgentGone {
        id: AgentConnId(1),
        name: "a".into(),
    });
    ask(&s.core, "i", Call::GetInstances);
    eventually(
        "responses(&s.seen).len() == 1",
        Duration::from_secs(2),
        || responses(&s.seen).len() == 1,
    )
    .await;
    assert!(responses(&s.seen)[0].2.to_json().contains("\"a\""));
    s.core.do_send(AgentGone {
        id: AgentConnId(2),
        name: "a".into(),
    });
    ask(&s.core, "i2", Call::GetInstances);
    eventually(
        "responses(&s.seen).len() == 2",
        Duration::from_secs(2),
        || responses(&s.seen).len() == 2,
    )
    .await;
    assert!(!responses(&s.seen)[1].2.to_json().contains("\"a\""));
}

#[actix_rt::test]
async fn staging_persists_before_it_answers() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().to_owned();
    let s = setup_with(Snapshot::default(), dir);
    ask(&s.core, "s1", Call::Stage(two_agents()));
    eventually(
        "responses(&s.seen).len() == 1",
        Duration::from_secs(2),
        || responses(&s.seen).len() == 1,
    )
    .await;
    let saved = crate::controller::store::load(&path).expect("load");
    assert_eq!(saved.staged, Some(two_agents()));
    assert!(saved.ready.is_some() && saved.deployed.is_none());
}

#[actix_rt::test]
async fn restart_goes_to_agents_that_announce_it_and_falls_back_when_they_do_not_know_it() {
    let s = setup();
    let a = agent_with(&s.core, 1, "a", Answer::Success, &["restart"]);
    let b = agent_with(&s.core, 2, "b", Answer::UnknownRestart, &["restart"]);
    ask(&s.core, "s1", Call::Stage(two_agents()));
    ask(&s.core, "d1", Call::Deploy);
    eventually(
        "responses(&s.seen).len() == 2",
        Duration::from_secs(2),
        || responses(&s.seen).len() == 2,
    )
    .await;
    ask(
        &s.core,
        "r1",
        Call::Restart {
            nodes: vec!["bogus".into()],
        },
    );
    ask(&s.core, "r2", Call::Restart { nodes: vec![] });
    eventually(
        "responses(&s.seen).len() == 4",
        Duration::from_secs(2),
        || responses(&s.seen).len() == 4,
    )
    .await;
    let r = responses(&s.seen);
    assert_eq!(
        results(&r[2].2),
        [(
            false,
            Some("unknown cluster node".into()),
            None,
            Some("bogus".into())
        )]
    );
    assert!(asked(&a).contains(&Stem::Restart) && asked(&b).contains(&Stem::Restart));
    // a answered (no per-node results from the fake); b did not know the
    // event: its node is "not supported", without an instance.
    assert_eq!(
        results(&r[3].2),
        [(
            false,
            Some("restart is not supported by agent b".into()),
            None,
            Some("worker-1".into())
        )]
    );
}

#[actix_rt::test]
async fn a_deployments_agents_share_one_copy_of_its_configuration() {
    let s = setup();
    let configs: Arc<Mutex<Vec<usize>>> = Arc::default();
    let a = fake_agent(&s.core, 1, "a", Answer::Success, &[], configs.clone());
    let b = fake_agent(&s.core, 2, "b", Answer::Success, &[], configs.clone());
    ask(&s.core, "s1", Call::Stage(two_agents()));
    ask(&s.core, "d1", Call::Deploy);
    eventually(
        "responses(&s.seen).len() == 2",
        Duration::from_secs(2),
        || responses(&s.seen).len() == 2,
    )
    .await;
    assert!(asked(&a).contains(&Stem::SetConfiguration));
    assert!(asked(&b).contains(&Stem::SetConfiguration));
    let seen = configs.lock().map(|c| c.clone()).unwrap_or_default();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], seen[1], "one copy, shared by both calls");
}

#[actix_rt::test]
async fn a_configuration_that_cannot_be_saved_is_refused_and_not_kept() {
    let s = setup();
    // The store's directory stops being a directory.
    let dir = s._dir.path();
    std::fs::remove_dir_all(dir).expect("rmdir");
    std::fs::write(dir, "").expect("a file in its place");
    ask(&s.core, "s1", Call::Stage(two_agents()));
    eventually(
        "responses(&s.seen).len() == 1",
        Duration::from_secs(2),
        || responses(&s.seen).len() == 1,
    )
    .await;
    let r = results(&responses(&s.seen)[0].2);
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(!r[0].0, "{r:?}");
    let error = r[0].1.clone().unwrap_or_default();
    assert!(
        error.starts_with("configuration not staged: cannot write controller.json: "),
        "{error}"
    );
    ask(&s.core, "g", Call::GetConfiguration { deployed: false });
    eventually(
        "responses(&s.seen).len() == 2",
        Duration::from_secs(2),
        || responses(&s.seen).len() == 2,
    )
    .await;
    assert_eq!(
        results(&Value::Vector(vec![responses(&s.seen)[1].2.clone()]))[0].1,
        Some("no staged configuration available".into())
    );
}

#[actix_rt::test]
async fn a_deployment_cut_short_by_a_restart_is_finished_not_rolled_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().to_owned();
    let with_id = |id: &str| Configuration {
        id: id.into(),
        ..two_agents()
    };
    let snapshot = Snapshot {
        version: 1,
        staged: Some(with_id("new")),
        ready: Some(with_id("new")),
        deployed: Some(with_id("old")),
        deploying: Some(with_id("new")),
    };
    let _s = restarted_with(snapshot, dir).await;
    // What went out, and what counts as deployed now, is the configuration
    // that was being deployed.
    eventually("crate::controller::store::load(&path) .ok() .and_then(|s| s.deployed) .is_some_and(|d| d.id == \"new\")", Duration::from_secs(2), || {
            crate::controller::store::load(&path)
                .ok()
                .and_then(|s| s.deployed)
                .is_some_and(|d| d.id == "new")
        })
    .await;
    let saved = crate::controller::store::load(&path).expect("load");
    assert_eq!(saved.deploying, None);
}

#[actix_rt::test]
async fn a_deployment_is_recorded_before_any_agent_gets_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().to_owned();
    let s = setup_with(Snapshot::default(), dir);
    let _a = agent(&s.core, 1, "a", Answer::Never);
    let _b = agent(&s.core, 2, "b", Answer::Never);
    ask(&s.core, "s1", Call::Stage(two_agents()));
    ask(&s.core, "d1", Call::Deploy);
    eventually("crate::controller::store::load(&path) .ok() .is_some_and(|s| s.deploying.is_some() && s.deployed.is_none())", Duration::from_secs(2), || {
            crate::controller::store::load(&path)
                .ok()
                .is_some_and(|s| s.deploying.is_some() && s.deployed.is_none())
        })
    .await;
}

#[actix_rt::test]
async fn a_second_live_agent_with_a_name_in_use_is_refused_and_reported() {
    let s = setup();
    let first = agent(&s.core, 1, "a", Answer::Success);
    let second = agent(&s.core, 2, "a", Answer::Success);
    // The holder was asked whether it lives; it answered.
    eventually(
        "asked(&first).contains(&Stem::GetNodes)",
        Duration::from_secs(2),
        || asked(&first).contains(&Stem::GetNodes),
    )
    .await;
    ask(&s.core, "n", Call::GetNodes);
    eventually(
        "responses(&s.seen).len() == 1",
        Duration::from_secs(2),
        || responses(&s.seen).len() == 1,
    )
    .await;
    let r = results(&responses(&s.seen)[0].2);
    assert_eq!(
        r[0].1.as_deref(),
        Some("two running agents are named a: the one at 127.0.0.1:40001 is connected and answers, so the one at 127.0.0.1:40002 was refused; give each agent its own name (--name)"),
        "{r:?}"
    );
    // Only the first was asked for its nodes by get_nodes.
    assert_eq!(
        asked(&first)
            .iter()
            .filter(|s| **s == Stem::GetNodes)
            .count(),
        2
    );
    assert!(!asked(&second).contains(&Stem::GetNodes));
}

#[actix_rt::test]
async fn an_agent_that_listens_is_dialled_every_interval_until_it_checks_in() {
    // On the paused clock: the dial interval passes when every task idles.
    tokio::time::pause();
    let s = setup();
    let _a = agent(&s.core, 1, "a", Answer::Success);
    let mut config = two_agents();
    config.instances[1].listen_port = Some(Port::tcp(2151));
    ask(&s.core, "s1", Call::Stage(config));
    ask(&s.core, "d1", Call::Deploy);
    eventually("three dials of b", Duration::from_secs(5), || {
        s.dials.len() >= 3
    })
    .await;
    let want = DialAgent {
        name: "b".into(),
        addr: "127.0.0.1:2151".into(),
        port: Port::tcp(2151),
    };
    assert!(
        s.dials.all().iter().all(|d| *d == want),
        "{:?}",
        s.dials.all()
    );
    // Once b checks in, the dialling stops.
    let _b = agent(&s.core, 2, "b", Answer::Success);
    eventually("the deployment's answer", Duration::from_secs(5), || {
        responses(&s.seen).iter().any(|(_, reqid, _)| reqid == "d1")
    })
    .await;
    let dialled = s.dials.len();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(s.dials.len(), dialled, "dialled after b checked in");
}
