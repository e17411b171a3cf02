//! The host process: builds everything from a [`HostConfig`] and runs it until told to stop.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use std::net::SocketAddr;

use tokio::sync::mpsc;

use crate::api::{self, ApiState};
use crate::backends::events::{EventStore, WithPushedEvents};
use crate::backends::real::{BackendSetupError, RealCluster};
use crate::backends::simulated::{SimError, SimulatedCluster};
use crate::backends::{Clock, Cluster};
use crate::config::{BackendKind, HostConfig};
use crate::control::{Control, ControlError};
use crate::domain::cluster::TimestampMs;
use crate::registry::{PluginRegistry, RegistryError};
use crate::runtime::{
    CompiledPolicy, EngineError, PluginError, PolicyEngine, compile_plugin, read_plugin,
};
use crate::store::{StateError, StateStore};
use crate::tick::{AuditError, AuditLog, BindError, Scheduler, TickEngine};

/// Audit records kept in memory per tenant (and at most `MAX_RECENT_BYTES_PER_TENANT` of them).
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
    /// A real backend could not be set up.
    #[error(transparent)]
    Backend(#[from] BackendSetupError),
    /// A tenant's grants are malformed or overlap another tenant's.
    #[error("tenant {tenant}: {message}")]
    InvalidTenant {
        /// The tenant.
        tenant: String,
        /// What is wrong.
        message: String,
    },
    /// A tenant names a backend the config does not define.
    #[error("tenant {tenant}: no [[backends]] entry named {backend:?}")]
    UnknownBackend {
        /// The tenant.
        tenant: String,
        /// The backend it names.
        backend: String,
    },
    /// The plugin registry could not be opened.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The control plane could not be opened.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The API has no admin token.
    #[error(
        "the API needs an admin token: set SCALEHOST_ADMIN_TOKEN or give --admin-token-file (api.admin_token_file)"
    )]
    NoAdminToken,
    /// The admin token file could not be read or is empty.
    #[error("admin token file {path}: {message}")]
    AdminToken {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The API could not listen.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// How often pushed events that nobody read are expired.
const EVENT_EXPIRY_PERIOD: Duration = Duration::from_secs(10);

/// A running scalehost: the wasm engine, the tick engine and its bindings, the backend, the
/// control plane and, when configured, the HTTP API.
pub struct Host {
    runtime: Arc<PolicyEngine>,
    engine: Arc<TickEngine>,
    simulated: Option<(Arc<SimulatedCluster>, Arc<FollowedClock>)>,
    control: Arc<Control>,
    api: Option<(tokio::net::TcpListener, Arc<ApiState>)>,
    added: mpsc::UnboundedReceiver<(String, String, u64)>,
    events: Arc<EventStore>,
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
        let audit = Arc::new(AuditLog::with_rotation(
            RECENT_AUDIT_RECORDS,
            &data_dir.join("audit.jsonl"),
            config.audit,
        )?);
        let runtime = Arc::new(PolicyEngine::new(&config.engine)?);
        let (cluster, clock, simulated): (Arc<dyn Cluster>, Arc<dyn Clock>, _) =
            match config.cluster.backend {
                BackendKind::Simulated => {
                    let sim = Arc::new(SimulatedCluster::new(
                        config.cluster.simulated.clone(),
                        &config.base_dir,
                    )?);
                    let clock = Arc::new(FollowedClock {
                        sim: sim.clone(),
                        scale: config.cluster.time_scale,
                        origin: OnceLock::new(),
                    });
                    (sim.clone(), clock.clone(), Some((sim, clock)))
                }
            };
        // Pushed events are the host's, served whatever a tenant's backend.
        let events = EventStore::new();
        let engine = Arc::new(TickEngine::new(
            Arc::new(WithPushedEvents::new(cluster, events.clone(), "")),
            clock,
            state,
            audit,
            runtime.config(),
        ));
        let mut seen = std::collections::HashSet::new();
        for backend in &config.backends {
            if !seen.insert(backend.name.clone()) {
                return Err(HostError::Duplicate(format!("backend {}", backend.name)));
            }
            let real = RealCluster::connect(backend).await?;
            let identity = real.identity();
            engine.add_backend_at(
                &backend.name,
                &identity,
                Arc::new(WithPushedEvents::new(
                    Arc::new(real),
                    events.clone(),
                    &backend.name,
                )),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for tenant in &config.tenants {
            if let Some(backend) = &tenant.backend
                && !engine.has_backend(backend)
            {
                return Err(HostError::UnknownBackend {
                    tenant: tenant.name.clone(),
                    backend: backend.clone(),
                });
            }
            if !seen.insert(tenant.name.clone()) {
                return Err(HostError::Duplicate(format!("tenant {}", tenant.name)));
            }
            tenant
                .check()
                .and_then(|()| engine.check_namespaces(tenant))
                .map_err(|message| HostError::InvalidTenant {
                    tenant: tenant.name.clone(),
                    message,
                })?;
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
            let path = config.resolve(Path::new(&spec.plugin));
            let bytes = read_plugin(&path)?;
            let digest = crate::runtime::digest_of(&bytes);
            let policy = match by_digest.get(&digest) {
                Some(policy) => policy.clone(),
                None => {
                    let rt = runtime.clone();
                    // Compiling is CPU-heavy: keep it off the async workers.
                    let compiled =
                        tokio::task::spawn_blocking(move || compile_plugin(&rt, &path, &bytes))
                            .await
                            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
                    let policy = Arc::new(compiled);
                    by_digest.insert(digest, policy.clone());
                    policy
                }
            };
            engine.bind(spec.clone(), policy).await?;
        }
        // Tenants, plugins and bindings managed at run time, from the data dir.
        let admin_token = admin_token(&config)?;
        let db = crate::store::open_database(&data_dir.join("control.redb"))
            .map_err(crate::control::ControlError::from)?;
        let registry = Arc::new(PluginRegistry::open(
            runtime.clone(),
            db.clone(),
            &data_dir,
            config.api.max_plugin_bytes,
        )?);
        let static_tenants = config.tenants.iter().map(|t| t.name.clone()).collect();
        let (mut control, added) = {
            let engine = engine.clone();
            let token = admin_token.clone();
            let events = events.clone();
            tokio::task::spawn_blocking(move || {
                Control::open(
                    db,
                    registry,
                    engine,
                    events,
                    token.as_deref(),
                    static_tenants,
                )
            })
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
            .map(|control| (control, mpsc::unbounded_channel()))?
        };
        // Power operations an earlier run left in flight go on (each step is safe to repeat).
        let resumed = engine.resume_operations()?;
        if resumed > 0 {
            tracing::info!(resumed, "power operations resumed");
        }
        let (announce, added) = added;
        control.announce_to(announce);
        let control = Arc::new(control);
        let api = match config.api.listen {
            Some(addr) => {
                if admin_token.is_none() {
                    return Err(HostError::NoAdminToken);
                }
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| HostError::Listen { addr, source })?;
                Some((listener, ApiState::new(control.clone())))
            }
            None => None,
        };
        tracing::info!(
            bindings = engine.bindings().len(),
            plugins = by_digest.len(),
            "host ready"
        );
        Ok(Host {
            runtime,
            engine,
            simulated,
            control,
            api,
            added,
            events,
        })
    }

    /// The control plane (tenants, plugins, bindings managed at run time).
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// Where the API listens, when it does (port 0 in the config is resolved here).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().and_then(|(l, _)| l.local_addr().ok())
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

    /// Runs until `stop` completes, then stops the API (requests in flight are answered) and
    /// lets ticks in flight finish.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> Result<(), HostError> {
        let Host {
            engine,
            simulated,
            api,
            mut added,
            events,
            ..
        } = self;
        // Pushed events expire on a timer too, each backend's by its own clock: what no policy
        // reads is freed (and its pusher's quota with it).
        let expiry = {
            let engine = engine.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(EVENT_EXPIRY_PERIOD);
                loop {
                    every.tick().await;
                    if let Some(now) = engine.backend_now(None) {
                        events.expire("", now);
                    }
                    for name in engine.backend_names() {
                        if let Some(now) = engine.backend_now(Some(&name)) {
                            events.expire(&name, now);
                        }
                    }
                }
            })
        };
        let mut scheduler = Scheduler::new(engine.clone());
        scheduler.start_all();
        // The simulated cluster's clock follows real time, scaled, from now on; between ticks
        // the cluster moves on by itself (pods become Ready, events are pushed).
        let driver = simulated.map(|(_, clock)| {
            clock.start();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_millis(50));
                loop {
                    every.tick().await;
                    clock.now_ms();
                }
            })
        });
        let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
        let server = api.map(|(listener, state)| {
            let router = api::router(state.clone());
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "API listening");
            }
            state.set_ready();
            tokio::spawn(async move {
                let served = axum::serve(listener, router)
                    .with_graceful_shutdown(async {
                        let _ = api_stopped.await;
                    })
                    .await;
                if let Err(error) = served {
                    tracing::error!(%error, "the API stopped");
                }
            })
        });
        tokio::select! {
            () = stop => {}
            () = scheduler.follow(&mut added) => {}
        }
        tracing::info!("stopping: waiting for requests and ticks in flight");
        let _ = stop_api.send(());
        if let Some(server) = server {
            let _ = server.await;
        }
        scheduler.shutdown().await;
        if let Some(driver) = driver {
            driver.abort();
        }
        expiry.abort();
        tracing::info!("stopped");
        Ok(())
    }
}

