//! The `[auth]` table: Entra ID tokens (`[auth.entra]`) and who may do what with them
//! (`[[auth.role_binding]]`). Read at start and again whenever the configuration file changes
//! (see [`crate::entra`]): bindings are configuration, changed without a restart.

use std::path::PathBuf;

use edgeblob_proto::bearer::Policy;
use edgeblob_proto::rbac::{Binding, Role, Subject};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub entra: Option<EntraConfig>,
    pub role_binding: Vec<RoleBindingConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EntraConfig {
    /// Tenant ids whose tokens are taken; the first is named in the 401 challenge.
    pub tenants: Vec<String>,
    /// Audiences taken as written: a custom one (`api://edgeblob-rack7`, set by clients as
    /// `BlobClientOptions.Audience`) is preferred.
    pub audiences: Vec<String>,
    /// Also take Azure Storage's own audiences (`https://storage.azure.com`, and the account's
    /// `https://<account>.blob.core.windows.net`). Off by default: any token minted for Azure
    /// Storage in an allowed tenant could then be replayed here.
    pub accept_storage_audience: bool,
    /// Issuer forms taken: "v1" (`https://sts.windows.net/<tid>/`), "v2"
    /// (`https://login.microsoftonline.com/<tid>/v2.0`).
    pub issuers: Vec<String>,
    /// Clock skew allowed on a token's `nbf` and `exp`.
    pub leeway_secs: u32,
    /// The tenant's signing keys as a JWKS file (air-gapped racks): read at start and whenever
    /// it changes.
    pub jwks_file: Option<PathBuf>,
    /// Or where to fetch them (`https://login.microsoftonline.com/<tid>/discovery/v2.0/keys`):
    /// fetched in the background, never while a request waits, every `jwks_refresh_secs` and
    /// when a token names a key not held (at most once a minute).
    pub jwks_url: Option<String>,
    /// Where fetched keys are kept, so a restart serves tokens before the first fetch.
    pub jwks_cache: Option<PathBuf>,
    pub jwks_refresh_secs: u64,
    /// The least time between two fetches, however many unknown keys are presented.
    pub jwks_min_refetch_secs: u64,
    /// PEM certificates to trust for `jwks_url` besides the system's (a private authority).
    pub jwks_ca: Option<PathBuf>,
}

impl Default for EntraConfig {
    fn default() -> Self {
        EntraConfig {
            tenants: Vec::new(),
            audiences: Vec::new(),
            accept_storage_audience: false,
            issuers: vec!["v1".into(), "v2".into()],
            leeway_secs: 300,
            jwks_file: None,
            jwks_url: None,
            jwks_cache: None,
            jwks_refresh_secs: 86_400,
            jwks_min_refetch_secs: 60,
            jwks_ca: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleBindingConfig {
    /// `oid:<object id>`, `group:<object id>`, `app:<application id>` or `approle:<value>`.
    pub principal: String,
    /// A built-in role by name (`Storage Blob Data Reader`, `... Contributor`, `... Owner`,
    /// `Storage Blob Delegator`) or role definition id.
    pub role: String,
    /// `account` or `account/container`.
    pub scope: String,
}

impl EntraConfig {
    pub fn policy(&self) -> Result<Policy, String> {
        let tenant_ok =
            |t: &String| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if self.tenants.is_empty() || !self.tenants.iter().all(tenant_ok) {
            return Err("auth.entra.tenants: name at least one tenant id".into());
        }
        if self.audiences.is_empty() && !self.accept_storage_audience {
            return Err("auth.entra: name an audience, or set accept_storage_audience".into());
        }
        if let Some(bad) = self.issuers.iter().find(|i| *i != "v1" && *i != "v2") {
            return Err(format!("auth.entra.issuers: {bad:?} is neither \"v1\" nor \"v2\""));
        }
        match (&self.jwks_file, &self.jwks_url) {
            (Some(_), None) => {}
            (None, Some(u)) if u.starts_with("https://") => {}
            (None, Some(u)) => return Err(format!("auth.entra.jwks_url {u:?}: keys are fetched over https only")),
            _ => return Err("auth.entra: set one of jwks_file and jwks_url".into()),
        }
        Ok(Policy {
            tenants: self.tenants.clone(),
            audiences: self.audiences.clone(),
            storage_audience: self.accept_storage_audience,
            v1: self.issuers.iter().any(|i| i == "v1"),
            v2: self.issuers.iter().any(|i| i == "v2"),
            leeway: i64::from(self.leeway_secs),
        })
    }
}

impl AuthConfig {
    pub fn bindings(&self) -> Result<Vec<Binding>, String> {
        self.role_binding
            .iter()
            .map(|b| {
                let subject = Subject::parse(&b.principal).ok_or_else(|| {
                    format!("auth.role_binding principal {:?}: oid:, group:, app: or approle: and a value", b.principal)
                })?;
                let role = Role::parse(&b.role)
                    .ok_or_else(|| format!("auth.role_binding role {:?}: not a built-in data role", b.role))?;
                let (account, container) = Binding::scope(&b.scope)
                    .ok_or_else(|| format!("auth.role_binding scope {:?}: account or account/container", b.scope))?;
                Ok(Binding { subject, role, account, container })
            })
            .collect()
    }

    pub fn validate(&self) -> Result<(), String> {
        if let Some(e) = &self.entra {
            e.policy()?;
        }
        self.bindings().map(|_| ())
    }
}
