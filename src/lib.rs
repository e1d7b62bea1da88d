pub mod api;
pub mod wire;
