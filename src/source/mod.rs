//! Where objects come from: a directory of manifests (standalone) or the API server (cluster).

pub mod dir;
pub mod kube;
pub mod lease;
pub mod preflight;
