//! flotilla-controller: the Argo CD-dialect types (Application, AppProject), the cluster
//! registry, per-cluster live caches, diff, health, sync and status, and `run` which wires
//! them into the reconcile loop. Must not render manifests itself: rendering belongs to the
//! repo-server, reached over gRPC.
#![forbid(unsafe_code)]

pub mod appset_controller;
pub mod appset_rollout;
pub mod appset_scm;
pub mod client_limits;
pub mod cluster_auth;
pub mod clusters;
pub mod config;
pub mod config_map;
pub mod context;
pub mod diff;
pub mod engine;
pub mod events;
pub mod explain;
pub mod health;
pub mod health_kinds;
pub mod hooks;
pub mod ignore;
pub mod live;
pub mod lua_health;
pub mod manifests;
pub mod metrics;
pub mod metrics_argocd;
pub mod normalize;
pub mod operation;
pub mod phase_cpu;
pub mod plan;
pub mod postdelete;
pub mod project;
pub mod queue;
pub mod reconcile;
pub mod redact;
pub mod repo_pool;
pub mod repos;
pub mod run;
pub mod selection;
pub mod settings;
pub mod status;
pub mod status_routes;
pub mod sync;
pub mod syncop;
pub mod tracking;
pub mod tree;
pub mod types;
pub mod webhook;
