//! `strata rule` reaching its query API (a real Prometheus 3.x) and Alertmanager (Debian's)
//! through a real HTTP forward proxy, Debian's haproxy (sending each request to the address its
//! Host header names, logging every request), as `http_config.proxy_url` says: the recording
//! rule evaluates and the alert arrives, and haproxy's log shows the ruler's query and alert
//! requests. With `no_proxy` set, loopback peers are reached directly (Go's `httpproxy` rule),
//! so the proxy sees nothing; a proxy that is down fails the rule naming it. A proxy that
//! requires credentials (haproxy answering 407 without them) lets the ruler through with the
//! user and password of its `proxy_url`, and refuses a wrong password.

mod common;

use std::ffi::OsString;
use std::time::Duration;

use common::rule::{rule, start_alertmanager, start_ruler};
use strata_testkit::{peer, tool, wait_for, Fleet, Node, Slot};

/// haproxy as a plain HTTP forward proxy on the slot's HTTP address (its `/-/ready` the
/// monitor URI), logging each request line to stdout. With `user`, it asks for that user and
/// password in `Proxy-Authorization` (answering 407 without them).
fn forward_proxy_config(slot: &Slot, user: Option<(&str, &str)>) -> String {
    let (userlist, auth) = match user {
        Some((name, password)) => (
            format!("userlist proxy_users\n  user {name} insecure-password {password}\n"),
            "  option http-use-proxy-header\n  http-request auth realm proxy unless { http_auth(proxy_users) }\n",
        ),
        None => (String::new(), ""),
    };
    format!(
        "global\n  log stdout format raw local0\n\
         defaults\n  mode http\n  log global\n  option httplog\n  timeout connect 2s\n  timeout client 30s\n  \
         timeout server 30s\n{userlist}\
         frontend forward\n  bind {}\n  monitor-uri /-/ready\n{auth}  default_backend dynamic\n\
         backend dynamic\n  http-request set-dst hdr_ip(host)\n  http-request set-dst-port hdr(host),field(2,:)\n  \
         server target 0.0.0.0:0\n",
        slot.http
    )
}

/// Debian's haproxy started as [`forward_proxy_config`] says, in `fleet` as `name`.
fn start_forward_proxy(fleet: &mut Fleet, name: &str, user: Option<(&str, &str)>) -> (Node, Slot) {
    let slot = fleet.slot(name);
    let config = slot.dir.join("haproxy.cfg");
    std::fs::write(&config, forward_proxy_config(&slot, user)).unwrap();
    let proxy = Node::start(&tool("haproxy"), &slot, ["-db".into(), "-f".into(), OsString::from(&config)]);
    (proxy, slot)
}

/// Requests for `path` haproxy has logged (request lines naming a URL) in its whole log.
fn proxied(proxy: &Slot, path: &str) -> usize {
    let log = std::fs::read_to_string(&proxy.log).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains(" \"GET http://") || l.contains(" \"POST http://"))
        .filter(|l| l.contains(path))
        .count()
}

