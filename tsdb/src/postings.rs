//! Postings lists and how matchers select them.
