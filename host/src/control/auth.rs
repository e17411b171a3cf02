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
    /// Who presents `token`: the admin token compared by sha256 in constant time; tenant
    /// tokens looked up by their sha256 in the index (O(1): a lookup by a digest of a random
    /// 256-bit secret tells a timing attacker nothing of a stored token).
    pub fn authenticate(&self, token: &str) -> Result<Option<Principal>, ControlError> {
        let presented = sha256(token);
        if let Some(admin) = &self.admin_token_sha256
            && bool::from(admin.ct_eq(&presented))
        {
            return Ok(Some(Principal::Admin));
        }
        Ok(self
            .tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&presented)
            .map(|tenant| Principal::Tenant(tenant.clone())))
    }

    /// Adds `tenant`'s tokens to the index (after their record committed).
    pub(super) fn index_tokens(&self, tenant: &str, records: &[TokenRecord]) {
        let mut index = self.tokens.write().unwrap_or_else(|p| p.into_inner());
        for record in records {
            if let Ok(digest) =
                <[u8; 32]>::try_from(hex::decode(&record.sha256).unwrap_or_default())
            {
                index.insert(digest, tenant.to_owned());
            }
        }
    }

    /// Takes every token of `tenant` out of the index (it was deleted).
    pub(super) fn unindex_tenant(&self, tenant: &str) {
        self.tokens
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, owner| owner != tenant);
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
        let max = self.engine.quotas_of(&record.spec).max_tokens as usize;
        if record.tokens.len() >= max {
            return Err(ControlError::Quota(format!(
                "tenant {tenant} has {} tokens, its most (quotas.max_tokens {max}); revoke one first",
                record.tokens.len()
            )));
        }
        let (token, token_record) = new_token(tenant);
        record.tokens.push(token_record.clone());
        self.put_tenant(&record)?;
        self.index_tokens(tenant, std::slice::from_ref(&token_record));
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
        let Some(revoked) = record.tokens.iter().position(|t| t.id == id) else {
            return Err(ControlError::NotFound(format!("no token {id}")));
        };
        let revoked = record.tokens.remove(revoked);
        self.put_tenant(&record)?;
        if let Ok(digest) = <[u8; 32]>::try_from(hex::decode(&revoked.sha256).unwrap_or_default()) {
            self.tokens
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&digest);
        }
        Ok(())
    }

    // ----- pushed events -----
}
