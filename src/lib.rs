//! community-sync: a data sync agent for smart-community public services.
//!
//! Data flows `source` → `normalize` → `store` → `reconcile` → `push`; `pipeline` wires the
//! stages for one run, `net` is the HTTP layer that sources and push share, `daemon` schedules
//! runs, `cli` is the command line, `sim` is the built-in simulator of the department systems
//! and the platform. See ARCHITECTURE.md.

pub mod audit;
pub mod bench;
pub mod city;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod daemon;
pub mod desk;
pub mod mask;
pub mod memory;
pub mod model;
pub mod net;
pub mod normalize;
pub mod pipeline;
pub mod progress;
pub mod push;
pub mod reconcile;
pub mod report;
pub mod sim;
pub mod source;
pub mod store;
