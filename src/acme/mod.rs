//! Automatic certificates over ACME: issuers, orders, renewal, and the challenge answers
//! every replica serves.

pub mod challenge;
pub mod client;
pub mod desired;
pub mod issuer;
pub mod metrics;
pub mod schedule;
