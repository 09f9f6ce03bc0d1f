//! STOMP: the frame codec and the server side of a connection.

pub mod frame;
pub mod server;
