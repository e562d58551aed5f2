//! Go's text formats, in one place, for everything Strata prints or reads the way Prometheus,
//! promtool and Thanos do: output is compared with theirs byte for byte, and input must be
//! accepted and refused exactly as they accept and refuse it.
//!
//! - [`float`]: `strconv.FormatFloat` (`%g`, `'f'`, `%f`), ties included.
//! - [`number`]: `strconv.ParseFloat` and `ParseInt` (base 0).
//! - [`quote`]: `strconv.Quote` and `QuoteRune`, with Go's `IsPrint`.
//! - [`duration`]: Prometheus's `model.ParseDuration` (flags, PromQL, API parameters, the
//!   objstore YAML) and Go's `time.Duration.String`.

pub mod duration;
pub mod float;
pub mod number;
pub mod quote;

pub use duration::{deserialize_model_duration, format_duration, format_model_duration, parse_duration, DurationError};
pub use float::{format_f, format_g, format_g_prec, format_percent_f, write_f, write_g};
pub use number::{parse_float, parse_int, NumError, NumErrorKind};
pub use quote::{is_print, quote, quote_bytes, quote_rune};
