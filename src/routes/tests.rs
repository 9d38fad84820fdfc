//! Unit tests of the routing rules.
