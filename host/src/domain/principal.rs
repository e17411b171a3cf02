//! Who is calling, and who owns what it uploads: the operator or one tenant.

/// A caller of the API, and the owner of a plugin it uploaded. The admin's plugins are shared
/// with every tenant; a tenant's are visible to that tenant only (the same bytes uploaded by two
/// tenants are stored once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The operator: everything.
    Admin,
    /// A tenant: only its own tenant.
    Tenant(String),
}
