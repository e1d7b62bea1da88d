//! `Listener`: accepts TCP connections on the listen address and starts one
//! `Peer` per connection, up to the limit of peers at once (a connection
//! beyond it is closed at once, and logged).

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use tokio::net::{TcpListener, TcpStream};

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
        }
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
        if self.peers.len() >= self.max_peers {
            tracing::warn!(%remote, limit = self.max_peers, "too many peers; connection refused");
            return;
        }
        let _ = stream.set_nodelay(true);
        let id = PeerId::next();
        let mut links = self.links.clone();
        links.on_close.push(ctx.address().recipient());
        let peer = Peer::start(
            id,
            stream,
            remote,
            local,
            Side::Accepted,
            Arc::clone(&self.settings),
            links,
        );
        self.peers.insert(id, peer);
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
