//! A real kube-apiserver (with etcd) for the tests, started once per test binary by the
//! repository's `tests/k8s/start.sh` and stopped by it once the binary exits.
//!
//! Where the binaries come from is the script's business (`$KUBEBUILDER_ASSETS`, the envtest
//! convention, else `../shared/k8s/bin/`); when it finds none, the tests that need it fail with
//! its one line saying how to get them. kubectl, for a test's set-up, is envtest's when
//! `$KUBEBUILDER_ASSETS` has it, else the one on PATH.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A running control plane: its URL, CA and two identities.
#[derive(Debug)]
pub struct ControlPlane {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The CA of the API server's certificate.
    pub ca: PathBuf,
    /// A file holding the token of `admin` (group `system:masters`).
    pub admin_token_file: PathBuf,
    /// A file holding the token of `tester` (in no group: RBAC applies).
    pub user_token_file: PathBuf,
    /// The admin's kubeconfig (for kubectl in a test's set-up).
    pub kubeconfig: PathBuf,
}

impl ControlPlane {
    /// The test binary's control plane, started at the first call.
    pub fn shared() -> &'static ControlPlane {
        static PLANE: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
        match PLANE.get_or_init(start) {
            Ok(plane) => plane,
            Err(why) => panic!("{why}"),
        }
    }

    /// Runs kubectl as the admin with `args`, feeding `stdin`; panics with its output on failure.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        use std::io::Write;
        let mut child = Command::new(kubectl())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run kubectl ({e}): set KUBEBUILDER_ASSETS to envtest's binaries \
                     (they include kubectl) or put kubectl on PATH"
                )
            });
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("kubectl stdin");
        }
        let out = child.wait_with_output().expect("kubectl ends");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// envtest's kubectl (`$KUBEBUILDER_ASSETS/kubectl`) when there is one, else the one on PATH.
fn kubectl() -> PathBuf {
    std::env::var_os("KUBEBUILDER_ASSETS")
        .map(|dir| Path::new(&dir).join("kubectl"))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from("kubectl"))
}

fn start() -> Result<ControlPlane, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/k8s/start.sh");
    let dir = std::env::temp_dir().join(format!("scalehost-k8s-{}", std::process::id()));
    let out = Command::new("bash")
        .arg(&script)
        .arg(&dir)
        .env("SCALEHOST_K8S_OWNER_PID", std::process::id().to_string())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    let env = std::fs::read_to_string(dir.join("env")).map_err(|e| format!("no env file: {e}"))?;
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(str::to_owned)
            .ok_or_else(|| format!("{name} missing from {}", dir.join("env").display()))
    };
    let write_token = |name: &str, token: String| -> Result<PathBuf, String> {
        let path = dir.join(name);
        std::fs::write(&path, token)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    };
    Ok(ControlPlane {
        url: var("KUBE_URL")?,
        ca: PathBuf::from(var("KUBE_CA")?),
        admin_token_file: write_token("admin.token", var("KUBE_ADMIN_TOKEN")?)?,
        user_token_file: write_token("user.token", var("KUBE_USER_TOKEN")?)?,
        kubeconfig: PathBuf::from(var("KUBECONFIG")?),
    })
}
