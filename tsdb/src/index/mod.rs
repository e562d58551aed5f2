//! The block index file, format v2.
