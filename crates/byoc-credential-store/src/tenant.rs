//! Who is asking: organization, user and service identifiers, and the [`Tenant`] every repository call takes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The id of an organization (a clinic).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrgId(Uuid);

/// The id of a user (the JWT `sub`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(Uuid);

/// The id of a stored credential. Chosen by the caller before encryption, because the envelope's associated
/// data binds the ciphertext to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CredentialId(Uuid);

/// The id of an OAuth connect attempt (the random part of the `state` parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OAuthStateId(Uuid);

macro_rules! uuid_id {
    ($name:ident, $what:literal) => {
        impl $name {
            #[doc = concat!("Wraps a UUID as ", $what, ".")]
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            #[doc = concat!("A new random (v4) ", $what, ".")]
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl FromStr for $name {
            type Err = IdentityError;

            fn from_str(text: &str) -> Result<Self, IdentityError> {
                Uuid::parse_str(text)
                    .map(Self)
                    .map_err(|_| IdentityError::NotAUuid { what: $what })
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    };
}

uuid_id!(OrgId, "an organization id");
uuid_id!(UserId, "a user id");
uuid_id!(CredentialId, "a credential id");
uuid_id!(OAuthStateId, "an OAuth state id");

/// Why a text is not a valid identity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The text is not a UUID.
    #[error("{what} must be a UUID")]
    NotAUuid {
        /// Which id was being parsed.
        what: &'static str,
    },
    /// The text is not a valid service name.
    #[error("a service name is 1 to 64 characters from a-z, 0-9, '-', '_' and '.', starting with a letter")]
    BadServiceName,
    /// The text is not `user:<uuid>` or `service:<name>`.
    #[error("an actor is written `user:<uuid>` or `service:<name>`")]
    BadActor,
}

/// The name of a calling service (another Rust service, the CLI, the webhook handler, key rotation): 1 to 64
/// characters from `a-z`, `0-9`, `-`, `_`, `.`, starting with a letter.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ServiceName(String);

impl ServiceName {
    /// Parses a service name.
    pub fn parse(name: &str) -> Result<Self, IdentityError> {
        let mut chars = name.chars();
        let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
        if starts_with_letter && rest_ok && name.len() <= 64 {
            Ok(Self(name.to_owned()))
        } else {
            Err(IdentityError::BadServiceName)
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ServiceName {
    type Err = IdentityError;

    fn from_str(text: &str) -> Result<Self, IdentityError> {
        Self::parse(text)
    }
}

impl<'de> Deserialize<'de> for ServiceName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Who acts: a signed-in user, or a calling service with no user (a service principal).
///
/// Written as `user:<uuid>` or `service:<name>` (that is also how the audit log stores it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Actor {
    /// A user; what they may do depends on their role in the organization.
    User(UserId),
    /// A calling service. It may read credentials, append audit events, record verification outcomes, SMS
    /// messages and usage counters of the organization it acts for, and nothing else.
    Service(ServiceName),
}

impl Actor {
    /// The user, if the actor is one.
    pub fn user_id(&self) -> Option<UserId> {
        match self {
            Actor::User(user_id) => Some(*user_id),
            Actor::Service(_) => None,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::User(user_id) => write!(f, "user:{user_id}"),
            Actor::Service(name) => write!(f, "service:{name}"),
        }
    }
}

impl FromStr for Actor {
    type Err = IdentityError;

    fn from_str(text: &str) -> Result<Self, IdentityError> {
        if let Some(id) = text.strip_prefix("user:") {
            Ok(Actor::User(
                id.parse().map_err(|_| IdentityError::BadActor)?,
            ))
        } else if let Some(name) = text.strip_prefix("service:") {
            Ok(Actor::Service(
                ServiceName::parse(name).map_err(|_| IdentityError::BadActor)?,
            ))
        } else {
            Err(IdentityError::BadActor)
        }
    }
}

/// The organization a call acts in and who acts. Every tenant-scoped repository method takes one; the
/// repository never reads or writes another organization's rows for it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tenant {
    /// The organization.
    pub org_id: OrgId,
    /// The user or service acting in it.
    pub actor: Actor,
}

impl Tenant {
    /// A user acting in an organization.
    pub fn user(org_id: OrgId, user_id: UserId) -> Self {
        Self {
            org_id,
            actor: Actor::User(user_id),
        }
    }

    /// A calling service acting for an organization.
    pub fn service(org_id: OrgId, service: ServiceName) -> Self {
        Self {
            org_id,
            actor: Actor::Service(service),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_checked() {
        assert!(ServiceName::parse("byoc-api").is_ok());
        assert!(ServiceName::parse("key.rotation_2").is_ok());
        assert_eq!(ServiceName::parse(""), Err(IdentityError::BadServiceName));
        assert_eq!(
            ServiceName::parse("1abc"),
            Err(IdentityError::BadServiceName)
        );
        assert_eq!(
            ServiceName::parse("Api"),
            Err(IdentityError::BadServiceName)
        );
        assert_eq!(
            ServiceName::parse("a'b"),
            Err(IdentityError::BadServiceName)
        );
        assert_eq!(
            ServiceName::parse(&"a".repeat(65)),
            Err(IdentityError::BadServiceName)
        );
    }

    #[test]
    fn actors_round_trip_through_text() {
        let user = Actor::User(UserId::new_random());
        assert_eq!(user.to_string().parse::<Actor>(), Ok(user));
        let service = Actor::Service(ServiceName::parse("twilio-webhook").unwrap());
        assert_eq!(service.to_string(), "service:twilio-webhook");
        assert_eq!(service.to_string().parse::<Actor>(), Ok(service));
        assert_eq!("admin".parse::<Actor>(), Err(IdentityError::BadActor));
        assert_eq!("user:nope".parse::<Actor>(), Err(IdentityError::BadActor));
    }

    #[test]
    fn ids_parse_only_uuids() {
        assert!("not-a-uuid".parse::<OrgId>().is_err());
        let id = OrgId::new_random();
        assert_eq!(id.to_string().parse::<OrgId>(), Ok(id));
    }
}
