//! `Notifier`: fans `notify_change`, `notify_error` and `notify_log` out to
//! every connected peer. While no controller is connected it keeps them
//! (bounded, oldest dropped first and counted) and delivers them, in order,
//! to the next controller that completes its hello. Clients (hello role
//! `client`, such as an operator's one-off `get-nodes`) see notifications
//! live but never take the backlog meant for the controller.

use std::collections::{BTreeMap, VecDeque};

use actix::prelude::*;

use crate::agent::actors::messages::{Outbound, PeerClosed, PeerId, PeerReady};
use crate::api::events::{Notification, NotifyLog};

struct Ready {
    outbound: Recipient<Outbound>,
    takes_backlog: bool,
}

pub struct Notifier {
    instance: String,
    peers: BTreeMap<PeerId, Ready>,
    backlog: VecDeque<Notification>,
    capacity: usize,
    dropped: u64,
}

impl Notifier {
    /// `capacity`: notifications kept while no controller is connected.
    pub fn new(instance: String, capacity: usize) -> Self {
        Notifier {
            instance,
            peers: BTreeMap::new(),
            backlog: VecDeque::new(),
            capacity,
            dropped: 0,
        }
    }
}

impl Actor for Notifier {
    type Context = Context<Self>;
}

impl Handler<Notification> for Notifier {
    type Result = ();

    fn handle(&mut self, n: Notification, _: &mut Context<Self>) {
        let mut gone = Vec::new();
        for (peer, ready) in &self.peers {
            if ready.outbound.connected() {
                ready.outbound.do_send(Outbound::Notification(n.clone()));
            } else {
                gone.push(*peer);
            }
        }
        for peer in gone {
            self.peers.remove(&peer);
        }
        if self.peers.values().any(|r| r.takes_backlog) {
            return;
        }
        if self.capacity == 0 {
            self.dropped += 1;
            return;
        }
        if self.backlog.len() >= self.capacity {
            self.backlog.pop_front();
            self.dropped += 1;
        }
        self.backlog.push_back(n);
    }
}

impl Handler<PeerReady> for Notifier {
    type Result = ();

    fn handle(&mut self, msg: PeerReady, _: &mut Context<Self>) {
        if !msg.takes_backlog {
            self.peers.insert(
                msg.peer,
                Ready {
                    outbound: msg.outbound,
                    takes_backlog: false,
                },
            );
            return;
        }
        if self.dropped > 0 {
            let text = format!(
                "{} notifications were dropped while no controller was connected",
                self.dropped
            );
            tracing::warn!("{text}");
            msg.outbound
                .do_send(Outbound::Notification(Notification::Log(NotifyLog {
                    instance: self.instance.clone(),
                    msg: text,
                    node: String::new(),
                })));
            self.dropped = 0;
        }
        for n in self.backlog.drain(..) {
            msg.outbound.do_send(Outbound::Notification(n));
        }
        self.backlog.shrink_to_fit();
        self.peers.insert(
            msg.peer,
            Ready {
                outbound: msg.outbound,
                takes_backlog: true,
            },
        );
    }
}

impl Handler<PeerClosed> for Notifier {
    type Result = ();

    fn handle(&mut self, msg: PeerClosed, _: &mut Context<Self>) {
        self.peers.remove(&msg.peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{eventually, Probe};
    use std::time::Duration;

    fn log(i: usize) -> Notification {
        Notification::Log(NotifyLog {
            instance: "a".into(),
            msg: format!("m{i}"),
            node: String::new(),
        })
    }

    fn msgs(seen: &crate::testing::Seen<Outbound>) -> Vec<String> {
        seen.all()
            .into_iter()
            .filter_map(|o| match o {
                Outbound::Notification(Notification::Log(l)) => Some(l.msg),
                _ => None,
            })
            .collect()
    }

    #[actix_rt::test]
    async fn fans_out_to_every_ready_peer() {
        let n = Notifier::new("a".into(), 10).start();
        let (p1, s1) = Probe::<Outbound>::start();
        let (p2, s2) = Probe::<Outbound>::start();
        n.do_send(PeerReady {
            peer: PeerId(1),
            outbound: p1,
            takes_backlog: true,
        });
        n.do_send(PeerReady {
            peer: PeerId(2),
            outbound: p2,
            takes_backlog: true,
        });
        n.do_send(log(1));
        eventually(
            "s1.len() == 1 && s2.len() == 1",
            Duration::from_secs(2),
            || s1.len() == 1 && s2.len() == 1,
        )
        .await;
        n.do_send(PeerClosed { peer: PeerId(2) });
        n.do_send(log(2));
        eventually("s1.len() == 2", Duration::from_secs(2), || s1.len() == 2).await;
        assert_eq!(msgs(&s1), ["m1", "m2"]);
        assert_eq!(msgs(&s2), ["m1"]);
    }

    #[actix_rt::test]
    async fn keeps_a_bounded_backlog_in_order_and_counts_drops() {
        let n = Notifier::new("a".into(), 3).start();
        for i in 0..5 {
            n.do_send(log(i));
        }
        let (p, s) = Probe::<Outbound>::start();
        n.do_send(PeerReady {
            peer: PeerId(1),
            outbound: p,
            takes_backlog: true,
        });
        eventually("s.len() == 4", Duration::from_secs(2), || s.len() == 4).await;
        assert_eq!(
            msgs(&s),
            [
                "2 notifications were dropped while no controller was connected",
                "m2",
                "m3",
                "m4"
            ]
        );
        // Delivered once: a second peer gets no replay.
        let (p2, s2) = Probe::<Outbound>::start();
        n.do_send(PeerReady {
            peer: PeerId(2),
            outbound: p2,
            takes_backlog: true,
        });
        n.do_send(log(9));
        eventually("s2.len() == 1", Duration::from_secs(2), || s2.len() == 1).await;
        assert_eq!(msgs(&s2), ["m9"]);
    }

    #[actix_rt::test]
    async fn clients_see_live_notifications_but_leave_the_backlog() {
        let n = Notifier::new("a".into(), 10).start();
        n.do_send(log(1));
        let (c, seen_c) = Probe::<Outbound>::start();
        n.do_send(PeerReady {
            peer: PeerId(5),
            outbound: c,
            takes_backlog: false,
        });
        n.do_send(log(2));
        eventually("seen_c.len() == 1", Duration::from_secs(2), || {
            seen_c.len() == 1
        })
        .await;
        assert_eq!(msgs(&seen_c), ["m2"], "a client gets only live ones");
        let (ctl, seen_ctl) = Probe::<Outbound>::start();
        n.do_send(PeerReady {
            peer: PeerId(6),
            outbound: ctl,
            takes_backlog: true,
        });
        eventually("seen_ctl.len() == 2", Duration::from_secs(2), || {
            seen_ctl.len() == 2
        })
        .await;
        assert_eq!(
            msgs(&seen_ctl),
            ["m1", "m2"],
            "the controller gets what it missed, in order"
        );
    }
}
