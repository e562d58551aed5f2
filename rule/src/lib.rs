//! The ruler (`strata rule`): Prometheus rule files checked as promtool checks them, recording
//! and alerting rules evaluated against a query API, alert state kept as Prometheus keeps it,
//! alerts sent to Alertmanager, results written to the ruler's own TSDB. See README.md.

pub mod alert;
pub mod api;
pub mod config;
pub mod discovery;
pub mod metrics;
pub mod notifier;
pub mod rulefmt;
pub mod ruler;
pub mod template;
pub mod ui;

/// The crate's errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rule file that cannot be read or fails the checks; one line per problem, each naming
    /// the file (and the group, rule and place where there is one) as promtool does.
    #[error("{}", errors.join("\n"))]
    RuleFile { file: String, errors: Vec<String> },
    #[error("--rule-file pattern {pattern:?}: {message}")]
    Glob { pattern: String, message: String },
    /// A `--query` or `--alertmanagers.url` value that cannot be used.
    #[error("{flag} {value:?}: {message}")]
    Peer { flag: String, value: String, message: String },
    /// A `--query.config` or `--alertmanagers.config` that cannot be used; `origin` is the
    /// file or the flag.
    #[error("{origin}: {message}")]
    Config { origin: String, message: String },
}
