//! The tick engine: bindings, scope, guard rails, fallback, audit, and scheduling.
//!
//! Start with [`TickEngine::tick`], the one place a tick runs; [`Scheduler`] calls it on time,
//! the demo and backtests call it in virtual time. Power operations run off the tick path in
//! [`Operations`].

mod audit;
mod binding;
mod engine;
mod error;
mod guard;
mod io;
mod lateness;
mod operations;
mod outcomes;
mod registry;
mod scheduler;
mod shares;

pub use audit::{Action, AuditError, AuditLog, AuditRecord, AuditRetention, Outcome, ShadowRecord};
pub use binding::{Binding, BindingSpec, FallbackAction, FallbackSpec, Health, Shadow, TargetSpec};
pub use engine::{BindError, BindOptions, ShadowOptions, TickEngine};
pub use guard::{RailAdjustment, RailHistory, Rails, Verdict};
pub use lateness::{Lateness, LatenessSummary};
pub use operations::{Finished, Operation, Operations, Started};
pub use scheduler::Scheduler;
