//! `Listener`: accepts TCP connections on the listen address and starts one
//! `Peer` per connection, up to the limit of peers at once (a connection
//! beyond it is closed at once, and logged).

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::actors::peer::{Disconnect, Peer, PeerClosed, PeerId, PeerLinks, PeerSettings, Side};

/// A connection the accept loop took; handled by the listener itself.
#[derive(Message)]
#[rtype(result = "()")]
struct Accepted(TcpStream);

pub struct Listener {
    listener: Option<TcpListener>,
    settings: Arc<PeerSettings>,
    links: PeerLinks,
    max_peers: usize,
    peers: HashMap<PeerId, Addr<Peer>>,
    tls: Option<TlsAcceptor>,
    /// TLS handshakes under way; they count against `max_peers`.
    handshaking: usize,
}

/// Sent on agent shutdown: stop accepting and close every peer.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopListening;

impl Listener {
    pub fn new(
        listener: TcpListener,
        settings: Arc<PeerSettings>,
        links: PeerLinks,
        max_peers: usize,
    ) -> Self {
        Listener {
            listener: Some(listener),
            settings,
            links,
            max_peers,
            peers: HashMap::new(),
            tls: None,
            handshaking: 0,
        }
    }

    /// Speak TLS on every accepted connection.
    pub fn with_tls(mut self, acceptor: Option<TlsAcceptor>) -> Self {
        self.tls = acceptor;
        self
    }

    fn start_peer<T>(
        &mut self,
        io: T,
        remote: std::net::SocketAddr,
        local: std::net::SocketAddr,
        ctx: &mut Context<Self>,
    ) where
        T: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        let id = PeerId::next();
        let mut links = self.links.clone();
        links.on_close.push(ctx.address().recipient());
        let peer = Peer::start(
            id,
            io,
            remote,
            local,
            Side::Accepted,
            Arc::clone(&self.settings),
            links,
        );
        self.peers.insert(id, peer);
    }
}

impl Actor for Listener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        let me = ctx.address();
        ctx.spawn(
            async move {
                loop {
                    match listener.accept().await {
                        Ok((stream, _)) => me.do_send(Accepted(stream)),
                        Err(e) => {
                            // Out of file descriptors and the like: back off
                            // instead of spinning.
                            tracing::error!("accept failed: {e}");
                            actix_rt::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                    }
                }
            }
            .into_actor(self),
        );
    }
}

impl Handler<Accepted> for Listener {
    type Result = ();

    fn handle(&mut self, Accepted(stream): Accepted, ctx: &mut Context<Self>) {
        let (Ok(remote), Ok(local)) = (stream.peer_addr(), stream.local_addr()) else {
            return;
        };
        if self.peers.len() + self.handshaking >= self.max_peers {
            tracing::warn!(%remote, limit = self.max_peers, "too many peers; connection refused");
            return;
        }
        let _ = stream.set_nodelay(true);
        let Some(acceptor) = self.tls.clone() else {
            self.start_peer(stream, remote, local, ctx);
            return;
        };
        self.handshaking += 1;
        let handshake =
            tokio::time::timeout(self.settings.handshake_timeout, acceptor.accept(stream));
        ctx.spawn(handshake.into_actor(self).map(move |res, act, ctx| {
            act.handshaking -= 1;
            match res {
                Ok(Ok(tls)) => act.start_peer(tls, remote, local, ctx),
                Ok(Err(e)) => tracing::warn!(%remote, "TLS handshake refused: {e}"),
                Err(_) => tracing::warn!(%remote, "TLS handshake timed out"),
            }
        }));
    }
}

impl Handler<PeerClosed> for Listener {
    type Result = ();

    fn handle(&mut self, msg: PeerClosed, _: &mut Context<Self>) {
        self.peers.remove(&msg.peer);
    }
}

impl Handler<StopListening> for Listener {
    type Result = ();

    fn handle(&mut self, _: StopListening, ctx: &mut Context<Self>) {
        for peer in self.peers.values() {
            peer.do_send(Disconnect);
        }
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::testing::wait_until;

    #[actix_rt::test]
    async fn refuses_connections_beyond_the_peer_limit_and_frees_slots() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = tcp.local_addr().expect("addr");
        let (links, closed) = crate::actors::peer::fixtures::links();
        let settings = crate::actors::peer::fixtures::settings("l");
        let listener = Listener::new(tcp, settings, links, 1).start();

        let first = tokio::net::TcpStream::connect(addr).await.expect("first");
        // Give the listener time to count the first peer.
        actix_rt::time::sleep(Duration::from_millis(100)).await;
        let mut second = tokio::net::TcpStream::connect(addr).await.expect("second");
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf))
            .await
            .expect("closed in time");
        assert!(
            matches!(n, Ok(0) | Err(_)),
            "the second peer must be closed"
        );

        drop(first);
        wait_until(|| closed.len() == 1, 5_000).await;
        let mut third = tokio::net::TcpStream::connect(addr).await.expect("third");
        let still_open =
            tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf)).await;
        assert!(still_open.is_err(), "a freed slot takes a new peer");

        listener.do_send(StopListening);
        let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
            .await
            .expect("closed on stop");
        assert!(matches!(n, Ok(0) | Err(_)));
    }
}