#[test]
fn ruler_reaches_its_peers_through_an_http_proxy() {
    let work = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::new(work.path());
    let prom_slot = fleet.slot("prometheus");
    let prometheus =
        Node::start(&peer("prometheus"), &prom_slot, prom_slot.prometheus_args("global:\n  scrape_interval: 15s\n"));
    let (mut am, am_addr) = start_alertmanager(work.path(), None);
    am.wait_http_ok(&am_addr, "/-/ready", Duration::from_secs(60));
    let (_proxy, proxy_slot) = start_forward_proxy(&mut fleet, "haproxy", None);

    let http_config = |extra: &str| format!("  http_config:\n    proxy_url: http://{}\n{extra}", proxy_slot.http);
    let query_config = |extra: &str| format!("- static_configs: ['{}']\n{}", prom_slot.http, http_config(extra));
    let am_config = |extra: &str| {
        format!(
            "alertmanagers:\n- static_configs: ['{am_addr}']\n  api_version: v2\n  timeout: 5s\n{}",
            http_config(extra)
        )
    };

    let ruler = start_ruler(&mut fleet, work.path(), "proxied", &query_config(""), &am_config(""));
    wait_for("the recording rule evaluated through the proxy", Duration::from_secs(60), || {
        let r = rule(&ruler, "tls:answer")?;
        (r["health"] == "ok").then_some(()).ok_or_else(|| r.to_string())
    })
    .unwrap();
    wait_for("the alert in Alertmanager, sent through the proxy", Duration::from_secs(60), || {
        let v = strata_testkit::http::get_json(&am_addr, "/api/v2/alerts")?;
        v.as_array()
            .and_then(|a| a.iter().find(|a| a["labels"]["alertname"] == "OverTls" && a["labels"]["ruler"] == "proxied"))
            .map(|_| ())
            .ok_or_else(|| format!("not yet: {v}"))
    })
    .unwrap();
    wait_for("haproxy's log of the ruler's requests", Duration::from_secs(30), || {
        let (queries, alerts) = (proxied(&proxy_slot, "/api/v1/query"), proxied(&proxy_slot, "/api/v2/alerts"));
        (queries > 0 && alerts > 0).then_some(()).ok_or_else(|| format!("{queries} queries, {alerts} alerts proxied"))
    })
    .unwrap();
    let log = std::fs::read_to_string(&proxy_slot.log).unwrap();
    assert!(log.contains(&format!("http://{}/api/v1/query", prom_slot.http)), "{log}");
    drop(ruler);

    // no_proxy set: loopback peers are reached directly, the proxy sees nothing more.
    let before = proxied(&proxy_slot, "/api/");
    let no_proxy = "    no_proxy: example.com\n";
    let direct = start_ruler(&mut fleet, work.path(), "direct", &query_config(no_proxy), &am_config(no_proxy));
    wait_for("the recording rule evaluated directly", Duration::from_secs(60), || {
        let r = rule(&direct, "tls:answer")?;
        let evaluated = r["health"] == "ok" && r["lastEvaluation"] != "0001-01-01T00:00:00Z";
        evaluated.then_some(()).ok_or_else(|| r.to_string())
    })
    .unwrap();
    assert_eq!(proxied(&proxy_slot, "/api/"), before, "requests went through the proxy despite no_proxy");
    drop(direct);

    // A proxy asking for credentials: those of proxy_url get through, a wrong password does not.
    let (_auth_proxy, auth_slot) = start_forward_proxy(&mut fleet, "haproxy-auth", Some(("strata", "s3cr3t")));
    let through = |password: &str| {
        format!(
            "- static_configs: ['{}']\n  http_config:\n    proxy_url: http://strata:{password}@{}\n",
            prom_slot.http, auth_slot.http
        )
    };
    let authenticated = start_ruler(&mut fleet, work.path(), "proxy-auth", &through("s3cr3t"), &am_config(""));
    wait_for("the recording rule evaluated through the authenticating proxy", Duration::from_secs(60), || {
        let r = rule(&authenticated, "tls:answer")?;
        (r["health"] == "ok").then_some(()).ok_or_else(|| r.to_string())
    })
    .unwrap();
    assert!(proxied(&auth_slot, "/api/v1/query") > 0, "the query did not go through the authenticating proxy");
    drop(authenticated);
    let refused = start_ruler(&mut fleet, work.path(), "proxy-auth-wrong", &through("wrong"), &am_config(""));
    wait_for("the proxy's 407 in the rule's health", Duration::from_secs(60), || {
        let r = rule(&refused, "tls:answer")?;
        let error = r["lastError"].as_str().unwrap_or_default();
        (r["health"] == "err" && error.contains("407")).then_some(()).ok_or_else(|| r.to_string())
    })
    .unwrap();
    drop(refused);
    drop(prometheus);

    // A proxy that is down: the rule fails, naming it.
    let down = format!("127.0.0.1:{}", strata_testkit::free_port());
    let config = format!("- static_configs: ['{}']\n  http_config:\n    proxy_url: http://{down}\n", prom_slot.http);
    let failing = start_ruler(&mut fleet, work.path(), "proxy-down", &config, &am_config(""));
    wait_for("the unreachable proxy in the rule's health", Duration::from_secs(60), || {
        let r = rule(&failing, "tls:answer")?;
        let error = r["lastError"].as_str().unwrap_or_default();
        (r["health"] == "err" && error.contains(&down)).then_some(()).ok_or_else(|| r.to_string())
    })
    .unwrap();
}
