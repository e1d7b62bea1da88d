//! TLS 1.3 with certificates made at run time: mutual TLS in listen mode,
//! verification of the controller in connect mode, and every kind of bad
//! client certificate refused at the handshake.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType,
};
use tokio::net::TcpListener;
use zeek_mgmt_agent::protocol::tls;
use zeek_mgmt_agent::protocol::to_agent::{Connection, PeerOptions};

use crate::support::*;

pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pub pem: String,
}

pub fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let pem = params.self_signed(&key).expect("ca").pem();
    Ca { params, key, pem }
}

/// Writes a certificate for `names` signed by `ca` and its key; returns
/// the two paths.
pub fn leaf(dir: &Path, file: &str, ca: &Ca, expired: bool) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
    params.distinguished_name.push(DnType::CommonName, file);
    if expired {
        params.not_before = date_time_ymd(2001, 1, 1);
        params.not_after = date_time_ymd(2002, 1, 1);
    }
    let issuer = Issuer::from_params(&ca.params, &ca.key);
    let cert = params.signed_by(&key, &issuer).expect("sign");
    let (c, k) = (
        dir.join(format!("{file}.pem")),
        dir.join(format!("{file}.key")),
    );
    std::fs::write(&c, cert.pem()).expect("write cert");
    std::fs::write(&k, key.serialize_pem()).expect("write key");
    (c, k)
}

struct Pki {
    _tmp: tempfile::TempDir,
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
    stranger: (PathBuf, PathBuf),
    expired: (PathBuf, PathBuf),
}

fn pki() -> Pki {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let ours = ca("agents CA");
    let theirs = ca("another CA");
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, &ours.pem).expect("ca");
    Pki {
        server: leaf(dir, "server", &ours, false),
        client: leaf(dir, "client", &ours, false),
        stranger: leaf(dir, "stranger", &theirs, false),
        expired: leaf(dir, "expired", &ours, true),
        ca: ca_path,
        _tmp: tmp,
    }
}

fn client_opts(p: &Pki, identity: Option<&(PathBuf, PathBuf)>) -> PeerOptions {
    let id = identity.map(|(c, k)| (c.as_path(), k.as_path()));
    PeerOptions {
        tls: Some(tls::client_config(&p.ca, id).expect("client config")),
        ..PeerOptions::default()
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[tokio::test]
async fn mutual_tls_lets_in_only_clients_of_our_ca() {
    let p = pki();
    let agent = Agent::start(&[
        "--tls-cert",
        s(&p.server.0),
        "--tls-key",
        s(&p.server.1),
        "--tls-ca",
        s(&p.ca),
    ]);
    let addr = agent.addr.expect("addr");

    let mut good = Connection::connect(addr, client_opts(&p, Some(&p.client)))
        .await
        .expect("a client of our CA gets in");
    assert_eq!(good.agent().endpoint, AGENT);
    assert!(good.wait_notification(LONG, |_| true).await.is_ok());
    assert_eq!(get_nodes(&good).await.len(), 1);

    for (what, identity) in [
        ("no client certificate", None),
        ("a certificate of another CA", Some(&p.stranger)),
        ("an expired certificate", Some(&p.expired)),
    ] {
        let r = Connection::connect(addr, client_opts(&p, identity)).await;
        assert!(r.is_err(), "{what} must not get past the handshake");
    }
    // Plain TCP does not get in either.
    let r = Connection::connect(addr, PeerOptions::default()).await;
    assert!(r.is_err(), "plain TCP must not get in");

    // Every refusal is logged.
    let log = agent.wait_log("TLS handshake refused", 4);
    assert!(
        log.contains("remote=127.0.0.1:"),
        "with the peer's address:\n{log}"
    );
    // The good peer was never disturbed.
    assert_eq!(get_nodes(&good).await.len(), 1);
}

#[tokio::test]
async fn connect_mode_verifies_the_controller() {
    let p = pki();
    let controller = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = controller.local_addr().expect("addr").port();
    let _agent = Agent::start_dialling(
        port,
        &[
            "--tls-ca",
            s(&p.ca),
            "--tls-cert",
            s(&p.client.0),
            "--tls-key",
            s(&p.client.1),
        ],
    );
    let server = tls::server_config(&p.server.0, &p.server.1, Some(&p.ca)).expect("server config");
    let opts = PeerOptions {
        tls_server: Some(Arc::clone(&server)),
        ..PeerOptions::default()
    };
    let mut c = tokio::time::timeout(LONG, Connection::accept(&controller, opts))
        .await
        .expect("dialled in time")
        .expect("TLS and hello");
    assert!(c.wait_notification(LONG, |_| true).await.is_ok());
    assert_eq!(get_nodes(&c).await.len(), 1);
}

#[tokio::test]
async fn connect_mode_refuses_a_controller_of_another_ca() {
    let p = pki();
    let theirs = ca("impostor CA");
    let dir = tempfile::tempdir().expect("tmp");
    let fake = leaf(dir.path(), "fake-controller", &theirs, false);
    let controller = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = controller.local_addr().expect("addr").port();
    let agent = Agent::start_dialling(port, &["--tls-ca", s(&p.ca)]);
    let server = tls::server_config(&fake.0, &fake.1, None).expect("server config");
    let opts = PeerOptions {
        tls_server: Some(server),
        ..PeerOptions::default()
    };
    let r = tokio::time::timeout(LONG, Connection::accept(&controller, opts))
        .await
        .expect("dialled in time");
    assert!(r.is_err(), "the agent must not talk to an impostor");
    agent.wait_log("cannot reach the controller", 1);
}

#[test]
fn incomplete_tls_settings_stop_the_start() {
    let p = pki();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zeek-mgmt-agent"))
        .args(["--listen-port", "0", "--tls-cert", s(&p.server.0)])
        .current_dir(p._tmp.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--tls-cert and --tls-key go together"),
        "{err}"
    );
}

#[test]
fn the_client_binary_speaks_mutual_tls() {
    let p = pki();
    let agent = Agent::start(&[
        "--name",
        "agent-tls",
        "--tls-cert",
        s(&p.server.0),
        "--tls-key",
        s(&p.server.1),
        "--tls-ca",
        s(&p.ca),
    ]);
    let addr = agent.addr.expect("addr").to_string();
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_zeek-mgmt-client"))
            .args(["--agent", &addr, "--timeout", "5"])
            .args(extra)
            .arg("get-nodes")
            .output()
            .expect("client")
    };
    let out = run(&[
        "--tls-ca",
        s(&p.ca),
        "--tls-cert",
        s(&p.client.0),
        "--tls-key",
        s(&p.client.1),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"agent-tls\": {"), "{text}");
    // Without a client certificate, or without TLS at all: refused, exit 2.
    assert_eq!(run(&["--tls-ca", s(&p.ca)]).status.code(), Some(2));
    assert_eq!(run(&[]).status.code(), Some(2));
}
