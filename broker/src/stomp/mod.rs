//! STOMP: the server side of a connection. The frame codec is its own crate, `stomp-codec`
//! (pure, no I/O, fuzzed without the broker); it is re-exported here as `frame`.

pub use stomp_codec as frame;
pub mod server;
