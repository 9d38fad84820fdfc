//! Portcullis: a Kubernetes Ingress controller with an embedded hyper + rustls reverse proxy.

pub mod acme;
pub mod admin;
pub mod api;
pub mod app;
pub mod cli;
pub mod echo;
pub mod idle;
pub mod proxy;
pub mod routes;
pub mod source;
pub mod status;
pub mod telemetry;
pub mod tls;
