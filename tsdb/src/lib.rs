//! Local time-series storage.
