//! Reading a Prometheus text exposition (`/metrics`).

/// Sum of every sample of metric `name` in a Prometheus text exposition; `None` when it has
/// none.
pub fn metric_sum(exposition: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value = if rest.starts_with('{') { rest.rsplit_once("} ").map(|(_, v)| v) } else { rest.strip_prefix(' ') };
        if let Some(v) = value.and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok()) {
            found = Some(found.unwrap_or(0.0) + v);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_every_series_of_the_metric_only() {
        let text = "# HELP x_total X.\n# TYPE x_total counter\nx_total{a=\"1\"} 2\nx_total{a=\"} \"} 3.5 1700000000\n\
                    x_total_created 9\nx_total 1\ny 4\n";
        assert_eq!(metric_sum(text, "x_total"), Some(6.5));
        assert_eq!(metric_sum(text, "y"), Some(4.0));
        assert_eq!(metric_sum(text, "z"), None);
    }
}
