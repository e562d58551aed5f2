//! A blocking HTTP client for tests, on a plain `TcpStream`: one HTTP/1.0 request per
//! connection, so the server closes the connection to end the body and never answers with the
//! chunked transfer coding. Bodies therefore come back byte for byte as the server wrote them,
//! and two servers' answers can be compared as they are.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long a request may wait for the server to take or give a byte.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Status and body (lossily UTF-8) of an answer.
pub type Answer = Result<(u16, String), String>;

/// Sends `method path` with `headers` and `body` to `addr` (`host:port`).
pub fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: */*\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method != "GET" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.write_all(body))
        .map_err(|e| format!("send {method} {path} to {addr}: {e}"))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| format!("read from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) =
        text.split_once("\r\n\r\n").ok_or_else(|| format!("malformed HTTP response from {addr}{path}: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line from {addr}{path}: {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// `GET http://addr/path`.
pub fn get(addr: &str, path: &str) -> Answer {
    request(addr, "GET", path, &[], b"")
}

/// `POST http://addr/path` with `headers` and `body`.
pub fn post(addr: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    request(addr, "POST", path, headers, body)
}

/// [`get`] that insists on 200 and parses the body as JSON.
pub fn get_json(addr: &str, path: &str) -> Result<serde_json::Value, String> {
    let (status, body) = get(addr, path)?;
    if status != 200 {
        return Err(format!("GET {addr}{path}: status {status}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("GET {addr}{path}: bad JSON ({e}): {body}"))
}

/// Percent-encodes a query-string component (everything but RFC 3986's unreserved characters).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves one connection with `answer`, handing back the request it read.
    fn serve_once(answer: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address").to_string();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            loop {
                let text = String::from_utf8_lossy(&got).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .map_or(0, |n| n.parse::<usize>().expect("Content-Length is a number"));
                    if body.len() >= len {
                        break;
                    }
                }
                let n = conn.read(&mut buf).expect("read request");
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            conn.write_all(answer.as_bytes()).expect("answer");
            String::from_utf8_lossy(&got).into_owned()
        });
        (addr, server)
    }

    #[test]
    fn post_sends_headers_and_body_and_reads_status_and_body() {
        let (addr, server) = serve_once("HTTP/1.0 201 Created\r\nX: y\r\n\r\n{\"ok\":\r\n\r\ntrue}");
        let answer = post(&addr, "/p?q=1", &[("Content-Type", "text/plain")], b"body");
        assert_eq!(answer, Ok((201, "{\"ok\":\r\n\r\ntrue}".to_owned())));
        let request = server.join().expect("server");
        assert!(request.starts_with("POST /p?q=1 HTTP/1.0\r\n"), "{request}");
        assert!(request.contains("\r\nContent-Type: text/plain\r\n"), "{request}");
        assert!(request.ends_with("Content-Length: 4\r\n\r\nbody"), "{request}");
    }

    #[test]
    fn get_json_insists_on_200() {
        let (addr, server) = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\nnot ready");
        assert_eq!(get_json(&addr, "/x"), Err(format!("GET {addr}/x: status 503: not ready")));
        let request = server.join().expect("server");
        assert!(!request.contains("Content-Length"), "{request}");
    }

    #[test]
    fn a_closed_port_is_an_error() {
        let port = crate::free_port();
        assert!(get(&format!("127.0.0.1:{port}"), "/").is_err());
    }

    #[test]
    fn url_encoding_keeps_only_unreserved_characters() {
        assert_eq!(url_encode(r#"up{a="b c"}[5m] ~ü"#), "up%7Ba%3D%22b%20c%22%7D%5B5m%5D%20~%C3%BC");
    }
}
