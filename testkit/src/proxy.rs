//! A TCP proxy on 127.0.0.1 that injects faults: it counts the bytes clients send and, once a
//! threshold is crossed, runs a trigger (kill the server, or cut every connection and refuse new
//! ones); and it can hold every byte in both directions while keeping the connections open (a
//! server that hangs).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Forwards every connection to an upstream port; stops and cuts all connections when dropped.
pub struct FaultProxy {
    pub port: u16,
    inner: Arc<Inner>,
    accept: Option<JoinHandle<()>>,
}

type Trigger = Box<dyn FnMut() + Send>;

struct Inner {
    upstream: u16,
    sent: AtomicU64,
    trip_at: AtomicU64,
    down: AtomicBool,
    /// Bytes are held (not forwarded) while this is set.
    held: AtomicBool,
    stop: AtomicBool,
    tripped: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
    trigger: Mutex<Option<Trigger>>,
}

impl Inner {
    fn cut_all(&self) {
        if let Ok(mut conns) = self.conns.lock() {
            for c in conns.drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }

    /// Runs the trigger once the bytes counted so far cross the threshold.
    fn trip_if_crossed(&self) {
        let total = self.sent.load(Ordering::SeqCst);
        if total >= self.trip_at.load(Ordering::SeqCst) && !self.tripped.swap(true, Ordering::SeqCst) {
            if let Some(mut trigger) = self.trigger.lock().ok().and_then(|mut t| t.take()) {
                trigger();
            }
        }
    }
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        // Non-blocking, so the accept loop sees `stop` without a connection arriving.
        listener.set_nonblocking(true).expect("non-blocking listener");
        let inner = Arc::new(Inner {
            upstream,
            sent: AtomicU64::new(0),
            trip_at: AtomicU64::new(u64::MAX),
            down: AtomicBool::new(false),
            held: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            tripped: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
            trigger: Mutex::new(None),
        });
        let acc = inner.clone();
        let accept = std::thread::spawn(move || {
            while !acc.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        if acc.down.load(Ordering::SeqCst) {
                            drop(client);
                            continue;
                        }
                        let _ = client.set_nonblocking(false);
                        let Ok(server) = TcpStream::connect(("127.0.0.1", acc.upstream)) else { continue };
                        if let (Ok(c2), Ok(s2), Ok(mut conns)) =
                            (client.try_clone(), server.try_clone(), acc.conns.lock())
                        {
                            conns.push(c2);
                            conns.push(s2);
                        }
                        pipe(client.try_clone(), server.try_clone(), acc.clone(), true);
                        pipe(Ok(server), Ok(client), acc.clone(), false);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        FaultProxy { port, inner, accept: Some(accept) }
    }

    /// Bytes clients have sent through the proxy so far.
    pub fn sent(&self) -> u64 {
        self.inner.sent.load(Ordering::SeqCst)
    }

    /// Runs `trigger` once, as soon as `bytes` more client bytes have gone through.
    pub fn trip_after(&self, bytes: u64, trigger: impl FnMut() + Send + 'static) {
        *self.inner.trigger.lock().expect("trigger lock") = Some(Box::new(trigger));
        self.inner.tripped.store(false, Ordering::SeqCst);
        self.inner.trip_at.store(self.sent() + bytes, Ordering::SeqCst);
    }

    /// Whether the last trigger has run.
    pub fn tripped(&self) -> bool {
        self.inner.tripped.load(Ordering::SeqCst)
    }

    /// A trigger that cuts every connection and refuses new ones: the server "goes away" while
    /// keeping its state.
    pub fn outage_switch(&self) -> impl FnMut() + Send + 'static {
        let inner = self.inner.clone();
        move || {
            inner.down.store(true, Ordering::SeqCst);
            inner.cut_all();
        }
    }

    /// Ends an outage: connections are forwarded again.
    pub fn set_up(&self) {
        self.inner.down.store(false, Ordering::SeqCst);
    }

    /// Holds every byte from now on, in both directions, keeping the connections open: to its
    /// clients the server hangs. New connections are accepted and held too.
    pub fn hold(&self) {
        self.inner.held.store(true, Ordering::SeqCst);
    }

    /// Ends a hold: the bytes held go through, and everything after them.
    pub fn release(&self) {
        self.inner.held.store(false, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.inner.cut_all();
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// Copies `from` to `to` on a thread until either side closes or the proxy stops, holding
/// bytes while the proxy holds; counts them when they come from a client (`client`).
fn pipe(from: std::io::Result<TcpStream>, to: std::io::Result<TcpStream>, inner: Arc<Inner>, client: bool) {
    let (Ok(mut from), Ok(mut to)) = (from, to) else { return };
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            while inner.held.load(Ordering::SeqCst) && !inner.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(2));
            }
            if inner.stop.load(Ordering::SeqCst) || (client && inner.down.load(Ordering::SeqCst)) {
                break;
            }
            // Counted before they are written, so `sent` never lags behind an answer the client
            // already has; the trigger runs after, so the bytes that cross the threshold arrive.
            if client {
                inner.sent.fetch_add(n as u64, Ordering::SeqCst);
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
            if client {
                inner.trip_if_crossed();
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream that echoes one connection's bytes back.
    fn echo() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        std::thread::spawn(move || {
            while let Ok((mut conn, _)) = listener.accept() {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 || conn.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        port
    }

    #[test]
    fn forwards_counts_and_trips_an_outage() {
        let proxy = FaultProxy::start(echo());
        let mut conn = TcpStream::connect(("127.0.0.1", proxy.port)).expect("connect");
        conn.write_all(b"hello").expect("send");
        let mut back = [0u8; 5];
        conn.read_exact(&mut back).expect("echo");
        assert_eq!(&back, b"hello");
        assert_eq!(proxy.sent(), 5);

        proxy.trip_after(3, proxy.outage_switch());
        conn.write_all(b"abcd").expect("send");
        let mut rest = Vec::new();
        // The connection is cut once the threshold is crossed: the read ends.
        let _ = conn.read_to_end(&mut rest);
        assert!(proxy.tripped());
        // While down, new connections are refused (closed at once).
        let mut refused = TcpStream::connect(("127.0.0.1", proxy.port)).expect("connect");
        let _ = refused.write_all(b"x");
        let mut nothing = Vec::new();
        let _ = refused.read_to_end(&mut nothing);
        assert!(nothing.is_empty());

        proxy.set_up();
        let mut again = TcpStream::connect(("127.0.0.1", proxy.port)).expect("connect");
        again.write_all(b"back").expect("send");
        let mut back = [0u8; 4];
        again.read_exact(&mut back).expect("echo");
        assert_eq!(&back, b"back");
    }

    #[test]
    fn holds_bytes_until_released() {
        let proxy = FaultProxy::start(echo());
        let mut conn = TcpStream::connect(("127.0.0.1", proxy.port)).expect("connect");
        proxy.hold();
        conn.write_all(b"held").expect("send");
        conn.set_read_timeout(Some(Duration::from_millis(200))).expect("read timeout");
        let mut back = [0u8; 4];
        // Nothing comes back, and the connection stays open.
        let err = conn.read(&mut back).expect_err("no bytes while held");
        assert!(matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut), "{err}");
        assert_eq!(proxy.sent(), 0);
        proxy.release();
        conn.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
        conn.read_exact(&mut back).expect("echo after the release");
        assert_eq!(&back, b"held");
        assert_eq!(proxy.sent(), 4);
    }
}
