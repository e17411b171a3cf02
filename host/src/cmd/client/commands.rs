//! The client's commands and their flags (clap): what `scalehost plugin|tenant|binding|decisions …` accepts.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// Where the API is and who is calling.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The host's API, e.g. http://127.0.0.1:8080.
    #[arg(
        long,
        env = "SCALEHOST_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// The admin's or a tenant's token.
    #[arg(long, env = "SCALEHOST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// The client commands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Plugins in the host's registry.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Tenants (the admin creates them).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Bindings of a tenant.
    #[command(subcommand)]
    Binding(BindingCommand),
    /// The audit records of a tenant's ticks.
    Decisions {
        /// The tenant.
        tenant: String,
        /// Only this binding.
        #[arg(long)]
        binding: Option<String>,
        /// Only records after this sequence number.
        #[arg(long)]
        since: Option<u64>,
        /// At most this many.
        #[arg(long)]
        limit: Option<u64>,
        /// Server and token.
        #[command(flatten)]
        connection: Connection,
    },
}

/// `scalehost plugin …`.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Uploads a component.
    Push {
        /// The component (`.wasm`).
        file: PathBuf,
        /// A name label.
        #[arg(long)]
        name: Option<String>,
        /// A version label (needs --name).
        #[arg(long)]
        version: Option<String>,
        /// Server and token.
        #[command(flatten)]
        connection: Connection,
    },
    /// Lists the plugins the caller may see.
    Ls {
        /// Server and token.
        #[command(flatten)]
        connection: Connection,
    },
    /// Deletes a plugin (refused while bound).
    Rm {
        /// `sha256:<hex>`.
        digest: String,
        /// Server and token.
        #[command(flatten)]
        connection: Connection,
    },
}

/// `scalehost tenant …`.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Creates a tenant and prints its first token (admin only).
    Create {
        /// The tenant's name.
        name: String,
        /// A granted namespace; repeat for several.
        #[arg(long = "namespace")]
        namespaces: Vec<String>,
        /// A granted VM pool; repeat for several.
        #[arg(long = "vm-pool")]
        vm_pools: Vec<String>,
        /// Server and token.
        #[command(flatten)]
        connection: Connection,
    },
    /// Lists tenants.
    Ls {
        /// Server and token.
        #[command(flatten)]
        connection: Connection,
    },
}

/// `scalehost binding …`.
#[derive(Debug, Subcommand)]
pub enum BindingCommand {
    /// Creates a binding or makes a new revision of it active (docs/api.md, `PUT …/bindings`).
    Set {
        /// The tenant.
        tenant: String,
        /// The binding.
        name: String,
        /// The request body: a JSON file (`plugin`, `config`, `interval`, `targets`, …).
        #[arg(long, short)]
        file: PathBuf,
        /// Set it as the shadow revision instead of the active one.
        #[arg(long)]
        shadow: bool,
        /// Server and token.
        #[command(flatten)]
        connection: Connection,
    },
    /// Lists a tenant's bindings.
    Ls {
        /// The tenant.
        tenant: String,
        /// Server and token.
        #[command(flatten)]
        connection: Connection,
    },
    /// Shows a binding's revisions and activations.
    History {
        /// The tenant.
        tenant: String,
        /// The binding.
        name: String,
        /// Server and token.
        #[command(flatten)]
        connection: Connection,
    },
    /// Activates the previous revision, or `--revision N`.
    Rollback {
        /// The tenant.
        tenant: String,
        /// The binding.
        name: String,
        /// The revision to activate.
        #[arg(long)]
        revision: Option<u64>,
        /// Server and token.
        #[command(flatten)]
        connection: Connection,
    },
    /// Skips a binding's ticks.
    Pause {
        /// The tenant.
        tenant: String,
        /// The binding.
        name: String,
        /// Server and token.
        #[command(flatten)]
        connection: Connection,
    },
    /// Ticks a paused binding again.
    Resume {
        /// The tenant.
        tenant: String,
        /// The binding.
        name: String,
        /// Server and token.
        #[command(flatten)]
        connection: Connection,
    },
    /// Makes the shadow revision active.
    Promote {
        /// The tenant.
        tenant: String,
        /// The binding.
        name: String,
        /// Server and token.
        #[command(flatten)]
        connection: Connection,
    },
    /// Lists a binding's power operations in flight, or cancels one with `--cancel ID`.
    Operations {
        /// The tenant.
        tenant: String,
        /// The binding.
        name: String,
        /// The operation to cancel (its step under way is dropped).
        #[arg(long)]
        cancel: Option<u64>,
        /// Server and token.
        #[command(flatten)]
        connection: Connection,
    },
}
