//! `strata tools`: operator and benchmark utilities.
