//! Where objects come from: a directory of manifests (standalone mode).

pub mod dir;
