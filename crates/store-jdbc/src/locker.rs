//! Lockers.
