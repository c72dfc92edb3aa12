//! flotilla-appset: Argo CD's ApplicationSet, pure: its types (`types`), the generators that
//! turn a set's spec and what the cluster and Git hold into parameter sets (`generators`), and
//! the templates that turn parameters into Applications (`template`).
//! Must not know Kubernetes clients, Git transports or the controller: generators read what
//! they need through the `generators::Inputs` trait, which the controller implements.
#![forbid(unsafe_code)]

pub mod generators;
pub mod template;
pub mod types;