/// The simulated cluster's clock under `serve`: real time, scaled, from the moment the host
/// runs; read exactly (the cluster is advanced to it on each read), so ticks carry their real
/// spacing. Before `start` (the demo drives the cluster itself) it is the cluster's own time.
pub(crate) struct FollowedClock {
    sim: Arc<SimulatedCluster>,
    scale: f64,
    origin: OnceLock<(std::time::Instant, TimestampMs)>,
}

impl FollowedClock {
    fn start(&self) {
        let _ = self.origin.set((std::time::Instant::now(), self.sim.now()));
    }
}

impl Clock for FollowedClock {
    fn now_ms(&self) -> TimestampMs {
        if let Some((real, start)) = self.origin.get() {
            let elapsed_ms = real.elapsed().as_secs_f64() * self.scale * 1000.0;
            self.sim.advance_to(start + elapsed_ms as u64);
        }
        self.sim.now()
    }
}

/// The admin token: from `api.admin_token_file`, else `SCALEHOST_ADMIN_TOKEN`.
fn admin_token(config: &HostConfig) -> Result<Option<String>, HostError> {
    if let Some(file) = &config.api.admin_token_file {
        let path = config.resolve(file);
        let text = std::fs::read_to_string(&path).map_err(|e| HostError::AdminToken {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(HostError::AdminToken {
                path,
                message: "the file is empty".into(),
            });
        }
        return Ok(Some(token.to_owned()));
    }
    Ok(std::env::var("SCALEHOST_ADMIN_TOKEN")
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty()))
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
