//! Wire formats spoken by Strata.
