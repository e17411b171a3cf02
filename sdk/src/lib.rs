//! Write scalehost autoscaling policies in Rust.
//!
//! A policy implements [`Policy`] and is exported with [`export_policy!`]; the host calls
//! [`Policy::validate`] when the policy is bound and [`Policy::tick`] on every tick. Start with
//! [`Policy`], then see [`metrics`] for reads, [`actuation`] for intents, [`outcomes`] for what
//! became of them, [`nodes`] for the per-node view and [`state`] for what must survive between
//! ticks (guest memory never does). Policies built with this crate are components of the world
//! `scalehost:policy/policy@0.2.0`.
//!
//! ```no_run
//! use scalehost_sdk::{Policy, ScaleChange, WorkloadRef, actuation, export_policy, metrics};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Config { target: WorkloadRef, per_replica: f64 }
//!
//! struct Proportional;
//!
//! impl Policy for Proportional {
//!     type Config = Config;
//!
//!     fn validate(config: &Config) -> Result<(), String> {
//!         if config.per_replica > 0.0 { Ok(()) } else { Err("per_replica must be > 0".into()) }
//!     }
//!
//!     fn tick(config: Config) -> Result<(), String> {
//!         let load = metrics::query_sum("scalehost_requests_per_minute")?.unwrap_or(0.0);
//!         let wanted = (load / config.per_replica).ceil() as u32;
//!         actuation::scale(&config.target, ScaleChange::To(wanted), "proportional to load")?;
//!         Ok(())
//!     }
//! }
//!
//! export_policy!(Proportional);
//! ```

pub mod actuation;
pub mod clock;
pub mod log;
pub mod metrics;
pub mod nodes;
pub mod outcomes;
pub mod state;
mod types;

pub use types::{
    Capacity, HostError, PowerState, Sample, ScaleChange, Series, Vm, WorkloadKind, WorkloadRef,
    WorkloadStatus,
};

/// The bindings generated from the WIT world; use the typed wrappers of this crate instead.
#[doc(hidden)]
#[allow(missing_docs, unsafe_code)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../wit/policy@0.2.0",
        world: "policy",
        pub_export_macro: true,
        default_bindings_module: "scalehost_sdk::wit",
    });
    pub use self::scalehost::policy::*;
}

/// An autoscaling policy: parses its JSON configuration, checks it, and decides on every tick.
pub trait Policy {
    /// The policy's configuration, parsed from the binding's JSON.
    type Config: serde::de::DeserializeOwned;

    /// Checks a parsed configuration beyond what its type enforces. The default accepts it.
    fn validate(config: &Self::Config) -> Result<(), String> {
        let _ = config;
        Ok(())
    }

    /// Runs one decision. Intents recorded through [`actuation`] are applied by the host only if
    /// this returns `Ok`.
    fn tick(config: Self::Config) -> Result<(), String>;
}

/// Parses a JSON configuration, naming the field at fault on error.
pub fn parse_config<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, String> {
    serde_json::from_str(json).map_err(|e| format!("invalid config: {e}"))
}

#[doc(hidden)]
pub mod __private {
    use super::{Policy, parse_config};

    pub fn validate<P: Policy>(json: &str) -> Result<(), String> {
        let config = parse_config::<P::Config>(json)?;
        P::validate(&config)
    }

    pub fn tick<P: Policy>(json: &str) -> Result<(), String> {
        let config = parse_config::<P::Config>(json)?;
        P::tick(config)
    }
}

/// Exports a [`Policy`] implementation as the component's `validate-config` and `tick`.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        struct __ScalehostExport;

        impl $crate::wit::Guest for __ScalehostExport {
            fn validate_config(config: String) -> Result<(), String> {
                $crate::__private::validate::<$policy>(&config)
            }

            fn tick(config: String) -> Result<(), String> {
                $crate::__private::tick::<$policy>(&config)
            }
        }

        $crate::wit::export!(__ScalehostExport with_types_in $crate::wit);
    };
}
