//! Who is calling: bearer tokens (random, stored hashed, compared in constant time), and what a principal may touch.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Control;
use super::ControlError;
use crate::domain::principal::Principal;
use crate::registry::unix_ms;
use serde::{Deserialize, Serialize};

/// A new token, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssuedToken {
    /// The tenant.
    pub tenant: String,
    /// Its id, to revoke it.
    pub id: String,
    /// The bearer token.
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct TokenRecord {
    pub(super) id: String,
    /// Hex sha256 of the token.
    pub(super) sha256: String,
    pub(super) created_at: u64,
}

pub(super) fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// A fresh token `sht_<64 hex>` from the OS's randomness, and what is stored of it.
pub(super) fn new_token(tenant: &str) -> (String, TokenRecord) {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).expect("the OS provides randomness");
    let token = format!("sht_{}", hex::encode(secret));
    let digest = sha256(&token);
    let record = TokenRecord {
        // Not secret: names the token for revocation.
        id: format!("{tenant}-{}", &hex::encode(Sha256::digest(digest))[..12]),
        sha256: hex::encode(digest),
        created_at: unix_ms(),
    };
    (token, record)
}

impl Control {
    /// Who presents `token`: compared by sha256, in constant time, against the admin token and
    /// every tenant token (all are compared, whatever matches first).
    pub fn authenticate(&self, token: &str) -> Result<Option<Principal>, ControlError> {
        let presented = sha256(token);
        let mut found = None;
        if let Some(admin) = &self.admin_token_sha256
            && bool::from(admin.ct_eq(&presented))
        {
            found = Some(Principal::Admin);
        }
        for record in self.tenant_records()?.into_values() {
            for stored in &record.tokens {
                let Ok(stored) =
                    <[u8; 32]>::try_from(hex::decode(&stored.sha256).unwrap_or_default())
                else {
                    continue;
                };
                if bool::from(stored.ct_eq(&presented)) && found.is_none() {
                    found = Some(Principal::Tenant(record.spec.name.clone()));
                }
            }
        }
        Ok(found)
    }

    /// Refuses a principal outside `tenant` with "not found", so that tenants cannot probe
    /// each other's names.
    pub fn authorize(&self, who: &Principal, tenant: &str) -> Result<(), ControlError> {
        match who {
            Principal::Admin => Ok(()),
            Principal::Tenant(own) if own == tenant => Ok(()),
            Principal::Tenant(_) => Err(ControlError::NotFound(format!("no tenant {tenant}"))),
        }
    }

    pub(super) fn admin_only(who: &Principal, what: &str) -> Result<(), ControlError> {
        match who {
            Principal::Admin => Ok(()),
            Principal::Tenant(_) => Err(ControlError::Forbidden(format!(
                "only the admin may {what}"
            ))),
        }
    }

    // ----- tenants -----

    /// Issues another token for a tenant (admin, or the tenant itself).
    pub fn issue_token(&self, who: &Principal, tenant: &str) -> Result<IssuedToken, ControlError> {
        self.authorize(who, tenant)?;
        let _change = self.lock();
        let mut record = self.existing_tenant(tenant)?;
        let (token, token_record) = new_token(tenant);
        record.tokens.push(token_record.clone());
        self.put_tenant(&record)?;
        Ok(IssuedToken {
            tenant: tenant.to_owned(),
            id: token_record.id,
            token,
        })
    }

    /// Revokes a token (admin, or the tenant itself).
    pub fn revoke_token(
        &self,
        who: &Principal,
        tenant: &str,
        id: &str,
    ) -> Result<(), ControlError> {
        self.authorize(who, tenant)?;
        let _change = self.lock();
        let mut record = self.existing_tenant(tenant)?;
        let before = record.tokens.len();
        record.tokens.retain(|t| t.id != id);
        if record.tokens.len() == before {
            return Err(ControlError::NotFound(format!("no token {id}")));
        }
        self.put_tenant(&record)
    }

    // ----- pushed events -----
}
