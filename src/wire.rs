//! The wire protocol: framing (`codec`) and the CBOR encoding (`cbor`).

pub mod cbor;
pub mod codec;
