//! Prometheus's alert templates: Go's text/template language (the subset of [`parse`]) with
//! Prometheus's functions ([`funcs`]), evaluated over the alert's labels, external labels and
//! value as Prometheus does (`missingkey=zero`; `$labels`, `$externalLabels`, `$externalURL`
//! and `$value` defined first). Output matches Go's for what the tests cover, floats printed
//! through `strata_tsdb::gotext`.

mod exec;
mod funcs;
mod parse;

use std::collections::BTreeMap;

pub use exec::Val;
use parse::{Node, Parser};

/// What every alert template starts with, as in Prometheus's rules.
const DEFS: &str =
    "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}";

/// One sample of a `query` result.
#[derive(Clone, Debug, PartialEq)]
pub struct QuerySample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Runs an instant query for the `query` function at the evaluation time.
pub type QueryFn<'a> = &'a dyn Fn(&str) -> Result<Vec<QuerySample>, String>;

/// What a template is expanded over.
pub struct Data<'a> {
    pub labels: &'a BTreeMap<String, String>,
    pub external_labels: &'a BTreeMap<String, String>,
    pub external_url: &'a str,
    pub value: f64,
    /// Evaluation time, Unix seconds (`now`).
    pub now: f64,
    pub query: QueryFn<'a>,
}

#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    nodes: Vec<Node>,
}

impl Template {
    /// Parses an alert's label or annotation template named `name` (`__alert_<alertname>`);
    /// the error reads as Go's parse error.
    pub fn parse(name: &str, text: &str) -> Result<Template, String> {
        let full = format!("{DEFS}{text}");
        Ok(Template { name: name.to_owned(), nodes: Parser::parse(name, &full)? })
    }

    /// Expands the template; the error reads as Go's execution error.
    pub fn expand(&self, data: &Data<'_>) -> Result<String, String> {
        exec::execute(&self.name, &self.nodes, data)
    }
}

/// Expands `text` as an alert's label or annotation, as Prometheus does: a template that
/// fails to parse or execute gives `<error expanding template: …>` in its place.
pub fn expand_alert_text(alert: &str, text: &str, data: &Data<'_>) -> String {
    let name = format!("__alert_{alert}");
    let result = Template::parse(&name, text)
        .map_err(|e| format!("error parsing template {name}: {e}"))
        .and_then(|t| t.expand(data).map_err(|e| format!("error executing template {name}: {e}")));
    match result {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(alert, error = %e, "expanding alert template failed");
            format!("<error expanding template: {e}>")
        }
    }
}

#[cfg(test)]
mod tests;
