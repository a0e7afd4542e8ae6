//! The permissions of the companion API (the contract's names) and sets of
//! them. Plain data: `config` validates `[admin.permissions]` against it and
//! `service::access` grants from it.

/// One thing an admin may do (the contract's permission names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Permission {
    StatusRead,
    SessionsRead,
    SessionsTerminate,
    AllowlistRead,
    AllowlistWrite,
    BansRead,
    BansWrite,
    AuditRead,
    MonitoringRead,
    ControlServices,
    ControlKill,
    PowerRead,
    PowerControl,
    ActionsRun,
    EventsRead,
}

impl Permission {
    pub const ALL: [Permission; 15] = [
        Permission::StatusRead,
        Permission::SessionsRead,
        Permission::SessionsTerminate,
        Permission::AllowlistRead,
        Permission::AllowlistWrite,
        Permission::BansRead,
        Permission::BansWrite,
        Permission::AuditRead,
        Permission::MonitoringRead,
        Permission::ControlServices,
        Permission::ControlKill,
        Permission::PowerRead,
        Permission::PowerControl,
        Permission::ActionsRun,
        Permission::EventsRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::StatusRead => "status:read",
            Permission::SessionsRead => "sessions:read",
            Permission::SessionsTerminate => "sessions:terminate",
            Permission::AllowlistRead => "allowlist:read",
            Permission::AllowlistWrite => "allowlist:write",
            Permission::BansRead => "bans:read",
            Permission::BansWrite => "bans:write",
            Permission::AuditRead => "audit:read",
            Permission::MonitoringRead => "monitoring:read",
            Permission::ControlServices => "control:services",
            Permission::ControlKill => "control:kill",
            Permission::PowerRead => "power:read",
            Permission::PowerControl => "power:control",
            Permission::ActionsRun => "actions:run",
            Permission::EventsRead => "events:read",
        }
    }

    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s)
    }

    fn bit(self) -> u32 {
        1 << (self as u8)
    }
}

/// A set of permissions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grants(u32);

impl Grants {
    pub const NONE: Grants = Grants(0);

    pub fn all() -> Grants {
        Grants(Permission::ALL.iter().fold(0, |m, p| m | p.bit()))
    }

    pub fn has(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    pub fn is_all(self) -> bool {
        self == Grants::all()
    }

    pub fn with(self, p: Permission) -> Grants {
        Grants(self.0 | p.bit())
    }

    pub fn union(self, other: Grants) -> Grants {
        Grants(self.0 | other.0)
    }

    /// The permission names, in the contract's order.
    pub fn names(self) -> Vec<&'static str> {
        Permission::ALL
            .into_iter()
            .filter(|p| self.has(*p))
            .map(Permission::as_str)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_names_round_trip_and_grants_are_sets() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
        }
        assert_eq!(Permission::parse("sessions:*"), None);
        let g = Grants::NONE.with(Permission::AuditRead);
        assert!(g.has(Permission::AuditRead) && !g.has(Permission::PowerControl));
        assert_eq!(g.names(), vec!["audit:read"]);
        assert_eq!(Grants::all().names().len(), 15);
        assert!(Grants::all().is_all() && !g.is_all());
    }
}
