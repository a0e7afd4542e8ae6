//! Authorisation: what a principal may do, and the [`Admin`] capability that
//! proves it. `Admin` has private fields and no public constructor: the only way
//! to hold one is [`admit`], so a service method that takes `&Admin` cannot run
//! for a caller that was not checked.
//!
//! Members of `[admin] roles` hold every permission; `[admin.permissions]`
//! grants other roles theirs ([`grants_of`]). The kill switch and power take a
//! stronger capability, [`SteppedUp`], which [`admit_stepped_up`] makes only
//! for an authentication with a second factor that is recent enough.

use std::net::IpAddr;
use std::sync::Arc;

use super::DomainError;
use crate::config::Config;
use crate::decision::{Identity, Policy};

pub use crate::permission::{Grants, Permission};

/// What this identity may do: everything for a member of `[admin] roles`,
/// and the union of `[admin.permissions]` over the identity's other roles.
pub fn grants_of(config: &Config, id: &Identity) -> Grants {
    let has = |r: &String| id.groups.binary_search(r).is_ok();
    if config.admin.roles.iter().any(has) {
        return Grants::all();
    }
    config
        .admin
        .permissions
        .iter()
        .filter(|(role, _)| has(role))
        .fold(Grants::NONE, |g, (_, more)| g.union(*more))
}

/// Proof that a caller was authorised: who, from where, and what they may do.
/// Services' dangerous methods take it by reference and check the one
/// permission they need with [`Admin::require`].
#[derive(Debug, Clone)]
pub struct Admin {
    identity: Arc<Identity>,
    client: IpAddr,
    grants: Grants,
}

/// The only way to an [`Admin`]: the identity must hold `need`.
pub fn admit(
    config: &Config,
    identity: Arc<Identity>,
    client: IpAddr,
    need: Permission,
) -> Result<Admin, DomainError> {
    let grants = grants_of(config, &identity);
    if !grants.has(need) {
        return Err(DomainError::Forbidden(need));
    }
    Ok(Admin {
        identity,
        client,
        grants,
    })
}

/// An [`Admin`] for a listing whose entries each need their own permission
/// (actions): any permission at all admits.
pub fn admit_any(
    config: &Config,
    identity: Arc<Identity>,
    client: IpAddr,
) -> Result<Admin, DomainError> {
    let grants = grants_of(config, &identity);
    if grants == Grants::NONE {
        return Err(DomainError::Forbidden(Permission::ActionsRun));
    }
    Ok(Admin {
        identity,
        client,
        grants,
    })
}

impl Admin {
    /// Who did it, for `terminated_by` and the audit log.
    pub fn actor(&self) -> &str {
        &self.identity.user
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The address the request came from (through trusted proxies).
    pub fn client(&self) -> IpAddr {
        self.client
    }

    pub fn grants(&self) -> Grants {
        self.grants
    }

    /// Refuses unless this capability carries `p`.
    pub fn require(&self, p: Permission) -> Result<(), DomainError> {
        if self.grants.has(p) {
            Ok(())
        } else {
            Err(DomainError::Forbidden(p))
        }
    }
}

/// An [`Admin`] whose authentication carries a second factor (`access.
/// two_factor_acr` / `two_factor_amr`) and is no older than `control.
/// fresh_auth` (`auth_time` of a session, `iat` of a token): what the kill
/// switch and power take. Only [`admit_stepped_up`] makes one.
#[derive(Debug, Clone)]
pub struct SteppedUp {
    admin: Admin,
}

impl SteppedUp {
    pub fn admin(&self) -> &Admin {
        &self.admin
    }
}

/// Clock skew tolerated for an authentication time in the future.
const AUTH_TIME_SKEW_SECS: i64 = 60;

/// The only way to a [`SteppedUp`]: the permission, then the second factor,
/// then the authentication's age at `now`.
pub fn admit_stepped_up(
    config: &Config,
    policy: &Policy,
    identity: Arc<Identity>,
    client: IpAddr,
    need: Permission,
    now: i64,
) -> Result<SteppedUp, DomainError> {
    let admin = admit(config, identity, client, need)?;
    let id = admin.identity();
    if !policy.is_two_factor(id) {
        return Err(DomainError::StepUpRequired(
            "this needs an authentication with a second factor",
        ));
    }
    let max_age = config.control.fresh_auth.as_secs() as i64;
    match id.iat {
        Some(t) if t <= now + AUTH_TIME_SKEW_SECS && now - t <= max_age => Ok(SteppedUp { admin }),
        _ => Err(DomainError::StepUpRequired(
            "the authentication is older than control.fresh_auth; authenticate again",
        )),
    }
}
