//! `scalehost doctor`: checks every configured backend and prints one line per check.
//!
//! Start with [`run`]. Prometheus: reachable and answering a query. Kubernetes: reachable,
//! authenticated (the server's version), and each permission scalehost needs, asked through
//! SelfSubjectAccessReview. vSphere: the login, and every pool VM found by name. A check that
//! fails says why in its line; the command exits non-zero when any fails.

use std::sync::Arc;

use crate::backends::kubernetes::Kubernetes;
use crate::backends::real::{BackendConfig, RealCluster};
use crate::config::HostConfig;

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked, e.g. `prod/kubernetes: update deployments/scale`.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found, or why it failed.
    pub detail: String,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mark = if self.ok { "ok  " } else { "FAIL" };
        write!(f, "{mark} {}: {}", self.name, self.detail)
    }
}

/// The permissions the Kubernetes backend uses: (verb, group, resource, subresource, why).
pub const KUBERNETES_PERMISSIONS: &[(&str, &str, &str, &str, &str)] = &[
    ("get", "apps", "deployments", "", "read workloads"),
    ("get", "apps", "statefulsets", "", "read workloads"),
    ("get", "apps", "deployments", "scale", "read replicas"),
    (
        "update",
        "apps",
        "deployments",
        "scale",
        "scale deployments",
    ),
    ("get", "apps", "statefulsets", "scale", "read replicas"),
    (
        "update",
        "apps",
        "statefulsets",
        "scale",
        "scale stateful sets",
    ),
    ("list", "", "pods", "", "capacity and drains"),
    ("list", "", "nodes", "", "capacity"),
    ("patch", "", "nodes", "", "cordon and uncordon"),
    ("create", "", "pods", "eviction", "drain"),
    (
        "list",
        "metrics.k8s.io",
        "pods",
        "",
        "CPU usage (optional API)",
    ),
];

/// Runs every check of `config`'s backends.
pub async fn run(config: &HostConfig) -> Vec<Check> {
    let mut checks = Vec::new();
    if config.backends.is_empty() {
        checks.push(Check {
            name: "backends".into(),
            ok: true,
            detail: "none configured: every tenant uses the simulated cluster".into(),
        });
    }
    for backend in &config.backends {
        checks.extend(check_backend(backend).await);
    }
    checks
}

async fn check_backend(config: &BackendConfig) -> Vec<Check> {
    let name = &config.name;
    let real = match RealCluster::connect(config).await {
        Ok(real) => Arc::new(real),
        Err(error) => {
            return vec![Check {
                name: format!("{name}: setup"),
                ok: false,
                detail: crate::domain::display_chain(&error),
            }];
        }
    };
    let work = real;
    let pools = &config.vm_pools;
    let backend = name.clone();
    {
        let mut checks = Vec::new();
        if let Some(prometheus) = work.prometheus() {
            checks.push(match prometheus.check().await {
                Ok(()) => Check {
                    name: format!("{backend}/prometheus"),
                    ok: true,
                    detail: "reachable; answered a query".into(),
                },
                Err(error) => Check {
                    name: format!("{backend}/prometheus"),
                    ok: false,
                    detail: error.to_string(),
                },
            });
        }
        if let Some(kubernetes) = work.kubernetes() {
            checks.extend(check_kubernetes(&backend, kubernetes).await);
        }
        if let Some(vsphere) = work.vsphere() {
            let login = vsphere.check().await;
            let logged_in = login.is_ok();
            checks.push(Check {
                name: format!("{backend}/vsphere"),
                ok: logged_in,
                detail: login.map_or_else(|e| e.to_string(), |()| "logged in".into()),
            });
            if logged_in {
                for pool in pools {
                    let names: Vec<String> = pool.vms.iter().map(|v| v.name.clone()).collect();
                    let found = vsphere.vms(&names).await;
                    let check = match found {
                        Ok(found) => {
                            let missing: Vec<&String> = names
                                .iter()
                                .filter(|n| !found.iter().any(|f| &f.name == *n))
                                .collect();
                            Check {
                                name: format!("{backend}/vsphere: pool {}", pool.name),
                                ok: missing.is_empty(),
                                detail: if missing.is_empty() {
                                    format!("{} VMs found", names.len())
                                } else {
                                    format!("VMs not found in vCenter: {missing:?}")
                                },
                            }
                        }
                        Err(error) => Check {
                            name: format!("{backend}/vsphere: pool {}", pool.name),
                            ok: false,
                            detail: error.to_string(),
                        },
                    };
                    checks.push(check);
                }
            }
        }
        checks
    }
}

async fn check_kubernetes(backend: &str, kubernetes: &Kubernetes) -> Vec<Check> {
    let mut checks = Vec::new();
    match kubernetes.version().await {
        Ok(version) => checks.push(Check {
            name: format!("{backend}/kubernetes"),
            ok: true,
            detail: format!("reachable and authenticated; server {version}"),
        }),
        Err(error) => {
            checks.push(Check {
                name: format!("{backend}/kubernetes"),
                ok: false,
                detail: error.to_string(),
            });
            return checks;
        }
    }
    for (verb, group, resource, subresource, why) in KUBERNETES_PERMISSIONS {
        let what = if subresource.is_empty() {
            format!("{verb} {resource}")
        } else {
            format!("{verb} {resource}/{subresource}")
        };
        let check = match kubernetes.can(verb, group, resource, subresource).await {
            Ok(true) => Check {
                name: format!("{backend}/kubernetes: {what}"),
                ok: true,
                detail: format!("allowed ({why})"),
            },
            Ok(false) => Check {
                name: format!("{backend}/kubernetes: {what}"),
                ok: false,
                detail: format!("denied: needed to {why}"),
            },
            Err(error) => Check {
                name: format!("{backend}/kubernetes: {what}"),
                ok: false,
                detail: error.to_string(),
            },
        };
        checks.push(check);
    }
    checks
}
