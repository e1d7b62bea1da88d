//! `Hub`: the WebSocket clients that have been acked, with their
//! subscriptions; publishes a data message to every client subscribed to a
//! prefix of its topic, as Zeek's pub/sub does.

use std::collections::HashMap;

use actix::prelude::*;

use super::messages::{ClientId, Publish, SendText};

/// The acked clients.
#[derive(Default)]
pub struct Hub {
    clients: HashMap<ClientId, (Vec<String>, Recipient<SendText>)>,
    trim_scheduled: bool,
}

impl Actor for Hub {
    type Context = Context<Self>;
}

/// After clients came and went, the allocator is asked to give the freed
/// memory back (a burst of short-lived clients would otherwise leave the
/// daemon's resident size at its peak for good).
const TRIM_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

impl Hub {
    fn trim_soon(&mut self, ctx: &mut Context<Self>) {
        if self.trim_scheduled {
            return;
        }
        self.trim_scheduled = true;
        ctx.run_later(TRIM_AFTER, |act, _| {
            act.trim_scheduled = false;
            crate::memory::release_free_memory();
        });
    }
}

/// A client was acked with these subscriptions.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Join {
    pub id: ClientId,
    pub subscriptions: Vec<String>,
    pub out: Recipient<SendText>,
}

/// A client left (or never got as far as its ack).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave(pub ClientId);

impl Handler<Join> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Join, _: &mut Context<Self>) {
        self.clients.insert(msg.id, (msg.subscriptions, msg.out));
    }
}

impl Handler<Leave> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Leave, ctx: &mut Context<Self>) {
        self.clients.remove(&msg.0);
        self.trim_soon(ctx);
    }
}

impl Handler<Publish> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) {
        let topic = &msg.message.topic;
        let mut text: Option<String> = None;
        for (id, (subs, out)) in &self.clients {
            if Some(*id) == msg.from || !subs.iter().any(|s| topic.starts_with(s.as_str())) {
                continue;
            }
            let t = text.get_or_insert_with(|| msg.message.to_json());
            out.do_send(SendText(t.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::message::DataMessage;
    use crate::broker::Value;
    use crate::testing::{eventually, Probe};
    use std::time::Duration;

    #[actix_rt::test]
    async fn a_message_goes_to_matching_subscribers_but_not_its_sender() {
        let hub = Hub::default().start();
        let (a, seen_a) = Probe::<SendText>::start();
        let (b, seen_b) = Probe::<SendText>::start();
        let (c, seen_c) = Probe::<SendText>::start();
        for (id, subs, out) in [
            (1, vec!["zeek/management/controller".to_owned()], a),
            (2, vec!["zeek/management".to_owned()], b),
            (3, vec!["other".to_owned()], c),
        ] {
            hub.do_send(Join {
                id: ClientId(id),
                subscriptions: subs,
                out,
            });
        }
        let message = DataMessage {
            topic: "zeek/management/controller".into(),
            value: Value::Count(1),
        };
        hub.do_send(Publish {
            message: message.clone(),
            from: Some(ClientId(1)),
        });
        hub.do_send(Publish {
            message,
            from: None,
        });
        eventually(
            "seen_a.len() == 1 && seen_b.len() == 2",
            Duration::from_secs(2),
            || seen_a.len() == 1 && seen_b.len() == 2,
        )
        .await;
        hub.do_send(Leave(ClientId(2)));
        hub.do_send(Publish {
            message: DataMessage {
                topic: "zeek/management/controller".into(),
                value: Value::Count(2),
            },
            from: None,
        });
        eventually("seen_a.len() == 2", Duration::from_secs(2), || {
            seen_a.len() == 2
        })
        .await;
        assert_eq!(seen_b.len(), 2);
        assert_eq!(seen_c.len(), 0);
    }
}
