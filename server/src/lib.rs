//! flotilla-server: the user's front door. Applications and AppProjects from watch-fed stores
//! over a versioned JSON API (`/api/v1`), every call behind authentication. Stateless; it
//! must not reconcile, render or write to destination clusters (the controllers' job).
#![forbid(unsafe_code)]

pub mod actions;
pub mod api;
pub mod app_api;
pub mod auth;
pub mod config_api;
pub mod controllers;
pub mod fleet_api;
pub mod fleet_memory;
pub mod jwt;
pub mod oidc;
pub mod project_tokens;
pub mod query;
pub mod rbac;
pub mod scope;
pub mod session;
pub mod stream;
pub mod ui;
