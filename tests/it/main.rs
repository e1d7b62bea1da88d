//! Integration tests: the real agent binary, real sockets, real node
//! processes (the stand-in program of `tests/fixtures`).

mod archive;
mod channel;
mod client;
mod controller;
mod crashes;
mod deploy;
mod docs;
mod edges;
mod hosts;
mod lifecycle;
mod load;
mod metrics;
mod netns;
mod netstats;
mod nodecfg;
mod props;
mod protocol;
mod realzeek;
mod settings;
mod support;
mod tls;
mod websocket;
