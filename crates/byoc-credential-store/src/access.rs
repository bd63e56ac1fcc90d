//! The role rules of the repository, shared by both backends (Postgres enforces them again with row-level
//! security).

use crate::error::{StoreError, StoreResult};
use crate::model::{AuditAction, Role};
use crate::tenant::Actor;

/// What a call needs from its actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    /// Any member, or a service: reads and use records.
    MemberOrService,
    /// A user who is a member (services excluded): member lists, OAuth states.
    MemberUser,
    /// An owner or admin.
    Manager,
    /// An owner or admin, or a service: verification outcomes.
    ManagerOrService,
    /// An owner.
    Owner,
}

/// Checks `actor` (whose role in the tenant organization is `role`, `None` for non-members and services)
/// against `need`.
pub(crate) fn check(actor: &Actor, role: Option<Role>, need: Need) -> StoreResult<()> {
    match (actor, role) {
        (Actor::Service(_), _) => match need {
            Need::MemberOrService | Need::ManagerOrService => Ok(()),
            Need::MemberUser | Need::Manager | Need::Owner => Err(StoreError::Forbidden {
                reason: "a service may not do this",
            }),
        },
        (Actor::User(_), None) => Err(StoreError::Forbidden {
            reason: "the user is not a member of this organization",
        }),
        (Actor::User(_), Some(role)) => match need {
            Need::MemberOrService | Need::MemberUser => Ok(()),
            Need::Manager | Need::ManagerOrService if role.can_manage() => Ok(()),
            Need::Manager | Need::ManagerOrService => Err(StoreError::Forbidden {
                reason: "this needs the owner or admin role",
            }),
            Need::Owner if role == Role::Owner => Ok(()),
            Need::Owner => Err(StoreError::Forbidden {
                reason: "this needs the owner role",
            }),
        },
    }
}

/// Checks that `actor_role` may give `granted` to someone: owners may grant any role, admins any but owner.
pub(crate) fn check_grant(
    actor: &Actor,
    actor_role: Option<Role>,
    granted: Role,
) -> StoreResult<()> {
    check(actor, actor_role, Need::Manager)?;
    if granted == Role::Owner && actor_role != Some(Role::Owner) {
        return Err(StoreError::Forbidden {
            reason: "only an owner may add an owner",
        });
    }
    Ok(())
}

/// What appending an audit event with `action` needs from its actor: an event that records a change needs the
/// role that may make the change (`purged` an owner; `created`, `deactivated` and `verification_reset` an
/// owner or admin; `verified` an owner, admin or service), any other (a read, a use) any member or service.
/// The Postgres function `byoc_append_audit_events` applies the same rule.
pub(crate) fn audit_action_need(action: &AuditAction) -> Need {
    match action.as_str() {
        "purged" => Need::Owner,
        "created" | "deactivated" | "verification_reset" => Need::Manager,
        "verified" => Need::ManagerOrService,
        _ => Need::MemberOrService,
    }
}

/// Cuts a verification error to the 2000 characters the store keeps.
pub(crate) fn clip_verification_error(error: Option<&str>) -> Option<String> {
    error.map(|text| text.chars().take(2000).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::{ServiceName, UserId};

    #[test]
    fn role_rules() {
        let user = Actor::User(UserId::new_random());
        let service = Actor::Service(ServiceName::parse("svc").unwrap());
        assert!(check(&user, Some(Role::Member), Need::MemberOrService).is_ok());
        assert!(check(&user, Some(Role::Member), Need::Manager).is_err());
        assert!(check(&user, Some(Role::Admin), Need::Manager).is_ok());
        assert!(check(&user, Some(Role::Admin), Need::Owner).is_err());
        assert!(check(&user, Some(Role::Owner), Need::Owner).is_ok());
        assert!(check(&user, None, Need::MemberOrService).is_err());
        assert!(check(&service, None, Need::MemberOrService).is_ok());
        assert!(check(&service, None, Need::MemberUser).is_err());
        assert!(check_grant(&user, Some(Role::Admin), Role::Owner).is_err());
        assert!(check_grant(&user, Some(Role::Admin), Role::Admin).is_ok());
        assert!(check_grant(&user, Some(Role::Owner), Role::Owner).is_ok());
        assert!(check(&user, Some(Role::Member), Need::ManagerOrService).is_err());
        assert!(check(&user, Some(Role::Admin), Need::ManagerOrService).is_ok());
        assert!(check(&service, None, Need::ManagerOrService).is_ok());
        assert!(check(&service, None, Need::Manager).is_err());
    }

    #[test]
    fn audit_actions_need_the_role_of_the_change_they_record() {
        let need = |action: &str| audit_action_need(&AuditAction::parse(action).unwrap());
        assert_eq!(need("purged"), Need::Owner);
        assert_eq!(need("created"), Need::Manager);
        assert_eq!(need("deactivated"), Need::Manager);
        assert_eq!(need("verification_reset"), Need::Manager);
        assert_eq!(need("verified"), Need::ManagerOrService);
        assert_eq!(need("read"), Need::MemberOrService);
        assert_eq!(need("verification_failed"), Need::MemberOrService);
        assert_eq!(need("updated"), Need::MemberOrService);
    }

    #[test]
    fn verification_errors_are_clipped() {
        let long = "e".repeat(2500);
        assert_eq!(
            clip_verification_error(Some(&long)).map(|text| text.len()),
            Some(2000)
        );
        assert_eq!(clip_verification_error(None), None);
    }
}
