//! `Listener`: accepts TCP connections on the listen address and starts one
//! `Peer` per connection, up to the limit of peers at once. At the limit it
//! stops accepting until a peer has gone: a newcomer waits in the kernel's
//! backlog instead of being accepted and closed, so a connection whose
//! client has already left (but whose actor has not run yet) can delay a
//! newcomer but never turn it away.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::agent::actors::messages::{Disconnect, PeerClosed, PeerId, StopPeering};
use crate::agent::actors::peer::{Peer, PeerLinks, PeerSettings, Side};

/// A connection the accept loop took, with its place among the peers;
/// handled by the listener itself.
#[derive(Message)]
#[rtype(result = "()")]
struct Accepted(TcpStream, OwnedSemaphorePermit);

/// The shortest time between two "peer limit reached" warnings.
const LIMIT_WARNING_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

pub struct Listener {
    listener: Option<TcpListener>,
    settings: Arc<PeerSettings>,
    links: PeerLinks,
    max_peers: usize,
    /// Each peer (or TLS handshake under way) holds one of `max_peers`
    /// permits until it has gone; the accept loop takes one before it
    /// accepts.
    places: Arc<Semaphore>,
    peers: HashMap<PeerId, (Addr<Peer>, OwnedSemaphorePermit)>,
    tls: Option<TlsAcceptor>,
}

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
            places: Arc::new(Semaphore::new(max_peers.min(Semaphore::MAX_PERMITS))),
            peers: HashMap::new(),
            tls: None,
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
        place: OwnedSemaphorePermit,
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
        self.peers.insert(id, (peer, place));
    }
}

impl Actor for Listener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        let me = ctx.address();
        let places = Arc::clone(&self.places);
        let max_peers = self.max_peers;
        ctx.spawn(
            async move {
                // Said at most every LIMIT_WARNING_EVERY, with how often the
                // limit held newcomers back since: a churning client must not
                // turn it into a warning (written at once) per connection.
                let mut warned: Option<std::time::Instant> = None;
                let mut waits: u64 = 0;
                loop {
                    let place = match Arc::clone(&places).try_acquire_owned() {
                        Ok(p) => p,
                        Err(_) => {
                            waits += 1;
                            if warned.is_none_or(|t| t.elapsed() >= LIMIT_WARNING_EVERY) {
                                tracing::warn!(
                                    limit = max_peers,
                                    waits,
                                    "peer limit reached: new connections wait until a peer leaves"
                                );
                                warned = Some(std::time::Instant::now());
                                waits = 0;
                            }
                            match Arc::clone(&places).acquire_owned().await {
                                Ok(p) => p,
                                Err(_) => return,
                            }
                        }
                    };
                    match listener.accept().await {
                        Ok((stream, _)) => me.do_send(Accepted(stream, place)),
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

    fn handle(&mut self, Accepted(stream, place): Accepted, ctx: &mut Context<Self>) {
        let (Ok(remote), Ok(local)) = (stream.peer_addr(), stream.local_addr()) else {
            return;
        };
        let _ = stream.set_nodelay(true);
        let Some(acceptor) = self.tls.clone() else {
            self.start_peer(stream, remote, local, place, ctx);
            return;
        };
        let handshake =
            tokio::time::timeout(self.settings.handshake_timeout, acceptor.accept(stream));
        ctx.spawn(
            handshake
                .into_actor(self)
                .map(move |res, act, ctx| match res {
                    Ok(Ok(tls)) => act.start_peer(tls, remote, local, place, ctx),
                    Ok(Err(e)) => tracing::warn!(%remote, "TLS handshake refused: {e}"),
                    Err(_) => tracing::warn!(%remote, "TLS handshake timed out"),
                }),
        );
    }
}

impl Handler<PeerClosed> for Listener {
    type Result = ();

    fn handle(&mut self, msg: PeerClosed, _: &mut Context<Self>) {
        self.peers.remove(&msg.peer);
    }
}

impl Handler<StopPeering> for Listener {
    type Result = ();

    fn handle(&mut self, _: StopPeering, ctx: &mut Context<Self>) {
        for (peer, _) in self.peers.values() {
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
    use crate::testing::eventually;

    #[actix_rt::test]
    async fn beyond_the_peer_limit_newcomers_wait_instead_of_being_closed() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = tcp.local_addr().expect("addr");
        let (links, closed) = crate::agent::actors::peer::fixtures::links();
        let settings = crate::agent::actors::peer::fixtures::settings("l");
        let listener = Listener::new(tcp, settings, links, 1).start();

        let first = tokio::net::TcpStream::connect(addr).await.expect("first");
        // The second waits in the backlog: it is not closed.
        let mut second = tokio::net::TcpStream::connect(addr).await.expect("second");
        let mut buf = [0u8; 1];
        let waiting = tokio::time::timeout(Duration::from_millis(300), second.read(&mut buf)).await;
        assert!(waiting.is_err(), "the second peer must not be closed");

        // Once the first has gone, the second becomes a peer.
        drop(first);
        eventually("closed.len() == 1", Duration::from_secs(5), || {
            closed.len() == 1
        })
        .await;
        let still_open =
            tokio::time::timeout(Duration::from_millis(300), second.read(&mut buf)).await;
        assert!(
            still_open.is_err(),
            "the freed place takes the waiting peer"
        );
        // A third waits for the second.
        let mut third = tokio::net::TcpStream::connect(addr).await.expect("third");
        drop(second);
        eventually("closed.len() == 2", Duration::from_secs(5), || {
            closed.len() == 2
        })
        .await;

        listener.do_send(StopPeering);
        let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
            .await
            .expect("closed on stop");
        assert!(matches!(n, Ok(0) | Err(_)));
    }
}
