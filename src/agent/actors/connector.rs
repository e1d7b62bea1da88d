//! `Connector` (connect mode): dials the controller, retries every interval
//! (plus a little jitter) while it is unreachable, and dials again whenever
//! the connection drops. The connection itself is an ordinary `Peer`.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::agent::actors::messages::{Disconnect, PeerClosed, PeerId, StopPeering};
use crate::agent::actors::peer::{Peer, PeerLinks, PeerSettings, Side};

pub struct Connector {
    target: String,
    settings: Arc<PeerSettings>,
    links: PeerLinks,
    interval: Duration,
    attempts: u64,
    current: Option<Addr<Peer>>,
    tls: Option<TlsConnector>,
}

/// A dialled connection: plain TCP or TLS.
enum Dialled {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Connector {
    /// `target`: `host:port` of the controller.
    pub fn new(
        target: String,
        settings: Arc<PeerSettings>,
        links: PeerLinks,
        interval: Duration,
    ) -> Self {
        Connector {
            target,
            settings,
            links,
            interval,
            attempts: 0,
            current: None,
            tls: None,
        }
    }

    /// Speak TLS to the controller, verifying its certificate.
    pub fn with_tls(mut self, connector: Option<TlsConnector>) -> Self {
        self.tls = connector;
        self
    }

    fn dial(&mut self, ctx: &mut Context<Self>) {
        self.attempts += 1;
        let target = self.target.clone();
        let tls = self.tls.clone();
        // The dial and the TLS handshake are bounded like an accepted
        // peer's handshake.
        let limit = self.settings.handshake_timeout;
        let fut = async move {
            tokio::time::timeout(limit, async move {
                let stream = TcpStream::connect(&target).await?;
                let _ = stream.set_nodelay(true);
                let (remote, local) = (stream.peer_addr()?, stream.local_addr()?);
                let Some(tls) = tls else {
                    return Ok((Dialled::Plain(stream), remote, local));
                };
                let host = target
                    .parse::<crate::protocol::HostPort>()
                    .map(|hp| hp.host)
                    .unwrap_or_else(|_| target.clone());
                let name = ServerName::try_from(host).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
                })?;
                let stream = tls.connect(name, stream).await?;
                Ok::<_, std::io::Error>((Dialled::Tls(Box::new(stream)), remote, local))
            })
            .await
        };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| match res {
            Ok(Ok((stream, remote, local))) => {
                tracing::info!(controller = %act.target, "connected to the controller");
                act.attempts = 0;
                let mut links = act.links.clone();
                links.on_close.push(ctx.address().recipient());
                let (id, settings) = (PeerId::next(), Arc::clone(&act.settings));
                let peer = match stream {
                    Dialled::Plain(s) => Peer::start(id, s, remote, local, Side::Dialed, settings, links),
                    Dialled::Tls(s) => Peer::start(id, s, remote, local, Side::Dialed, settings, links),
                };
                act.current = Some(peer);
            }
            Ok(Err(e)) => {
                if act.attempts == 1 || act.attempts % 60 == 0 {
                    tracing::warn!(controller = %act.target, attempts = act.attempts, "cannot reach the controller: {e}");
                }
                act.retry(ctx);
            }
            Err(_) => {
                tracing::warn!(controller = %act.target, "dial timed out");
                act.retry(ctx);
            }
        }));
    }

    fn retry(&mut self, ctx: &mut Context<Self>) {
        ctx.run_later(self.interval + jitter(self.interval), |act, ctx| {
            act.dial(ctx)
        });
    }
}

/// Up to a tenth of `interval`, from the clock's nanoseconds.
fn jitter(interval: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    interval.mul_f64(f64::from(nanos % 1000) / 10_000.0)
}

impl Actor for Connector {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.dial(ctx);
    }
}

impl Handler<PeerClosed> for Connector {
    type Result = ();

    fn handle(&mut self, _: PeerClosed, ctx: &mut Context<Self>) {
        self.current = None;
        tracing::warn!(controller = %self.target, "controller connection lost; redialling");
        self.retry(ctx);
    }
}

impl Handler<StopPeering> for Connector {
    type Result = ();

    fn handle(&mut self, _: StopPeering, ctx: &mut Context<Self>) {
        if let Some(peer) = self.current.take() {
            peer.do_send(Disconnect);
        }
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    #[actix_rt::test]
    async fn dials_retries_and_redials_after_a_drop() {
        // Reserve a port with nothing listening: the first dials fail.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port");
        let (links, _) = crate::agent::actors::peer::fixtures::links();
        let settings = crate::agent::actors::peer::fixtures::settings("c");
        let connector =
            Connector::new(addr.to_string(), settings, links, Duration::from_millis(50)).start();
        actix_rt::time::sleep(Duration::from_millis(200)).await;
        let controller = TcpListener::bind(addr).await.expect("bind");
        async fn accept(l: &TcpListener) -> tokio::net::TcpStream {
            tokio::time::timeout(Duration::from_secs(5), l.accept())
                .await
                .expect("dialled in time")
                .expect("accept")
                .0
        }
        let mut first = accept(&controller).await;
        // The agent speaks first when it dials: a length-prefixed hello.
        let len = first.read_u32().await.expect("hello length");
        assert!(len > 0);
        drop(first);
        let mut second = accept(&controller).await;
        assert!(second.read_u32().await.expect("hello again") > 0);
        connector.do_send(StopPeering);
    }
}
