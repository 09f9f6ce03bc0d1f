//! Loopback ports for tests that start servers in other processes (brokers, ActiveMQ,
//! ZooKeeper), which must be told a port before they bind it.

use std::net::TcpListener;

/// A port free now on 127.0.0.1, for a server that must come back on the same one after a
/// restart. Another process may take it before the server binds it; tests that start several
/// servers at once use [`free_ports`] so that at least they never get the same one twice.
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct ports free now on 127.0.0.1 (held together while chosen).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port"))
        .collect();
    std::array::from_fn(|i| {
        held[i]
            .local_addr()
            .expect("a bound listener has an address")
            .port()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_chosen_together_are_distinct_and_bindable() {
        let ports = free_ports::<4>();
        let mut sorted = ports.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 4, "{ports:?}");
        for p in ports {
            assert_ne!(p, 0);
            TcpListener::bind(("127.0.0.1", p)).expect("the port is free again once released");
        }
    }
}
