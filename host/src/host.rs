//! The host process: builds everything from a [`HostConfig`] and runs it until told to stop.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::backends::simulated::{SimError, SimulatedCluster};
use crate::backends::{Clock, Cluster};
use crate::config::{BackendKind, HostConfig};
use crate::runtime::{CompileError, CompiledPolicy, EngineError, PolicyEngine};
use crate::state::{StateError, StateStore};
use crate::tick::{AuditError, AuditLog, BindError, Scheduler, TickEngine};

/// Audit records kept in memory.
const RECENT_AUDIT_RECORDS: usize = 10_000;

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The data dir could not be created.
    #[error("cannot create the data dir {path}")]
    DataDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The state store failed to open.
    #[error(transparent)]
    State(#[from] StateError),
    /// The audit log failed to open.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The wasm engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The simulated cluster could not be built.
    #[error("simulated cluster")]
    Sim(#[from] SimError),
    /// A plugin could not be loaded.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// A binding was refused.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// Two tenants or two bindings of a tenant share a name.
    #[error("duplicate {0} in the config")]
    Duplicate(String),
}

/// Why a plugin file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The file could not be read.
    #[error("cannot read plugin {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// It is not a policy component.
    #[error("{path}")]
    Compile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: CompileError,
    },
}

/// Reads and compiles a plugin file.
pub fn load_plugin(engine: &PolicyEngine, path: &Path) -> Result<CompiledPolicy, PluginError> {
    let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
        path: path.to_owned(),
        source,
    })?;
    engine
        .compile(&bytes)
        .map_err(|source| PluginError::Compile {
            path: path.to_owned(),
            source,
        })
}

/// A running scalehost: the wasm engine, the tick engine and its bindings, and the backend.
pub struct Host {
    runtime: Arc<PolicyEngine>,
    engine: Arc<TickEngine>,
    simulated: Option<(Arc<SimulatedCluster>, f64)>,
}

impl Host {
    /// Opens the data dir, builds the backend, compiles each plugin once per digest and binds
    /// every binding (each config checked by its policy now, not at its first tick).
    pub async fn from_config(config: HostConfig) -> Result<Host, HostError> {
        let data_dir = config.resolve(&config.data_dir);
        std::fs::create_dir_all(&data_dir).map_err(|source| HostError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
        let state = Arc::new(StateStore::open(&data_dir.join("state.redb"))?);
        let audit = Arc::new(AuditLog::with_file(
            RECENT_AUDIT_RECORDS,
            &data_dir.join("audit.jsonl"),
        )?);
        let runtime = Arc::new(PolicyEngine::new(&config.engine)?);
        let (cluster, clock, simulated): (Arc<dyn Cluster>, Arc<dyn Clock>, _) =
            match config.cluster.backend {
                BackendKind::Simulated => {
                    let sim = Arc::new(SimulatedCluster::new(
                        config.cluster.simulated.clone(),
                        &config.base_dir,
                    )?);
                    (
                        sim.clone(),
                        sim.clone(),
                        Some((sim, config.cluster.time_scale)),
                    )
                }
            };
        let engine = Arc::new(TickEngine::new(
            cluster,
            clock,
            state,
            audit,
            runtime.max_memory_bytes(),
        ));
        let mut seen = std::collections::HashSet::new();
        for tenant in &config.tenants {
            if !seen.insert(tenant.name.clone()) {
                return Err(HostError::Duplicate(format!("tenant {}", tenant.name)));
            }
            engine.add_tenant(tenant.clone());
        }
        let mut seen = std::collections::HashSet::new();
        // Compiled once per digest: the same bytes under two paths compile once.
        let mut by_digest: HashMap<String, Arc<CompiledPolicy>> = HashMap::new();
        for spec in &config.bindings {
            if !seen.insert((spec.tenant.clone(), spec.name.clone())) {
                return Err(HostError::Duplicate(format!(
                    "binding {}/{}",
                    spec.tenant, spec.name
                )));
            }
            let path = config.resolve(&spec.plugin);
            let bytes = std::fs::read(&path).map_err(|source| PluginError::Read {
                path: path.clone(),
                source,
            })?;
            let digest = crate::runtime::digest_of(&bytes);
            let policy = match by_digest.get(&digest) {
                Some(policy) => policy.clone(),
                None => {
                    let rt = runtime.clone();
                    // Compiling is CPU-heavy: keep it off the async workers.
                    let compiled = tokio::task::spawn_blocking(move || rt.compile(&bytes))
                        .await
                        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
                        .map_err(|source| PluginError::Compile { path, source })?;
                    let policy = Arc::new(compiled);
                    by_digest.insert(digest, policy.clone());
                    policy
                }
            };
            let engine = engine.clone();
            let spec = spec.clone();
            tokio::task::spawn_blocking(move || engine.bind(spec, policy))
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
        }
        tracing::info!(
            bindings = config.bindings.len(),
            plugins = by_digest.len(),
            "host ready"
        );
        Ok(Host {
            runtime,
            engine,
            simulated,
        })
    }

    /// The tick engine (bindings, audit, state).
    pub fn engine(&self) -> &Arc<TickEngine> {
        &self.engine
    }

    /// The wasm engine.
    pub fn runtime(&self) -> &Arc<PolicyEngine> {
        &self.runtime
    }

    /// The simulated cluster, when that is the backend.
    pub fn simulated(&self) -> Option<&Arc<SimulatedCluster>> {
        self.simulated.as_ref().map(|(sim, _)| sim)
    }

    /// Runs until SIGTERM or Ctrl-C, then lets ticks in flight finish.
    pub async fn run(self) -> Result<(), HostError> {
        self.run_until(shutdown_signal()).await
    }

    /// Runs until `stop` completes, then lets ticks in flight finish.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> Result<(), HostError> {
        let mut scheduler = Scheduler::new(self.engine.clone());
        scheduler.start_all();
        // The simulated cluster's clock follows real time, scaled.
        let driver = self.simulated.clone().map(|(sim, scale)| {
            tokio::spawn(async move {
                let (start_real, start_virtual) = (tokio::time::Instant::now(), sim.now());
                let mut every = tokio::time::interval(Duration::from_millis(50));
                loop {
                    every.tick().await;
                    let elapsed = start_real.elapsed().as_secs_f64() * scale;
                    sim.advance_to(start_virtual + (elapsed * 1000.0) as u64);
                }
            })
        });
        stop.await;
        tracing::info!("stopping: waiting for ticks in flight");
        scheduler.shutdown().await;
        if let Some(driver) = driver {
            driver.abort();
        }
        tracing::info!("stopped");
        Ok(())
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
