//! Who a certificate names. Every certificate the cluster CA issues carries its holder's
//! principal in its subject: organisation [`ORGANISATION`], organisational unit = the role,
//! common name = the name. A master's name is its Raft node id in decimal.
//!
//! Invariant: [`Principal::from_der`] accepts exactly what [`Principal::subject`] writes (a
//! test round-trips every role), and a master principal's name always parses as its id.
use std::fmt;
use std::str::FromStr;

/// The organisation every Shale certificate's subject carries.
pub const ORGANISATION: &str = "shale";

/// The longest principal name accepted.
pub const NAME_MAX_BYTES: usize = 64;

/// What a principal may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A user: file operations, subject to permissions.
    User,
    /// A user with the cluster's administrative rights (membership, drain, bootstrap, repair)
    /// and superuser rights in the namespace.
    Admin,
    /// A master (Raft member); its name is its node id.
    Master,
    /// A chunkserver.
    Chunkserver,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::User, Role::Admin, Role::Master, Role::Chunkserver];

    /// The role's name in certificates and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
            Role::Master => "master",
            Role::Chunkserver => "chunkserver",
        }
    }

    /// Whether certificates of this role identify servers (and so also serve TLS).
    pub fn is_server(self) -> bool {
        matches!(self, Role::Master | Role::Chunkserver)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?} (one of user, admin, master, chunkserver)"))
    }
}

/// An authenticated party: a role and a name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Principal {
    /// What it may do.
    pub role: Role,
    /// Its name (user name, master id, chunkserver name).
    pub name: String,
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.role, self.name)
    }
}

impl Principal {
    /// A principal, its name checked (see [`check_name`]; a master's must be its id).
    pub fn new(role: Role, name: &str) -> Result<Principal, String> {
        check_name(name)?;
        if role == Role::Master && name.parse::<u64>().map_or(true, |id| id == 0) {
            return Err(format!(
                "a master's name is its node id (≥ 1), not {name:?}"
            ));
        }
        Ok(Principal {
            role,
            name: name.to_string(),
        })
    }

    /// The master id this principal is, if it is a master.
    pub fn master_id(&self) -> Option<u64> {
        (self.role == Role::Master)
            .then(|| self.name.parse().ok())
            .flatten()
    }

    /// Whether this principal has administrative rights.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The certificate subject that names this principal.
    pub fn subject(&self) -> rcgen::DistinguishedName {
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::OrganizationName, ORGANISATION);
        dn.push(rcgen::DnType::OrganizationalUnitName, self.role.as_str());
        dn.push(rcgen::DnType::CommonName, self.name.as_str());
        dn
    }

    /// The principal a DER certificate names, or why it names none.
    pub fn from_der(der: &[u8]) -> Result<Principal, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("unreadable certificate: {e}"))?;
        let subject = cert.subject();
        let one = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue>,
                   what: &str|
         -> Result<String, String> {
            let v: Vec<_> = it.collect();
            match v.as_slice() {
                [a] => a
                    .as_str()
                    .map(str::to_string)
                    .map_err(|_| format!("the certificate's {what} is not a string")),
                [] => Err(format!("the certificate names no {what}")),
                _ => Err(format!("the certificate names more than one {what}")),
            }
        };
        let org = one(&mut subject.iter_organization(), "organisation")?;
        if org != ORGANISATION {
            return Err(format!(
                "the certificate's organisation is {org:?}, not {ORGANISATION:?}"
            ));
        }
        let role: Role = one(&mut subject.iter_organizational_unit(), "role (OU)")?.parse()?;
        let name = one(&mut subject.iter_common_name(), "name (CN)")?;
        Principal::new(role, &name)
    }
}

/// A principal name: 1..=[`NAME_MAX_BYTES`] of ASCII letters, digits, `.`, `_`, `-`, not
/// starting with `.` or `-` (so it is safe as a file name and on a command line).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= NAME_MAX_BYTES
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad principal name {name:?}: 1 to {NAME_MAX_BYTES} letters, digits, '.', '_' or '-', \
             not starting with '.' or '-'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("alice").is_ok());
        assert!(check_name("cs-1.rack_2").is_ok());
        for bad in ["", ".x", "-x", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(Principal::new(Role::Master, "3").is_ok());
        assert!(Principal::new(Role::Master, "0").is_err());
        assert!(Principal::new(Role::Master, "m1").is_err());
        assert_eq!(
            Principal::new(Role::Master, "7").unwrap().master_id(),
            Some(7)
        );
        assert_eq!(Principal::new(Role::User, "7").unwrap().master_id(), None);
    }

    #[test]
    fn roles_parse() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("root".parse::<Role>().is_err());
    }
}
