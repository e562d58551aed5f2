//! Certificates for the TLS tests: two CAs (`test`, `other`), a server certificate for
//! localhost and 127.0.0.1 and a client certificate from `test`, made with openssl; the
//! `--web.config.file` of a Prometheus-style server that requires the client certificate, and
//! a Prometheus serving with it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use strata_testkit::{peer, wait_for, Fleet, Node, Proc};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA `<name>-ca.pem` / `.key` in `dir`.
fn make_ca(dir: &Path, name: &str) {
    let (key, cert) = (format!("{name}-ca.key"), format!("{name}-ca.pem"));
    openssl(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &key]);
    openssl(
        dir,
        &["req", "-x509", "-new", "-key", &key, "-out", &cert, "-days", "2", "-subj", &format!("/CN={name}-ca")],
    );
}

/// A certificate `<name>.pem` / `.key` signed by CA `ca`, with `extensions` (an openssl
/// extension file's lines).
fn make_cert(dir: &Path, ca: &str, name: &str, extensions: &str) {
    let (key, csr, cert, ext) =
        (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"));
    std::fs::write(dir.join(&ext), extensions).unwrap();
    openssl(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &key]);
    openssl(dir, &["req", "-new", "-key", &key, "-out", &csr, "-subj", &format!("/CN={name}")]);
    let (ca_cert, ca_key) = (format!("{ca}-ca.pem"), format!("{ca}-ca.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_cert,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
}

pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        make_ca(dir, "test");
        make_ca(dir, "other");
        make_cert(dir, "test", "server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
        make_cert(dir, "test", "client", "extendedKeyUsage=clientAuth\n");
        Pki { dir: dir.to_owned() }
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    /// The `--web.config.file` of a server that speaks HTTPS only and requires a client
    /// certificate from the test CA.
    pub fn web_config(&self) -> String {
        let file = self.dir.join("web.yml");
        std::fs::write(
            &file,
            format!(
                "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n  \
                 client_ca_file: {}\n",
                self.path("server.pem"),
                self.path("server.key"),
                self.path("test-ca.pem")
            ),
        )
        .unwrap();
        file.display().to_string()
    }

    /// GET `https://<addr><path>` with the test CA and client certificate.
    pub fn get(&self, addr: &str, path: &str) -> Result<String, String> {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "5", "--cacert", &self.path("test-ca.pem")])
            .args(["--cert", &self.path("client.pem"), "--key", &self.path("client.key")])
            .arg(format!("https://{addr}{path}"))
            .output()
            .map_err(|e| format!("run curl: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn wait_ready(&self, name: &str, proc: &mut Proc, addr: &str) {
        wait_for(&format!("{name} ready over https"), Duration::from_secs(60), || {
            proc.assert_running();
            self.get(addr, "/-/ready").map(|_| ())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", proc.log_tail()));
    }

    /// A Prometheus 3.x named `prometheus` in `fleet`, serving HTTPS only with [`Pki::web_config`],
    /// once it answers ready.
    pub fn start_prometheus(&self, fleet: &mut Fleet) -> Node {
        let slot = fleet.slot("prometheus");
        let mut args = slot.prometheus_args("global:\n  scrape_interval: 15s\n");
        args.push(format!("--web.config.file={}", self.web_config()).into());
        let mut prometheus = Node::spawn(&peer("prometheus"), &slot, args);
        self.wait_ready("prometheus", &mut prometheus.proc, &slot.http);
        prometheus
    }

    /// An `http_config` block (indented for a list entry) with the given tls_config fields.
    pub fn http_config(&self, ca: &str, client_cert: bool, server_name: Option<&str>) -> String {
        let mut s = format!("  http_config:\n    tls_config:\n      ca_file: {}\n", self.path(&format!("{ca}-ca.pem")));
        if client_cert {
            s.push_str(&format!(
                "      cert_file: {}\n      key_file: {}\n",
                self.path("client.pem"),
                self.path("client.key")
            ));
        }
        if let Some(name) = server_name {
            s.push_str(&format!("      server_name: {name}\n"));
        }
        s
    }
}
