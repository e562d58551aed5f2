//! Free TCP ports on 127.0.0.1.

use std::net::TcpListener;

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct ports on 127.0.0.1 that were free a moment ago: all are bound at once, so the
/// system cannot hand out one of them twice.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port on 127.0.0.1")).collect();
    listeners.iter().map(|l| l.local_addr().expect("address of a bound listener").port()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_free() {
        let ports = free_ports(16);
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 16);
        for p in ports {
            TcpListener::bind(("127.0.0.1", p)).expect("the port is free again");
        }
    }
}
