//! Label matchers.
