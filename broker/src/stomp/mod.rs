//! STOMP: the server side of a connection, over any byte stream (TCP, TLS, or a WebSocket
//! through [`websocket`]). The frame codec is its own crate, `stomp-codec` (pure, no I/O,
//! fuzzed without the broker); it is re-exported here as `frame`.

pub use stomp_codec as frame;
pub mod server;
pub mod websocket;
