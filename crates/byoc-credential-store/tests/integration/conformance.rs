//! One conformance suite for every repository method and error, run against Postgres and SQLite alike: each
//! test is a generic function instantiated once per backend by `conformance_tests!`, on a fresh database.

use byoc_credential_store::{
    Actor, AuditAction, AuditChainStatus, AuditEvent, AuditFilter, AuditPage, ConflictKind,
    CredentialId, CredentialMetadata, CredentialRepository, CredentialType, DeliveryStatus,
    EnvelopeCursor, EnvelopeSwap, HotLeadThreshold, Imported, LoginLinkHash, LoginLinkRedemption,
    MaskedPhone, MemberProfile, NewAuditEvent, NewCredential, NewDashboardSession, NewLoginLink,
    NewMasterKey, NewOAuthState, NewSmsMessage, OAuthStateId, OperatorEnvelope, OrgId,
    ProviderAccountId, ProviderErrorCode, ProviderMessageSid, Purpose, Role, ServiceName,
    SessionIdHash, SmsStatusUpdate, StoreError, Tenant, UserId, VerificationOutcome,
    VerificationStatus,
};
use byoc_credential_store::{CredentialEventKind, EventDelivery, NewAuditDigest};
use chrono::{Duration, NaiveDate, Utc};
use serde_json::json;

use crate::fixtures::{credential, envelope, org, version, TWILIO_ACCOUNT_SID};

/// Each test gets the store and the operator's store: on Postgres a second connection as `byoc_operator`, on
/// SQLite (no roles) the same store.
macro_rules! conformance_tests {
    ($($name:ident),+ $(,)?) => {
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let database = byoc_credential_store::test_support::fresh_postgres().await;
                    super::$name(database.store(), database.operator()).await;
                }
            )+
        }
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let database = byoc_credential_store::test_support::fresh_sqlite().await;
                    super::$name(database.store(), database.store()).await;
                }
            )+
        }
    };
}

conformance_tests!(
    ping_answers,
    organizations_are_created_and_read_with_their_threshold,
    members_are_added_by_role_and_listed,
    members_record_their_own_email_and_name,
    credentials_are_inserted_and_listed_as_metadata,
    an_import_stores_an_account_once_per_organization,
    concurrent_imports_of_one_account_store_it_once,
    get_credential_returns_the_envelope_and_hides_other_orgs,
    the_active_credential_choice_is_deterministic,
    verification_outcomes_are_recorded_by_managers_and_services,
    deactivation_needs_admin_and_removes_from_use,
    purge_needs_owner_and_keeps_audit_events,
    envelopes_are_updated_by_admins,
    audit_events_append_list_and_page,
    audit_filters_page_without_duplicates_or_gaps_while_events_are_written,
    audit_chain_of_an_empty_org_is_intact,
    audit_chain_checks_report_the_head_for_tenants_and_the_operator,
    audit_digests_are_due_recorded_once_filed_and_delivered,
    key_check_values_are_insert_if_absent,
    master_keys_are_added_once_per_version_and_read_back,
    oauth_states_are_single_use_and_bound_to_their_user,
    sms_messages_record_delivery_status,
    sms_statuses_never_move_backwards,
    dashboard_sessions_live_until_idle_or_absolute_expiry_or_sign_out,
    login_links_open_one_session_once_and_expire,
    usage_counters_add_up_per_day_and_provider,
    operator_paths_page_swap_and_count_envelopes,
    closed_store_is_unavailable_not_not_found,
    due_reverifications_are_claimed_once_per_round,
    status_changes_queue_credential_events,
    credential_events_are_leased_retried_settled_and_pruned,
    credentials_are_counted_by_type_and_status,
);

fn is_forbidden<T: std::fmt::Debug>(result: Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::Forbidden { .. }))
}

fn is_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::NotFound { .. }))
}

fn audit(action: &str, credential_id: Option<CredentialId>) -> NewAuditEvent {
    NewAuditEvent {
        action: AuditAction::parse(action).unwrap(),
        credential_id,
        credential_type: credential_id.map(|_| CredentialType::Twilio),
        detail: json!({ "purpose": "sms:hot_lead", "n": 1 }),
    }
}

async fn ping_answers(repo: &impl CredentialRepository, _operator: &impl CredentialRepository) {
    repo.ping().await.unwrap();
}

async fn organizations_are_created_and_read_with_their_threshold(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) {
    let a = org(operator, "Clinic A").await;
    let b = org(operator, "Clinic B").await;

    let read = repo.get_organization(&a.member).await.unwrap();
    assert_eq!(read.id, a.id);
    assert_eq!(read.name, "Clinic A");
    assert_eq!(read.hot_lead_threshold, HotLeadThreshold::DEFAULT);
    assert_eq!(repo.get_organization(&a.service).await.unwrap().id, a.id);
    assert!(is_forbidden(repo.get_organization(&a.outsider).await));
    // B's owner naming A's org is not a member there.
    assert!(is_forbidden(
        repo.get_organization(&Tenant {
            org_id: a.id,
            actor: b.owner.actor.clone()
        })
        .await
    ));

    let seventy = HotLeadThreshold::new(70).unwrap();
    let updated = repo
        .set_hot_lead_threshold(&a.admin, seventy)
        .await
        .unwrap();
    assert_eq!(updated.hot_lead_threshold, seventy);
    assert!(updated.updated_at >= read.updated_at);
    assert!(is_forbidden(
        repo.set_hot_lead_threshold(&a.member, seventy).await
    ));
    assert!(is_forbidden(
        repo.set_hot_lead_threshold(&a.service, seventy).await
    ));
    assert_eq!(
        repo.get_organization(&b.owner)
            .await
            .unwrap()
            .hot_lead_threshold,
        HotLeadThreshold::DEFAULT
    );
}

async fn members_are_added_by_role_and_listed(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) {
    let a = org(operator, "Clinic A").await;
    let b = org(operator, "Clinic B").await;

    assert_eq!(repo.member_role(&a.owner).await.unwrap(), Some(Role::Owner));
    assert_eq!(repo.member_role(&a.admin).await.unwrap(), Some(Role::Admin));
    assert_eq!(
        repo.member_role(&a.member).await.unwrap(),
        Some(Role::Member)
    );
    assert_eq!(repo.member_role(&a.outsider).await.unwrap(), None);
    assert_eq!(repo.member_role(&a.service).await.unwrap(), None);
    assert_eq!(
        repo.member_role(&Tenant {
            org_id: b.id,
            actor: a.owner.actor.clone()
        })
        .await
        .unwrap(),
        None
    );

    let owner_user = a.owner.actor.user_id().unwrap();
    assert!(matches!(
        operator
            .operator_add_member(a.id, owner_user, Role::Member)
            .await,
        Err(StoreError::Conflict {
            what: ConflictKind::Member
        })
    ));
    assert!(is_not_found(
        operator
            .operator_add_member(OrgId::new_random(), UserId::new_random(), Role::Owner)
            .await
    ));

    let new_member = UserId::new_random();
    let added = repo
        .add_member(&a.admin, new_member, Role::Member)
        .await
        .unwrap();
    assert_eq!(
        (added.org_id, added.user_id, added.role),
        (a.id, new_member, Role::Member)
    );
    assert!(is_forbidden(
        repo.add_member(&a.admin, UserId::new_random(), Role::Owner)
            .await
    ));
    assert!(is_forbidden(
        repo.add_member(&a.member, UserId::new_random(), Role::Member)
            .await
    ));
    assert!(is_forbidden(
        repo.add_member(&a.service, UserId::new_random(), Role::Member)
            .await
    ));
    assert!(is_forbidden(
        repo.add_member(&a.outsider, UserId::new_random(), Role::Member)
            .await
    ));
    repo.add_member(&a.owner, UserId::new_random(), Role::Owner)
        .await
        .unwrap();
    assert!(matches!(
        repo.add_member(&a.owner, new_member, Role::Admin).await,
        Err(StoreError::Conflict {
            what: ConflictKind::Member
        })
    ));

    let members = repo.list_members(&a.member).await.unwrap();
    assert_eq!(members.len(), 5);
    assert!(members.iter().all(|member| member.org_id == a.id));
    assert!(is_forbidden(repo.list_members(&a.service).await));
    assert!(is_forbidden(repo.list_members(&a.outsider).await));
    assert_eq!(repo.list_members(&b.owner).await.unwrap().len(), 3);
}

async fn members_record_their_own_email_and_name(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) {
    let a = org(operator, "Clinic A").await;
    let b = org(operator, "Clinic B").await;
    let profile_of = |members: &[byoc_credential_store::Member], tenant: &Tenant| {
        let user = tenant.actor.user_id().unwrap();
        members
            .iter()
            .find(|member| member.user_id == user)
            .map(|member| member.profile.clone())
            .unwrap()
    };

    let members = repo.list_members(&a.owner).await.unwrap();
    assert!(members.iter().all(|member| member.profile.is_empty()));

    let dana = MemberProfile::new(Some(" dana@clinic-a.example "), Some("Dana Scully"));
    assert_eq!(dana.email(), Some("dana@clinic-a.example"));
    assert!(repo.record_member_profile(&a.member, &dana).await.unwrap());
    // The same values again change nothing.
    assert!(!repo.record_member_profile(&a.member, &dana).await.unwrap());
    let members = repo.list_members(&a.admin).await.unwrap();
    assert_eq!(profile_of(&members, &a.member), dana);
    assert_eq!(profile_of(&members, &a.member).label(), Some("Dana Scully"));
    // Only the member's own row in this organization changed.
    assert!(profile_of(&members, &a.owner).is_empty());
    assert!(repo
        .list_members(&b.owner)
        .await
        .unwrap()
        .iter()
        .all(|member| member.profile.is_empty()));

    // A changed email replaces the old one; a token without a name clears it.
    let renamed = MemberProfile::new(Some("dana@new.example"), None);
    assert!(repo
        .record_member_profile(&a.member, &renamed)
        .await
        .unwrap());
    let members = repo.list_members(&a.owner).await.unwrap();
    assert_eq!(
        profile_of(&members, &a.member).label(),
        Some("dana@new.example")
    );

    // Services and non-members record nothing.
    assert!(is_forbidden(
        repo.record_member_profile(&a.service, &dana).await
    ));
    assert!(is_forbidden(
        repo.record_member_profile(&a.outsider, &dana).await
    ));
}

async fn credentials_are_inserted_and_listed_as_metadata(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) {
    let a = org(operator, "Clinic A").await;
    let b = org(operator, "Clinic B").await;

    let twilio = credential(CredentialType::Twilio, "Main Twilio");
    let stored = repo.insert_credential(&a.admin, &twilio).await.unwrap();
    assert_eq!(stored.id, twilio.id);
    assert_eq!(stored.org_id, a.id);
    assert_eq!(stored.verification_status, VerificationStatus::Pending);
    assert!(stored.is_active);
    assert_eq!(stored.created_by, a.admin.actor.user_id());
    assert_eq!(stored.public_hint.as_deref(), Some("…1234"));
    assert_eq!(
        stored.provider_account_id.as_deref(),
        Some(TWILIO_ACCOUNT_SID)
    );
    assert_eq!(stored.encryption_key_version, version(1));
    assert_eq!(stored.last_verified_at, None);

    assert!(is_forbidden(
        repo.insert_credential(&a.member, &credential(CredentialType::Twilio, "x"))
            .await
    ));
    assert!(is_forbidden(
        repo.insert_credential(&a.service, &credential(CredentialType::Twilio, "x"))
            .await
    ));
    assert!(is_forbidden(
        repo.insert_credential(&a.outsider, &credential(CredentialType::Twilio, "x"))
            .await
    ));

    let duplicate_name = credential(CredentialType::Twilio, "Main Twilio");
    assert!(matches!(
        repo.insert_credential(&a.owner, &duplicate_name).await,
        Err(StoreError::Conflict {
            what: ConflictKind::DisplayName
        })
    ));
    // The same name is fine for another type and in another organization.
    repo.insert_credential(
        &a.owner,
        &credential(CredentialType::GoogleCalendar, "Main Twilio"),
    )
    .await
    .unwrap();
    repo.insert_credential(&b.owner, &credential(CredentialType::Twilio, "Main Twilio"))
        .await
        .unwrap();
    let mut duplicate_id = credential(CredentialType::Stripe, "Stripe");
    duplicate_id.id = twilio.id;
    assert!(matches!(
        repo.insert_credential(&a.owner, &duplicate_id).await,
        Err(StoreError::Conflict {
            what: ConflictKind::CredentialId
        })
    ));

    let listed = repo.list_credentials(&a.member).await.unwrap();
    assert_eq!(listed.len(), 2);
    for metadata in &listed {
        let expected =
            (metadata.credential_type == CredentialType::Twilio).then_some(TWILIO_ACCOUNT_SID);
        assert_eq!(
            metadata.provider_account_id.as_deref(),
            expected,
            "{metadata:?}"
        );
    }
    let read = repo.get_credential(&a.service, twilio.id).await.unwrap();
    assert_eq!(
        read.metadata.provider_account_id.as_deref(),
        Some(TWILIO_ACCOUNT_SID)
    );
    let active = repo
        .get_active_credential(&a.service, CredentialType::Twilio)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        active.metadata.provider_account_id.as_deref(),
        Some(TWILIO_ACCOUNT_SID)
    );
    assert!(listed.iter().all(|metadata| metadata.org_id == a.id));
    assert!(listed[0].created_at >= listed[1].created_at, "newest first");
    assert_eq!(repo.list_credentials(&a.service).await.unwrap().len(), 2);
    assert!(is_forbidden(repo.list_credentials(&a.outsider).await));
    assert_eq!(repo.list_credentials(&b.member).await.unwrap().len(), 1);
}

/// The importer `byoc import-env` writes in the name of.
fn importer() -> ServiceName {
    ServiceName::parse("byoc-cli").unwrap()
}

/// A Twilio credential for the Account SID `account`, named `name`, with a fresh id.
fn twilio_for(account: &str, name: &str) -> NewCredential {
    NewCredential {
        provider_account_id: Some(ProviderAccountId::parse(account).unwrap()),
        ..credential(CredentialType::Twilio, name)
    }
}

/// The metadata of an import that stored its credential (panics otherwise).
fn created(imported: Imported) -> CredentialMetadata {
    match imported {
        Imported::Created(metadata) => metadata,
        other => panic!("expected Created, got {other:?}"),
    }
}

/// The metadata of an import that found its account already there (panics otherwise).
fn already_present(imported: Imported) -> CredentialMetadata {
    match imported {
        Imported::AlreadyPresent(metadata) => metadata,
        other => panic!("expected AlreadyPresent, got {other:?}"),
    }
}

/// Every audit event of the tenant's organization, newest first.
async fn all_audit_events(repo: &impl CredentialRepository, tenant: &Tenant) -> Vec<AuditEvent> {
    repo.list_audit_events(
        tenant,
        AuditPage {
            limit: 500,
            before: None,
        },
    )
    .await
    .unwrap()
}

async fn an_import_stores_an_account_once_per_organization(
    repo: &impl CredentialRepository,
    operator: &(impl CredentialRepository + ImportLogin),
) {
    let a = org(operator, "Clinic A").await;
    let b = org(operator, "Clinic B").await;
    let c = org(operator, "Clinic C").await;
    let detail = json!({"display_name": "Imported Twilio (env)", "source": "import-env", "os_user": "alice"});

    // The first import stores the credential, with no user, audited as `created` by the importer with who ran it.
    let new = credential(CredentialType::Twilio, "Imported Twilio (env)");
    let first = created(
        operator
            .operator_import_credential(a.id, &new, &importer(), &detail)
            .await
            .unwrap(),
    );
    assert_eq!(first.id, new.id);
    assert_eq!(first.org_id, a.id);
    assert_eq!(first.created_by, None);
    assert_eq!(first.verification_status, VerificationStatus::Pending);
    assert_eq!(
        first.provider_account_id.as_deref(),
        Some(TWILIO_ACCOUNT_SID)
    );
    let events = all_audit_events(repo, &a.member).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event.action.as_str(), "created", "the import is audited");
    assert_eq!(event.actor.to_string(), "service:byoc-cli");
    assert_eq!(event.credential_id, Some(first.id));
    let mut expected_detail = detail.clone();
    if let Some(login) = operator.import_login() {
        expected_detail["session_user"] = json!(login);
    }
    assert_eq!(event.detail, expected_detail);

    // Importing the same account again, under the same name or another, finds it and writes nothing.
    for name in ["Imported Twilio (env)", "Another name"] {
        let again = already_present(
            operator
                .operator_import_credential(
                    a.id,
                    &credential(CredentialType::Twilio, name),
                    &importer(),
                    &detail,
                )
                .await
                .unwrap(),
        );
        assert_eq!(again, first, "the first import's credential, unchanged");
    }
    assert_eq!(
        repo.list_credentials(&a.member).await.unwrap(),
        vec![first.clone()]
    );
    assert_eq!(
        all_audit_events(repo, &a.member).await,
        events,
        "an import that finds its account writes no audit event"
    );

    // Another account is another credential; a name taken by another credential is a conflict.
    let second_account = "ACffffffffffffffffffffffffffffffff";
    let second = created(
        operator
            .operator_import_credential(
                a.id,
                &twilio_for(second_account, "Second account"),
                &importer(),
                &detail,
            )
            .await
            .unwrap(),
    );
    assert_ne!(second.id, first.id);
    assert_eq!(second.provider_account_id.as_deref(), Some(second_account));
    assert!(matches!(
        operator
            .operator_import_credential(
                a.id,
                &twilio_for(
                    "ACeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
                    "Imported Twilio (env)"
                ),
                &importer(),
                &detail,
            )
            .await,
        Err(StoreError::Conflict {
            what: ConflictKind::DisplayName
        })
    ));
    assert_eq!(repo.list_credentials(&a.member).await.unwrap().len(), 2);

    // A deactivated credential is not the account's any more: importing it again stores a new one, under a
    // name of its own (the deactivated one keeps its name).
    repo.deactivate_credential(&a.admin, first.id)
        .await
        .unwrap();
    assert!(matches!(
        operator
            .operator_import_credential(
                a.id,
                &credential(CredentialType::Twilio, "Imported Twilio (env)"),
                &importer(),
                &detail
            )
            .await,
        Err(StoreError::Conflict {
            what: ConflictKind::DisplayName
        })
    ));
    let renewed = created(
        operator
            .operator_import_credential(
                a.id,
                &credential(CredentialType::Twilio, "Imported again"),
                &importer(),
                &detail,
            )
            .await
            .unwrap(),
    );
    assert_ne!(renewed.id, first.id);

    // With two active credentials of the account, the import names the one a service would be given first:
    // the verified one, though the other is newer.
    let front = credential(CredentialType::Twilio, "Front desk");
    repo.insert_credential(&b.owner, &front).await.unwrap();
    let verified = VerificationOutcome {
        status: VerificationStatus::Verified,
        error: None,
    };
    repo.record_verification(&b.admin, front.id, &verified)
        .await
        .unwrap();
    repo.insert_credential(&b.owner, &credential(CredentialType::Twilio, "Back office"))
        .await
        .unwrap();
    let found = already_present(
        operator
            .operator_import_credential(
                b.id,
                &credential(CredentialType::Twilio, "Imported Twilio (env)"),
                &importer(),
                &detail,
            )
            .await
            .unwrap(),
    );
    assert_eq!(found.id, front.id);

    // Credentials without a provider account id are always stored.
    for name in ["Stripe one", "Stripe two"] {
        created(
            operator
                .operator_import_credential(
                    c.id,
                    &credential(CredentialType::Stripe, name),
                    &importer(),
                    &json!({}),
                )
                .await
                .unwrap(),
        );
    }
    // The account in another organization is that organization's own.
    let in_c = created(
        operator
            .operator_import_credential(
                c.id,
                &credential(CredentialType::Twilio, "Imported Twilio (env)"),
                &importer(),
                &detail,
            )
            .await
            .unwrap(),
    );
    assert_eq!(in_c.org_id, c.id);
    assert_eq!(repo.list_credentials(&c.member).await.unwrap().len(), 3);

    assert!(is_not_found(
        operator
            .operator_import_credential(
                OrgId::new_random(),
                &credential(CredentialType::Twilio, "x"),
                &importer(),
                &json!({}),
            )
            .await
    ));
}

async fn concurrent_imports_of_one_account_store_it_once(
    repo: &impl CredentialRepository,
    operator: &(impl CredentialRepository + ImportLogin),
) {
    let a = org(operator, "Clinic A").await;
    // Different names, so that nothing but the account check can stop a second copy.
    let imports: Vec<NewCredential> = (0..8)
        .map(|index| credential(CredentialType::Twilio, &format!("Imported {index}")))
        .collect();
    let (importer, detail) = (importer(), json!({"source": "import-env"}));
    let outcomes = futures::future::join_all(
        imports
            .iter()
            .map(|new| operator.operator_import_credential(a.id, new, &importer, &detail)),
    )
    .await;
    let outcomes: Vec<Imported> = outcomes.into_iter().map(Result::unwrap).collect();
    let stored: Vec<&CredentialMetadata> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            Imported::Created(metadata) => Some(metadata),
            Imported::AlreadyPresent(_) => None,
        })
        .collect();
    assert_eq!(stored.len(), 1, "{outcomes:?}");
    for outcome in &outcomes {
        if let Imported::AlreadyPresent(metadata) = outcome {
            assert_eq!(metadata.id, stored[0].id);
        }
    }
    assert_eq!(repo.list_credentials(&a.member).await.unwrap().len(), 1);
    assert_eq!(all_audit_events(repo, &a.member).await.len(), 1);
}

async fn get_credential_returns_the_envelope_and_hides_other_orgs(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) {
    let a = org(operator, "Clinic A").await;
    let b = org(operator, "Clinic B").await;
    let new = credential(CredentialType::Twilio, "Main Twilio");
    repo.insert_credential(&a.owner, &new).await.unwrap();

    let record = repo.get_credential(&a.member, new.id).await.unwrap();
    assert_eq!(record.encrypted_data, new.encrypted_data);
    assert_eq!(record.metadata.display_name, "Main Twilio");
    assert_eq!(
        repo.get_credential(&a.service, new.id)
            .await
            .unwrap()
            .metadata
            .id,
        new.id
    );

    assert!(
        is_not_found(repo.get_credential(&b.owner, new.id).await),
        "another org's credential is not found"
    );
    assert!(is_not_found(
        repo.get_credential(&a.owner, CredentialId::new_random())
            .await
    ));
    assert!(is_forbidden(repo.get_credential(&a.outsider, new.id).await));
}

async fn the_active_credential_choice_is_deterministic(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) {
    let a = org(operator, "Clinic A").await;
    let b = org(operator, "Clinic B").await;
    assert_eq!(
        repo.get_active_credential(&a.service, CredentialType::Twilio)
            .await
            .unwrap(),
        None
    );

    let older = credential(CredentialType::Twilio, "Older");
    repo.insert_credential(&a.owner, &older).await.unwrap();
    let pick = |tenant: Tenant| async move {
        repo.get_active_credential(&tenant, CredentialType::Twilio)
            .await
            .unwrap()
            .map(|record| record.metadata.id)
    };
    assert_eq!(
        pick(a.service.clone()).await,
        Some(older.id),
        "a pending one is returned when it is all there is"
    );

    let newer = credential(CredentialType::Twilio, "Newer");
    repo.insert_credential(&a.owner, &newer).await.unwrap();
    assert_eq!(
        pick(a.member.clone()).await,
        Some(newer.id),
        "among pending ones the newest wins"
    );

    let verified = VerificationOutcome {
        status: VerificationStatus::Verified,
        error: None,
    };
    repo.record_verification(&a.admin, older.id, &verified)
        .await
        .unwrap();
    assert_eq!(
        pick(a.member.clone()).await,
        Some(older.id),
        "a verified one beats a newer pending one"
    );

    repo.record_verification(&a.admin, newer.id, &verified)
        .await
        .unwrap();
    assert_eq!(
        pick(a.member.clone()).await,
        Some(newer.id),
        "among verified ones the newest wins"
    );

    repo.deactivate_credential(&a.admin, newer.id)
        .await
        .unwrap();
    assert_eq!(
        pick(a.member.clone()).await,
        Some(older.id),
        "a deactivated one is never chosen"
    );

    repo.insert_credential(
        &a.owner,
        &credential(CredentialType::GoogleCalendar, "Calendar"),
    )
    .await
    .unwrap();
    assert_eq!(
        pick(a.member.clone()).await,
        Some(older.id),
        "other types do not count"
    );
    assert_eq!(
        pick(b.member.clone()).await,
        None,
        "other organizations do not count"
    );
    assert!(is_forbidden(
        repo.get_active_credential(&a.outsider, CredentialType::Twilio)
            .await
    ));
}

async fn verification_outcomes_are_recorded_by_managers_and_services(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) {
    let a = org(operator, "Clinic A").await;
    let b = org(operator, "Clinic B").await;
    let new = credential(CredentialType::GoogleCalendar, "Calendar");
    let stored = repo.insert_credential(&a.owner, &new).await.unwrap();

    let before = Utc::now();
    let failed = VerificationOutcome {
        status: VerificationStatus::Failed,
        error: Some(format!(
            "invalid_grant: reconnect Google Calendar {}",
            "!".repeat(3000)
        )),
    };
    let recorded = repo
        .record_verification(&a.service, new.id, &failed)
        .await
        .unwrap();
    assert_eq!(recorded.verification_status, VerificationStatus::Failed);
    assert_eq!(
        recorded
            .verification_error
            .as_ref()
            .map(|error| error.chars().count()),
        Some(2000)
    );
    assert!(recorded
        .verification_error
        .unwrap()
        .starts_with("invalid_grant"));
    let recorded_at = recorded.last_verified_at.unwrap();
    assert!(
        recorded_at >= before - chrono::Duration::seconds(1)
            && recorded_at <= Utc::now() + chrono::Duration::seconds(1),
        "the store's time is recorded"
    );
    assert!(
        recorded.updated_at >= stored.updated_at,
        "updated_at is maintained by the database"
    );

    let verified = VerificationOutcome {
        status: VerificationStatus::Verified,
        error: None,
    };
    let recorded = repo
        .record_verification(&a.admin, new.id, &verified)
        .await
        .unwrap();
    assert_eq!(recorded.verification_status, VerificationStatus::Verified);
    assert_eq!(recorded.verification_error, None);

    // Verifying is an owner's or admin's action: a member records no outcome, not even `failed`.
    for outcome in [&verified, &failed] {
        assert!(is_forbidden(
            repo.record_verification(&a.member, new.id, outcome).await
        ));
    }
    assert!(is_forbidden(
        repo.record_verification(&a.outsider, new.id, &verified)
            .await
    ));
    assert!(is_not_found(
        repo.record_verification(&b.owner, new.id, &failed).await
    ));
    assert!(is_not_found(
        repo.record_verification(&a.owner, CredentialId::new_random(), &failed)
            .await
    ));
    assert_eq!(
        repo.get_credential(&a.owner, new.id)
            .await
            .unwrap()
            .metadata
            .verification_status,
        VerificationStatus::Verified,
        "another org's attempt changed nothing"
    );
}

async fn deactivation_needs_admin_and_removes_from_use(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) {
    let a = org(operator, "Clinic A").await;
    let b = org(operator, "Clinic B").await;
    let new = credential(CredentialType::Twilio, "Main");
    repo.insert_credential(&a.owner, &new).await.unwrap();

    assert!(is_forbidden(
        repo.deactivate_credential(&a.member, new.id).await
    ));
    assert!(is_forbidden(
        repo.deactivate_credential(&a.service, new.id).await
    ));
    assert!(is_not_found(
        repo.deactivate_credential(&b.owner, new.id).await
    ));
    assert!(is_not_found(
        repo.deactivate_credential(&a.admin, CredentialId::new_random())
            .await
    ));

    let deactivated = repo.deactivate_credential(&a.admin, new.id).await.unwrap();
    assert!(!deactivated.is_active);
    assert_eq!(
        repo.get_active_credential(&a.service, CredentialType::Twilio)
            .await
            .unwrap(),
        None
    );
    assert!(
        !repo
            .get_credential(&a.member, new.id)
            .await
            .unwrap()
            .metadata
            .is_active
    );
}

async fn purge_needs_owner_and_keeps_audit_events(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) {
    let a = org(operator, "Clinic A").await;
    let b = org(operator, "Clinic B").await;
    let new = credential(CredentialType::Twilio, "Main");
    repo.insert_credential(&a.owner, &new).await.unwrap();
    repo.append_audit_event(&a.owner, &audit("created", Some(new.id)))
        .await
        .unwrap();

    assert!(is_forbidden(repo.purge_credential(&a.admin, new.id).await));
    assert!(is_forbidden(
        repo.purge_credential(&a.service, new.id).await
    ));
    assert!(is_not_found(repo.purge_credential(&b.owner, new.id).await));
    repo.purge_credential(&a.owner, new.id).await.unwrap();
    assert!(is_not_found(repo.get_credential(&a.owner, new.id).await));
    assert!(is_not_found(repo.purge_credential(&a.owner, new.id).await));
    assert!(repo.list_credentials(&a.owner).await.unwrap().is_empty());

    let events = repo
        .list_audit_events(
            &a.member,
            AuditPage {
                limit: 10,
                before: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].credential_id, Some(new.id));
    // The name is free again once purged.
    repo.insert_credential(&a.owner, &credential(CredentialType::Twilio, "Main"))
        .await
        .unwrap();
}

async fn envelopes_are_updated_by_admins(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) {
    let a = org(operator, "Clinic A").await;
    let b = org(operator, "Clinic B").await;
    let new = credential(CredentialType::Stripe, "Stripe");
    repo.insert_credential(&a.owner, &new).await.unwrap();
    let replacement = envelope(b"new envelope");

    let updated = repo
        .update_envelope(&a.admin, new.id, &replacement, version(2))
        .await
        .unwrap();
    assert_eq!(updated.encryption_key_version, version(2));
    let record = repo.get_credential(&a.member, new.id).await.unwrap();
    assert_eq!(record.encrypted_data, replacement);

    assert!(is_forbidden(
        repo.update_envelope(&a.member, new.id, &replacement, version(3))
            .await
    ));
    assert!(is_forbidden(
        repo.update_envelope(&a.service, new.id, &replacement, version(3))
            .await
    ));
    assert!(is_not_found(
        repo.update_envelope(&b.owner, new.id, &replacement, version(3))
            .await
    ));
    assert!(is_not_found(
        repo.update_envelope(
            &a.owner,
            CredentialId::new_random(),
            &replacement,
            version(3)
        )
        .await
    ));
}

async fn audit_events_append_list_and_page(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) {
    let a = org(operator, "Clinic A").await;
    let b = org(operator, "Clinic B").await;
    let credential_id = CredentialId::new_random();

    let before = Utc::now();
    let first = repo
        .append_audit_event(&a.owner, &audit("created", Some(credential_id)))
        .await
        .unwrap();
    assert_eq!(first.seq, 1);
    assert_eq!(first.org_id, a.id);
    assert_eq!(first.actor, a.owner.actor, "the actor is the tenant's");
    assert!(
        first.at >= before - Duration::seconds(1) && first.at <= Utc::now() + Duration::seconds(1),
        "the time is the store's"
    );
    assert_eq!(first.action.as_str(), "created");
    assert_eq!(first.credential_type, Some(CredentialType::Twilio));
    assert_eq!(first.detail, json!({ "purpose": "sms:hot_lead", "n": 1 }));

    let reads = vec![
        audit("read", Some(credential_id)),
        audit("read", Some(credential_id)),
    ];
    assert_eq!(
        repo.append_audit_events(&a.member, &reads[..1])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        repo.append_audit_events(&a.service, &reads[1..])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        repo.append_audit_events(&a.admin, &[audit("verified", None)])
            .await
            .unwrap(),
        1
    );
    assert_eq!(repo.append_audit_events(&a.member, &[]).await.unwrap(), 0);
    assert!(is_forbidden(
        repo.append_audit_event(&a.outsider, &audit("read", None))
            .await
    ));
    assert!(is_forbidden(
        repo.append_audit_events(&a.outsider, &reads).await
    ));
    // An event that records a change needs the role that may make the change.
    for (tenant, action) in [
        (&a.member, "purged"),
        (&a.admin, "purged"),
        (&a.service, "purged"),
        (&a.member, "created"),
        (&a.service, "deactivated"),
        (&a.member, "verification_reset"),
        (&a.member, "verified"),
    ] {
        assert!(
            is_forbidden(repo.append_audit_event(tenant, &audit(action, None)).await),
            "{action} by {}",
            tenant.actor
        );
        assert!(
            is_forbidden(
                repo.append_audit_events(tenant, &[audit("read", None), audit(action, None)])
                    .await
            ),
            "{action} by {} in a batch",
            tenant.actor
        );
    }
    repo.append_audit_event(&b.owner, &audit("created", None))
        .await
        .unwrap();

    let all = repo
        .list_audit_events(
            &a.member,
            AuditPage {
                limit: 100,
                before: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(
        all.iter().map(|event| event.seq).collect::<Vec<_>>(),
        vec![4, 3, 2, 1],
        "newest first"
    );
    assert_eq!(all[0].action.as_str(), "verified");
    assert_eq!(
        all[2].actor, a.member.actor,
        "each event is in its tenant's name"
    );
    assert_eq!(all[1].actor, a.service.actor);
    assert_eq!(all[0].actor, a.admin.actor);

    let page = repo
        .list_audit_events(
            &a.service,
            AuditPage {
                limit: 2,
                before: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|event| event.seq).collect::<Vec<_>>(),
        vec![4, 3]
    );
    let next = repo
        .list_audit_events(
            &a.member,
            AuditPage {
                limit: 2,
                before: Some(page[1].id),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        next.iter().map(|event| event.seq).collect::<Vec<_>>(),
        vec![2, 1]
    );
    assert!(is_forbidden(
        repo.list_audit_events(
            &a.outsider,
            AuditPage {
                limit: 2,
                before: None
            }
        )
        .await
    ));
    assert_eq!(
        repo.list_audit_events(
            &b.owner,
            AuditPage {
                limit: 100,
                before: None
            }
        )
        .await
        .unwrap()
        .len(),
        1
    );

    assert_eq!(
        repo.verify_audit_chain(&a.member).await.unwrap().status,
        AuditChainStatus::Intact { events: 4 }
    );
    assert_eq!(
        repo.verify_audit_chain(&b.service).await.unwrap().status,
        AuditChainStatus::Intact { events: 1 }
    );
    assert!(is_forbidden(repo.verify_audit_chain(&a.outsider).await));
}

/// Every event of `tenant`'s organization that `filter` selects, newest first, in one page.
async fn all_matching(
    repo: &impl CredentialRepository,
    tenant: &Tenant,
    filter: &AuditFilter,
) -> Vec<AuditEvent> {
    repo.list_matching_audit_events(
        tenant,
        filter,
        AuditPage {
            limit: 1000,
            before: None,
        },
    )
    .await
    .unwrap()
}

async fn audit_filters_page_without_duplicates_or_gaps_while_events_are_written(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) {
    let a = org(operator, "Clinic A").await;
    let b = org(operator, "Clinic B").await;
    let credential = CredentialId::new_random();
    for _ in 0..8 {
        repo.append_audit_events(
            &a.member,
            &[audit("read", Some(credential)), audit("read", None)],
        )
        .await
        .unwrap();
        repo.append_audit_event(&a.admin, &audit("verified", None))
            .await
            .unwrap();
        repo.append_audit_event(&b.member, &audit("read", Some(credential)))
            .await
            .unwrap();
    }
    let reads = AuditFilter {
        action: Some(AuditAction::parse("read").unwrap()),
        ..AuditFilter::default()
    };
    let expected: Vec<_> = all_matching(repo, &a.member, &reads)
        .await
        .iter()
        .map(|event| event.id)
        .collect();
    assert_eq!(
        expected.len(),
        16,
        "the other organization's reads are not listed"
    );

    // Page through the reads three at a time while a service and an admin write more events between pages.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = repo
            .list_matching_audit_events(&a.member, &reads, AuditPage { limit: 3, before })
            .await
            .unwrap();
        repo.append_audit_events(&a.service, &[audit("read", Some(credential))])
            .await
            .unwrap();
        repo.append_audit_event(&a.admin, &audit("verified", None))
            .await
            .unwrap();
        let Some(last) = page.last() else {
            break;
        };
        assert!(page.len() <= 3);
        assert!(page.iter().all(|event| event.action.as_str() == "read"));
        assert!(
            page.windows(2).all(|pair| pair[0].id > pair[1].id),
            "newest first"
        );
        before = Some(last.id);
        seen.extend(page.iter().map(|event| event.id));
    }
    assert_eq!(
        seen, expected,
        "every read once, newest first, none written meanwhile"
    );

    let about_credential = all_matching(
        repo,
        &a.owner,
        &AuditFilter {
            credential_id: Some(credential),
            ..AuditFilter::default()
        },
    )
    .await;
    assert!(about_credential.len() >= 8);
    assert!(about_credential
        .iter()
        .all(|event| event.credential_id == Some(credential) && event.org_id == a.id));

    let every = all_matching(repo, &a.owner, &AuditFilter::default()).await;
    let by_admin = all_matching(
        repo,
        &a.owner,
        &AuditFilter {
            actor: Some(a.admin.actor.clone()),
            ..AuditFilter::default()
        },
    )
    .await;
    assert_eq!(
        by_admin,
        every
            .iter()
            .filter(|event| event.actor == a.admin.actor)
            .cloned()
            .collect::<Vec<_>>()
    );
    assert!(!by_admin.is_empty());

    // A time window, `from` inclusive and `to` exclusive, alone and with the other conditions.
    let from = every[every.len() - 5].at;
    let to = every[4].at;
    let window = AuditFilter {
        from: Some(from),
        to: Some(to),
        ..AuditFilter::default()
    };
    assert_eq!(
        all_matching(repo, &a.member, &window).await,
        every
            .iter()
            .filter(|event| event.at >= from && event.at < to)
            .cloned()
            .collect::<Vec<_>>()
    );
    let member_reads_in_window = AuditFilter {
        action: Some(AuditAction::parse("read").unwrap()),
        credential_id: Some(credential),
        actor: Some(a.member.actor.clone()),
        ..window
    };
    assert_eq!(
        all_matching(repo, &a.member, &member_reads_in_window).await,
        every
            .iter()
            .filter(|event| event.at >= from
                && event.at < to
                && event.action.as_str() == "read"
                && event.credential_id == Some(credential)
                && event.actor == a.member.actor)
            .cloned()
            .collect::<Vec<_>>()
    );
    assert!(is_forbidden(
        repo.list_matching_audit_events(
            &a.outsider,
            &reads,
            AuditPage {
                limit: 3,
                before: None
            }
        )
        .await
    ));
}

async fn audit_chain_of_an_empty_org_is_intact(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) {
    let a = org(operator, "Clinic A").await;
    assert_eq!(
        repo.verify_audit_chain(&a.owner).await.unwrap().status,
        AuditChainStatus::Intact { events: 0 }
    );
}

async fn audit_chain_checks_report_the_head_for_tenants_and_the_operator(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) {
    let a = org(operator, "Clinic A").await;
    let b = org(operator, "Clinic B").await;
    let empty = repo.verify_audit_chain(&b.member).await.unwrap();
    assert_eq!(empty.head, None, "an empty chain has no head");

    repo.append_audit_events(&a.member, &[audit("read", None), audit("read", None)])
        .await
        .unwrap();
    let two = repo.verify_audit_chain(&a.service).await.unwrap();
    assert_eq!(two.status, AuditChainStatus::Intact { events: 2 });
    let two_head = two.head.expect("a head after two events");
    assert_eq!(two_head.seq, 2);
    assert_ne!(two_head.hash, [0; 32]);
    assert_eq!(two_head.hash_hex().len(), 64);
    assert_eq!(two_head.hash_hex(), two_head.hash_hex().to_lowercase());

    repo.append_audit_event(&a.member, &audit("read", None))
        .await
        .unwrap();
    let three = repo.verify_audit_chain(&a.member).await.unwrap();
    let three_head = three.head.expect("a head after three events");
    assert_eq!(three_head.seq, 3);
    assert_ne!(
        three_head.hash, two_head.hash,
        "the head moves with the chain"
    );

    let every = operator.operator_verify_audit_chains(None).await.unwrap();
    let mut expected_order = vec![a.id, b.id];
    expected_order.sort_by_key(|id| id.to_string());
    assert_eq!(
        every
            .iter()
            .map(|checked| checked.org_id)
            .collect::<Vec<_>>(),
        expected_order,
        "every organization, in id order"
    );
    let of_a = every.iter().find(|checked| checked.org_id == a.id).unwrap();
    assert_eq!(of_a.report, three);
    let of_b = operator
        .operator_verify_audit_chains(Some(b.id))
        .await
        .unwrap();
    assert_eq!(of_b.len(), 1);
    assert_eq!(of_b[0].report, empty);
    assert!(operator
        .operator_verify_audit_chains(Some(OrgId::new_random()))
        .await
        .unwrap()
        .is_empty());
}

/// A digest of what was due, with a stand-in payload and signature (the store neither signs nor checks).
fn digest_of(due: &byoc_credential_store::AuditDigestDue, marker: u8) -> NewAuditDigest {
    NewAuditDigest {
        due: due.clone(),
        payload: format!("{{\"headSeq\":{}}}", due.head.seq),
        signature: [marker; 64],
    }
}

async fn audit_digests_are_due_recorded_once_filed_and_delivered(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) {
    let hour = std::time::Duration::from_secs(3600);
    let a = org(operator, "Clinic A").await;
    let b = org(operator, "Clinic B").await;
    repo.append_audit_events(&a.member, &[audit("read", None), audit("read", None)])
        .await
        .unwrap();
    let head = repo
        .verify_audit_chain(&a.member)
        .await
        .unwrap()
        .head
        .unwrap();

    // An organization with a chain and no digest is due; one without a chain is not.
    let due = repo.audit_digests_due(hour, 10).await.unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    let first = &due[0];
    assert_eq!((first.org_id, first.digest_seq), (a.id, 1));
    assert_eq!(first.head, head);
    assert_eq!(first.previous_payload_hash, None);
    assert!((Utc::now() - first.issued_at).num_seconds().abs() < 60);
    assert!(!due.iter().any(|due| due.org_id == b.id));

    // Recording is the claim: the second replica's copy is refused, and a head not in the chain is an error.
    assert!(repo
        .record_audit_digest(&digest_of(first, 1))
        .await
        .unwrap());
    assert!(!repo
        .record_audit_digest(&digest_of(first, 9))
        .await
        .unwrap());
    let mut forged = digest_of(first, 2);
    forged.due.head.hash = [7; 32];
    forged.due.digest_seq = 2;
    forged.due.previous_payload_hash = Some(digest_of(first, 1).payload_hash());
    assert!(repo.record_audit_digest(&forged).await.is_err());

    // Nothing is due until the chain moves and the interval passes.
    assert!(repo.audit_digests_due(hour, 10).await.unwrap().is_empty());
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(
        repo.audit_digests_due(std::time::Duration::from_secs(1), 10)
            .await
            .unwrap()
            .is_empty(),
        "the chain did not move"
    );
    repo.append_audit_event(&a.member, &audit("read", None))
        .await
        .unwrap();
    assert!(repo.audit_digests_due(hour, 10).await.unwrap().is_empty());
    let second = repo
        .audit_digests_due(std::time::Duration::from_secs(1), 10)
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!((second[0].digest_seq, second[0].head.seq), (2, 3));
    assert_eq!(
        second[0].previous_payload_hash,
        Some(digest_of(first, 1).payload_hash())
    );
    let mut wrong_previous = digest_of(&second[0], 2);
    wrong_previous.due.previous_payload_hash = Some([5; 32]);
    assert!(
        !repo.record_audit_digest(&wrong_previous).await.unwrap(),
        "a digest that does not follow the last one is not recorded"
    );
    assert!(repo
        .record_audit_digest(&digest_of(&second[0], 2))
        .await
        .unwrap());

    // Filing: both digests once, oldest first.
    let unfiled = repo.unfiled_audit_digests(10).await.unwrap();
    assert_eq!(
        unfiled
            .iter()
            .map(|digest| (digest.digest_seq, digest.head_seq))
            .collect::<Vec<_>>(),
        vec![(1, 2), (2, 3)]
    );
    assert_eq!(unfiled[0].signature, [1; 64]);
    assert_eq!(unfiled[0].payload, "{\"headSeq\":2}");
    assert!(repo.mark_audit_digest_filed(a.id, 1).await.unwrap());
    assert!(!repo.mark_audit_digest_filed(b.id, 1).await.unwrap());
    assert_eq!(repo.unfiled_audit_digests(10).await.unwrap().len(), 1);

    // Delivery: concurrent claimers share the digests, a lease keeps them, settled ones are done.
    let lease = std::time::Duration::from_secs(60);
    let (left, right) = tokio::join!(
        repo.claim_audit_digest_deliveries(1, lease, hour),
        repo.claim_audit_digest_deliveries(1, lease, hour)
    );
    let mut claimed: Vec<_> = left.unwrap().into_iter().chain(right.unwrap()).collect();
    claimed.sort_by_key(|delivery| delivery.digest.digest_seq);
    assert_eq!(
        claimed
            .iter()
            .map(|delivery| (delivery.digest.digest_seq, delivery.attempts))
            .collect::<Vec<_>>(),
        vec![(1, 1), (2, 1)]
    );
    assert!(repo
        .claim_audit_digest_deliveries(10, lease, hour)
        .await
        .unwrap()
        .is_empty());
    assert!(repo
        .finish_audit_digest_delivery(claimed[0].id, &EventDelivery::Delivered)
        .await
        .unwrap());
    assert!(repo
        .finish_audit_digest_delivery(
            claimed[1].id,
            &EventDelivery::Retry {
                after: std::time::Duration::ZERO,
                error: "HTTP 503".to_owned(),
            },
        )
        .await
        .unwrap());
    let again = repo
        .claim_audit_digest_deliveries(10, lease, hour)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempts), (claimed[1].id, 2));
    assert!(!repo
        .finish_audit_digest_delivery(uuid::Uuid::new_v4(), &EventDelivery::Delivered)
        .await
        .unwrap());

    // Pruning keeps each organization's newest digest, so the next one still follows it.
    assert_eq!(repo.prune_audit_digests(hour).await.unwrap(), 0);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        repo.prune_audit_digests(std::time::Duration::from_secs(1))
            .await
            .unwrap(),
        1
    );
    repo.append_audit_event(&a.member, &audit("read", None))
        .await
        .unwrap();
    let third = repo
        .audit_digests_due(std::time::Duration::from_secs(1), 10)
        .await
        .unwrap();
    assert_eq!((third[0].digest_seq, third[0].head.seq), (3, 4));
    assert_eq!(
        third[0].previous_payload_hash,
        Some(digest_of(&second[0], 2).payload_hash())
    );

    // The operator reads the chain hashes at digested positions (none for a position the chain lacks).
    let hashes = operator
        .operator_audit_chain_hashes(a.id, &[2, 99])
        .await
        .unwrap();
    assert_eq!(hashes, vec![(2, head.hash)]);
}

async fn master_keys_are_added_once_per_version_and_read_back(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) {
    assert_eq!(repo.master_keys().await.unwrap(), Vec::new());
    let second = NewMasterKey {
        key_version: version(2),
        kms_key_id: "arn:aws:kms:us-east-1:111122223333:key/abc".to_owned(),
        ciphertext: vec![7; 180],
        check_value: vec![0x22; 32],
    };
    let first = NewMasterKey {
        key_version: version(1),
        kms_key_id: "alias/byoc".to_owned(),
        ciphertext: vec![5; 180],
        check_value: vec![0x11; 32],
    };
    let added = operator.operator_add_master_key(&second).await.unwrap();
    assert_eq!(
        (
            added.key_version,
            added.kms_key_id.as_str(),
            added.ciphertext.as_slice()
        ),
        (
            version(2),
            second.kms_key_id.as_str(),
            second.ciphertext.as_slice()
        )
    );
    operator.operator_add_master_key(&first).await.unwrap();
    let stored = repo.master_keys().await.unwrap();
    let versions: Vec<u32> = stored.iter().map(|key| key.key_version.get()).collect();
    assert_eq!(versions, vec![1, 2], "in version order");
    assert_eq!(stored[1].check_value, vec![0x22; 32]);

    let again = NewMasterKey {
        kms_key_id: "alias/other".to_owned(),
        ..second.clone()
    };
    assert!(matches!(
        operator.operator_add_master_key(&again).await,
        Err(StoreError::Conflict {
            what: ConflictKind::MasterKeyVersion
        })
    ));
    let short = NewMasterKey {
        key_version: version(3),
        check_value: vec![1; 31],
        ..second
    };
    assert!(matches!(
        operator.operator_add_master_key(&short).await,
        Err(StoreError::Invalid(_))
    ));
}

async fn key_check_values_are_insert_if_absent(
    repo: &impl CredentialRepository,
    _operator: &impl CredentialRepository,
) {
    assert!(repo.key_check_values().await.unwrap().is_empty());
    let stored = repo
        .insert_key_check_value_if_absent(version(2), b"kcv-two")
        .await
        .unwrap();
    assert_eq!(
        (stored.key_version, stored.check_value.as_slice()),
        (version(2), &b"kcv-two"[..])
    );
    let again = repo
        .insert_key_check_value_if_absent(version(2), b"another key")
        .await
        .unwrap();
    assert_eq!(again.check_value, b"kcv-two", "the first value stays");
    repo.insert_key_check_value_if_absent(version(1), b"kcv-one")
        .await
        .unwrap();
    let all = repo.key_check_values().await.unwrap();
    assert_eq!(
        all.iter()
            .map(|value| value.key_version)
            .collect::<Vec<_>>(),
        vec![version(1), version(2)]
    );
    assert!(matches!(
        repo.insert_key_check_value_if_absent(version(3), b"").await,
        Err(StoreError::Invalid(_))
    ));
}

async fn oauth_states_are_single_use_and_bound_to_their_user(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) {
    let a = org(operator, "Clinic A").await;
    let b = org(operator, "Clinic B").await;
    let state = NewOAuthState {
        id: OAuthStateId::new_random(),
        provider: CredentialType::GoogleCalendar,
        pkce_verifier_envelope: envelope(b"sealed verifier"),
        client_credential_id: None,
        expires_at: Utc::now() + Duration::minutes(10),
    };
    repo.insert_oauth_state(&a.admin, &state).await.unwrap();
    assert!(matches!(
        repo.insert_oauth_state(&a.admin, &state).await,
        Err(StoreError::Conflict {
            what: ConflictKind::OAuthState
        })
    ));
    assert!(is_forbidden(
        repo.insert_oauth_state(
            &a.member,
            &NewOAuthState {
                id: OAuthStateId::new_random(),
                ..state.clone()
            }
        )
        .await
    ));
    assert!(is_forbidden(
        repo.insert_oauth_state(
            &a.service,
            &NewOAuthState {
                id: OAuthStateId::new_random(),
                ..state.clone()
            }
        )
        .await
    ));

    let now = Utc::now();
    assert!(
        is_not_found(repo.consume_oauth_state(&a.owner, state.id, now).await),
        "another user's state"
    );
    assert!(
        is_forbidden(
            repo.consume_oauth_state(
                &Tenant {
                    org_id: b.id,
                    actor: a.admin.actor.clone()
                },
                state.id,
                now
            )
            .await
        ),
        "the user is not a member of the org the callback names"
    );
    assert!(
        is_not_found(repo.consume_oauth_state(&b.owner, state.id, now).await),
        "another org's state"
    );
    assert!(is_forbidden(
        repo.consume_oauth_state(&a.service, state.id, now).await
    ));

    let consumed = repo
        .consume_oauth_state(&a.admin, state.id, now)
        .await
        .unwrap();
    assert_eq!(consumed.org_id, a.id);
    assert_eq!(consumed.user_id, a.admin.actor.user_id().unwrap());
    assert_eq!(
        consumed.pkce_verifier_envelope,
        state.pkce_verifier_envelope
    );
    assert_eq!(consumed.provider, CredentialType::GoogleCalendar);
    assert!(
        is_not_found(repo.consume_oauth_state(&a.admin, state.id, now).await),
        "single use"
    );

    let expiring = NewOAuthState {
        id: OAuthStateId::new_random(),
        ..state.clone()
    };
    repo.insert_oauth_state(&a.owner, &expiring).await.unwrap();
    let after_expiry = expiring.expires_at + Duration::seconds(1);
    assert!(
        is_not_found(
            repo.consume_oauth_state(&a.owner, expiring.id, after_expiry)
                .await
        ),
        "expired"
    );
    assert!(
        is_not_found(repo.consume_oauth_state(&a.owner, expiring.id, now).await),
        "gone after expiry"
    );
}

async fn sms_messages_record_delivery_status(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) {
    let a = org(operator, "Clinic A").await;
    let b = org(operator, "Clinic B").await;
    let twilio = credential(CredentialType::Twilio, "Main");
    repo.insert_credential(&a.owner, &twilio).await.unwrap();
    let sent_at = Utc::now();
    let message = NewSmsMessage {
        credential_id: Some(twilio.id),
        provider_message_sid: ProviderMessageSid::parse("SM0123456789abcdef0123456789abcdef")
            .unwrap(),
        to_masked: MaskedPhone::parse("+1******4567").unwrap(),
        purpose: Purpose::parse("sms:hot_lead").unwrap(),
        status: DeliveryStatus::parse("queued").unwrap(),
        sent_at,
    };
    let stored = repo.insert_sms_message(&a.member, &message).await.unwrap();
    assert_eq!(stored.status, "queued");
    assert_eq!(stored.delivered_at, None);
    assert!(matches!(
        repo.insert_sms_message(&a.service, &message).await,
        Err(StoreError::Conflict {
            what: ConflictKind::SmsMessage
        })
    ));
    assert!(is_forbidden(
        repo.insert_sms_message(&a.outsider, &message).await
    ));

    let delivered_at = sent_at + Duration::seconds(3);
    let update = SmsStatusUpdate {
        provider_message_sid: message.provider_message_sid.clone(),
        status: DeliveryStatus::parse("delivered").unwrap(),
        error_code: None,
        at: delivered_at,
    };
    let webhook = Tenant::service(a.id, ServiceName::parse("twilio-webhook").unwrap());
    let delivered = repo.update_sms_status(&webhook, &update).await.unwrap();
    assert_eq!(delivered.status, "delivered");
    let delivered_time = delivered.delivered_at.unwrap();
    assert!((delivered_time - delivered_at).num_milliseconds().abs() < 2);
    assert!(
        delivered_time - delivered.sent_at >= Duration::seconds(2),
        "delivery latency is measurable"
    );

    let again = SmsStatusUpdate {
        at: delivered_at + Duration::seconds(5),
        ..update.clone()
    };
    let after = repo.update_sms_status(&webhook, &again).await.unwrap();
    assert_eq!(after.status, "delivered");
    assert_eq!(
        after.delivered_at, delivered.delivered_at,
        "the first delivery time stays"
    );

    assert!(
        is_not_found(repo.update_sms_status(&b.owner, &update).await),
        "another org's message"
    );
    let unknown = SmsStatusUpdate {
        provider_message_sid: ProviderMessageSid::parse("SMunknown").unwrap(),
        ..update
    };
    assert!(is_not_found(
        repo.update_sms_status(&webhook, &unknown).await
    ));
}

/// Twilio's order is queued → sending → sent → delivered / undelivered / failed (the last three final): a
/// replayed or late callback never moves a message back.
async fn sms_statuses_never_move_backwards(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) {
    let a = org(operator, "Clinic A").await;
    let webhook = &Tenant::service(a.id, ServiceName::parse("twilio-webhook").unwrap());
    let sid = ProviderMessageSid::parse("SM00000000000000000000000000000042").unwrap();
    let started = Utc::now();
    repo.insert_sms_message(
        &a.member,
        &NewSmsMessage {
            credential_id: None,
            provider_message_sid: sid.clone(),
            to_masked: MaskedPhone::parse("+1******4567").unwrap(),
            purpose: Purpose::parse("sms:test").unwrap(),
            status: DeliveryStatus::parse("queued").unwrap(),
            sent_at: started,
        },
    )
    .await
    .unwrap();
    let mut seconds = 0;
    let mut report = |status: &str, error_code: Option<&str>| {
        seconds += 1;
        let update = SmsStatusUpdate {
            provider_message_sid: sid.clone(),
            status: DeliveryStatus::parse(status).unwrap(),
            error_code: error_code.map(|code| ProviderErrorCode::parse(code).unwrap()),
            at: started + Duration::seconds(seconds),
        };
        async move { repo.update_sms_status(webhook, &update).await.unwrap() }
    };

    assert_eq!(report("sent", None).await.status, "sent");
    let replayed = report("sending", None).await;
    assert_eq!(
        replayed.status, "sent",
        "sending after sent changes nothing"
    );
    assert_eq!(report("queued", None).await.status, "sent");
    assert_eq!(
        report("sent", None).await.status,
        "sent",
        "the same status again is fine"
    );
    let delivered = report("delivered", None).await;
    assert_eq!(delivered.status, "delivered");
    let delivered_at = delivered.delivered_at.expect("stamped");
    for (late, error_code) in [
        ("sent", None),
        ("sending", None),
        ("failed", Some("30008")),
        ("undelivered", Some("30005")),
    ] {
        let after = report(late, error_code).await;
        assert_eq!(after.status, "delivered", "{late} after delivered");
        assert_eq!(after.error_code, None, "{late} after delivered");
        assert_eq!(after.delivered_at, Some(delivered_at));
        assert_eq!(after.status_updated_at, delivered.status_updated_at);
    }
}

/// Settings-page sessions: created by a member in the tenant context, looked up and ended by the hash alone,
/// live until their idle timeout or absolute expiry.
async fn dashboard_sessions_live_until_idle_or_absolute_expiry_or_sign_out(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) {
    let a = org(operator, "Clinic A").await;
    let session = |byte: u8, idle_secs: u64, lifetime: Duration| NewDashboardSession {
        id_hash: SessionIdHash::from_digest([byte; 32]),
        idle_timeout: std::time::Duration::from_secs(idle_secs),
        expires_at: Utc::now() + lifetime,
    };
    let long = session(1, 1800, Duration::hours(12));
    repo.create_dashboard_session(&a.member, &long)
        .await
        .unwrap();
    let found = repo
        .touch_dashboard_session(&long.id_hash)
        .await
        .unwrap()
        .expect("a live session");
    assert_eq!(found.org_id, a.id);
    assert_eq!(Some(found.user_id), a.member.actor.user_id());
    assert_eq!(
        repo.touch_dashboard_session(&SessionIdHash::from_digest([9; 32]))
            .await
            .unwrap(),
        None,
        "an unknown hash"
    );

    for refused in [&a.service, &a.outsider] {
        assert!(is_forbidden(
            repo.create_dashboard_session(refused, &session(2, 1800, Duration::hours(1)))
                .await
        ));
    }
    let duplicate = repo.create_dashboard_session(&a.owner, &long).await;
    assert!(duplicate.is_err(), "a hash names one session");

    let idle = session(3, 1, Duration::hours(1));
    let short = session(4, 1800, Duration::milliseconds(1500));
    repo.create_dashboard_session(&a.admin, &idle)
        .await
        .unwrap();
    repo.create_dashboard_session(&a.owner, &short)
        .await
        .unwrap();
    assert!(repo
        .touch_dashboard_session(&idle.id_hash)
        .await
        .unwrap()
        .is_some());
    assert!(repo
        .touch_dashboard_session(&short.id_hash)
        .await
        .unwrap()
        .is_some());
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    assert_eq!(
        repo.touch_dashboard_session(&idle.id_hash).await.unwrap(),
        None,
        "idle for longer than its idle timeout"
    );
    assert_eq!(
        repo.touch_dashboard_session(&short.id_hash).await.unwrap(),
        None,
        "past its absolute expiry"
    );
    assert!(
        repo.touch_dashboard_session(&long.id_hash)
            .await
            .unwrap()
            .is_some(),
        "the long session is still live"
    );

    assert!(repo.end_dashboard_session(&long.id_hash).await.unwrap());
    assert_eq!(
        repo.touch_dashboard_session(&long.id_hash).await.unwrap(),
        None
    );
    assert!(!repo.end_dashboard_session(&long.id_hash).await.unwrap());
    // Creating a session clears the dead ones; ending one that was cleared finds nothing.
    repo.create_dashboard_session(&a.member, &session(5, 1800, Duration::hours(1)))
        .await
        .unwrap();
    assert!(!repo.end_dashboard_session(&idle.id_hash).await.unwrap());
    assert!(!repo.end_dashboard_session(&short.id_hash).await.unwrap());
}

async fn login_links_open_one_session_once_and_expire(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) {
    let a = org(operator, "Clinic A").await;
    let idle = std::time::Duration::from_secs(30 * 60);
    let link = |byte: u8, lifetime: Duration| NewLoginLink {
        link_hash: LoginLinkHash::from_digest([byte; 32]),
        expires_at: Utc::now() + lifetime,
        session_expires_at: Utc::now() + Duration::hours(1),
    };
    let session = |byte: u8| SessionIdHash::from_digest([byte; 32]);

    // A live link opens a session for its user, once.
    let live = link(1, Duration::seconds(60));
    repo.create_dashboard_login_link(&a.member, &live)
        .await
        .unwrap();
    let opened = repo
        .redeem_dashboard_login_link(&live.link_hash, &session(11), idle)
        .await
        .unwrap();
    let LoginLinkRedemption::Opened(opened) = opened else {
        panic!("a live link opens a session: {opened:?}");
    };
    assert_eq!(opened.org_id, a.id);
    assert_eq!(Some(opened.user_id), a.member.actor.user_id());
    let touched = repo
        .touch_dashboard_session(&session(11))
        .await
        .unwrap()
        .expect("the session is live");
    assert_eq!(touched.user_id, opened.user_id);
    assert_eq!(
        repo.redeem_dashboard_login_link(&live.link_hash, &session(12), idle)
            .await
            .unwrap(),
        LoginLinkRedemption::Unknown,
        "used once"
    );
    assert!(repo
        .touch_dashboard_session(&session(12))
        .await
        .unwrap()
        .is_none());

    // An expired link opens nothing and is used up; an unknown one opens nothing.
    let expired = link(2, Duration::seconds(-1));
    repo.create_dashboard_login_link(&a.owner, &expired)
        .await
        .unwrap();
    assert_eq!(
        repo.redeem_dashboard_login_link(&expired.link_hash, &session(13), idle)
            .await
            .unwrap(),
        LoginLinkRedemption::Expired
    );
    assert!(repo
        .touch_dashboard_session(&session(13))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        repo.redeem_dashboard_login_link(&LoginLinkHash::from_digest([9; 32]), &session(14), idle)
            .await
            .unwrap(),
        LoginLinkRedemption::Unknown
    );

    // A link asked to live an hour lives at most a minute (checked by its expiry: still live now).
    let long = link(3, Duration::hours(1));
    repo.create_dashboard_login_link(&a.admin, &long)
        .await
        .unwrap();
    assert!(matches!(
        repo.redeem_dashboard_login_link(&long.link_hash, &session(15), idle)
            .await
            .unwrap(),
        LoginLinkRedemption::Opened(_)
    ));

    // Services and non-members make no links.
    assert!(is_forbidden(
        repo.create_dashboard_login_link(&a.service, &link(4, Duration::seconds(60)))
            .await
    ));
    assert!(is_forbidden(
        repo.create_dashboard_login_link(&a.outsider, &link(5, Duration::seconds(60)))
            .await
    ));
}

async fn usage_counters_add_up_per_day_and_provider(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) {
    let a = org(operator, "Clinic A").await;
    let b = org(operator, "Clinic B").await;
    let today = NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
    let yesterday = today.pred_opt().unwrap();

    repo.increment_usage(&a.service, CredentialType::Twilio, today, 1, 0)
        .await
        .unwrap();
    let counter = repo
        .increment_usage(&a.member, CredentialType::Twilio, today, 2, 1)
        .await
        .unwrap();
    assert_eq!(
        (counter.calls, counter.failures, counter.day),
        (3, 1, today)
    );
    repo.increment_usage(&a.service, CredentialType::GoogleCalendar, today, 5, 0)
        .await
        .unwrap();
    repo.increment_usage(&a.service, CredentialType::Twilio, yesterday, 7, 7)
        .await
        .unwrap();
    repo.increment_usage(&b.service, CredentialType::Twilio, today, 100, 0)
        .await
        .unwrap();
    assert!(is_forbidden(
        repo.increment_usage(&a.outsider, CredentialType::Twilio, today, 1, 0)
            .await
    ));

    let counters = repo.usage_for_day(&a.owner, today).await.unwrap();
    assert_eq!(counters.len(), 2);
    let twilio = counters
        .iter()
        .find(|counter| counter.provider == CredentialType::Twilio)
        .unwrap();
    assert_eq!((twilio.calls, twilio.failures), (3, 1));
    assert_eq!(
        repo.usage_for_day(&a.owner, yesterday).await.unwrap()[0].calls,
        7
    );
    assert_eq!(
        repo.usage_for_day(&b.owner, today).await.unwrap()[0].calls,
        100
    );
    assert!(is_forbidden(repo.usage_for_day(&a.outsider, today).await));
}

async fn operator_paths_page_swap_and_count_envelopes(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) {
    let a = org(operator, "Clinic A").await;
    let b = org(operator, "Clinic B").await;
    // The walk goes in (organization, id) order, so that a batch spans few organizations.
    let mut positions = Vec::new();
    for index in 0..5 {
        let tenant = if index % 2 == 0 { &a.owner } else { &b.owner };
        let new = credential(CredentialType::Twilio, &format!("Twilio {index}"));
        repo.insert_credential(tenant, &new).await.unwrap();
        positions.push(EnvelopeCursor {
            org_id: tenant.org_id,
            id: new.id,
        });
    }
    positions.sort();

    let first = operator
        .operator_envelope_batch(None, None, 2)
        .await
        .unwrap();
    assert_eq!(
        first
            .iter()
            .map(OperatorEnvelope::cursor)
            .collect::<Vec<_>>(),
        positions[..2]
    );
    let rest = operator
        .operator_envelope_batch(Some(first[1].cursor()), None, 10)
        .await
        .unwrap();
    assert_eq!(
        rest.iter()
            .map(OperatorEnvelope::cursor)
            .collect::<Vec<_>>(),
        positions[2..]
    );
    let all_orgs: Vec<_> = first
        .iter()
        .chain(&rest)
        .map(|envelope| envelope.org_id)
        .collect();
    assert!(
        all_orgs.contains(&a.id) && all_orgs.contains(&b.id),
        "the operator path crosses organizations"
    );

    let target = &first[0];
    let swaps = vec![
        EnvelopeSwap {
            id: target.id,
            expected: target.encrypted_data.clone(),
            expected_key_version: target.encryption_key_version,
            replacement: envelope(b"rewrapped under v2"),
            replacement_key_version: version(2),
        },
        EnvelopeSwap {
            id: first[1].id,
            expected: envelope(b"stale: changed by the service meanwhile"),
            expected_key_version: first[1].encryption_key_version,
            replacement: envelope(b"must not land"),
            replacement_key_version: version(2),
        },
        EnvelopeSwap {
            id: rest[0].id,
            expected: rest[0].encrypted_data.clone(),
            expected_key_version: version(7),
            replacement: envelope(b"must not land either: the key version read is not the row's"),
            replacement_key_version: version(2),
        },
    ];
    let rotation = ServiceName::parse("key-rotation").unwrap();
    assert_eq!(
        operator
            .operator_swap_envelopes(&swaps, &rotation)
            .await
            .unwrap(),
        vec![target.id]
    );
    assert_eq!(
        operator
            .operator_swap_envelopes(&swaps, &rotation)
            .await
            .unwrap(),
        vec![],
        "a second run changes nothing"
    );
    assert!(operator
        .operator_swap_envelopes(&[], &rotation)
        .await
        .unwrap()
        .is_empty());
    // The swap wrote the audit of the one row it changed, in the target's organization only.
    for clinic in [&a, &b] {
        let rotated: Vec<_> = repo
            .list_audit_events(
                &clinic.owner,
                AuditPage {
                    limit: 100,
                    before: None,
                },
            )
            .await
            .unwrap()
            .into_iter()
            .filter(|event| event.action.as_str() == "rotated")
            .collect();
        if clinic.id == target.org_id {
            assert_eq!(rotated.len(), 1);
            assert_eq!(rotated[0].actor, Actor::Service(rotation.clone()));
            assert_eq!(rotated[0].credential_id, None);
            assert_eq!(
                rotated[0].detail,
                json!({"rewrapped": 1, "from_key_version": 1, "key_version": 2})
            );
        } else {
            assert!(rotated.is_empty());
        }
        assert!(matches!(
            repo.verify_audit_chain(&clinic.owner).await.unwrap().status,
            AuditChainStatus::Intact { .. }
        ));
    }

    let remaining = operator
        .operator_envelope_batch(None, Some(version(2)), 100)
        .await
        .unwrap();
    assert_eq!(remaining.len(), 4);
    assert!(remaining
        .iter()
        .all(|envelope| envelope.encryption_key_version == version(1)));

    let counts = repo.credentials_per_key_version().await.unwrap();
    assert_eq!(
        counts
            .iter()
            .map(|count| (count.key_version.get(), count.credentials))
            .collect::<Vec<_>>(),
        vec![(1, 4), (2, 1)]
    );
    let owner_of_target = if target.org_id == a.id {
        &a.owner
    } else {
        &b.owner
    };
    let swapped = repo
        .get_credential(owner_of_target, target.id)
        .await
        .unwrap();
    assert_eq!(swapped.encrypted_data, envelope(b"rewrapped under v2"));
    assert_eq!(swapped.metadata.encryption_key_version, version(2));
}

async fn closed_store_is_unavailable_not_not_found(
    repo: &(impl CredentialRepository + Closable),
    operator: &impl CredentialRepository,
) {
    let a = org(operator, "Clinic A").await;
    let new = credential(CredentialType::Twilio, "Main");
    repo.insert_credential(&a.owner, &new).await.unwrap();
    repo.close_store().await;
    assert!(matches!(repo.ping().await, Err(StoreError::Unavailable(_))));
    assert!(matches!(
        repo.get_credential(&a.owner, new.id).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        repo.get_active_credential(&a.service, CredentialType::Twilio)
            .await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        repo.member_role(&a.owner).await,
        Err(StoreError::Unavailable(_))
    ));
}

/// The database login an operator import's audit event names as `session_user` (Postgres sets it from the
/// connection's login, here the operator's); SQLite has no logins.
pub trait ImportLogin {
    /// The login, if the backend has one.
    fn import_login(&self) -> Option<&'static str>;
}

impl ImportLogin for byoc_credential_store::PostgresStore {
    fn import_login(&self) -> Option<&'static str> {
        Some(byoc_credential_store::test_support::OPERATOR_LOGIN)
    }
}

impl ImportLogin for byoc_credential_store::SqliteStore {
    fn import_login(&self) -> Option<&'static str> {
        None
    }
}

/// Closing a store's pool, to simulate a database that went away.
pub trait Closable {
    /// Closes the pool.
    async fn close_store(&self);
}

impl Closable for byoc_credential_store::PostgresStore {
    async fn close_store(&self) {
        self.close().await;
    }
}

impl Closable for byoc_credential_store::SqliteStore {
    async fn close_store(&self) {
        self.close().await;
    }
}

#[tokio::test]
async fn a_missing_sqlite_file_and_folder_are_created() {
    let folder = std::env::temp_dir().join(format!("byoc-test-{}", uuid::Uuid::new_v4().simple()));
    let url =
        byoc_credential_store::test_support::sqlite_url(&folder.join("nested").join("byoc.db"));
    let store = byoc_credential_store::connect(&url).await.unwrap();
    store.ping().await.unwrap();
    byoc_credential_store::migrate(&url).await.unwrap();
    assert!(folder.join("nested").join("byoc.db").exists());
    std::fs::remove_dir_all(&folder).unwrap();
}

/// Claims due re-verifications with a one-second round until `wanted` credentials came back or five seconds
/// passed; returns every claim.
async fn claim_until(
    repo: &impl CredentialRepository,
    wanted: usize,
) -> Vec<byoc_credential_store::DueReverification> {
    let round = std::time::Duration::from_secs(1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut claimed = Vec::new();
    while claimed.len() < wanted && std::time::Instant::now() < deadline {
        claimed.extend(repo.claim_due_reverifications(round, 100).await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    claimed
}

async fn due_reverifications_are_claimed_once_per_round(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) {
    let round = std::time::Duration::from_secs(1);
    let a = org(operator, "Clinic A").await;
    let b = org(operator, "Clinic B").await;
    let twilio = credential(CredentialType::Twilio, "Main");
    let stripe = credential(CredentialType::Stripe, "Billing");
    let retired = credential(CredentialType::Twilio, "Retired");
    repo.insert_credential(&a.owner, &twilio).await.unwrap();
    repo.insert_credential(&b.owner, &stripe).await.unwrap();
    repo.insert_credential(&b.owner, &retired).await.unwrap();
    repo.deactivate_credential(&b.owner, retired.id)
        .await
        .unwrap();

    // The first claim schedules every active credential within the next round; each comes due once per round.
    let mut first = claim_until(repo, 2).await;
    first.sort_by_key(|due| due.credential_id.as_uuid());
    let mut expected = vec![twilio.id, stripe.id];
    expected.sort_by_key(|id| id.as_uuid());
    assert_eq!(
        first
            .iter()
            .map(|due| due.credential_id)
            .collect::<Vec<_>>(),
        expected,
        "each active credential once, the deactivated one never"
    );
    let claimed_twilio = first
        .iter()
        .find(|due| due.credential_id == twilio.id)
        .unwrap();
    assert_eq!(claimed_twilio.org_id, a.id);
    assert_eq!(claimed_twilio.credential_type, CredentialType::Twilio);
    assert_eq!(
        claimed_twilio.provider_account_id.as_deref(),
        Some(TWILIO_ACCOUNT_SID)
    );
    assert!(
        repo.claim_due_reverifications(round, 100)
            .await
            .unwrap()
            .is_empty(),
        "claimed credentials wait for their next round"
    );

    // The next round: two concurrent claimers share the due credentials without overlap.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (left, right) = tokio::join!(
        repo.claim_due_reverifications(round, 1),
        repo.claim_due_reverifications(round, 1)
    );
    let mut second: Vec<CredentialId> = left
        .unwrap()
        .into_iter()
        .chain(right.unwrap())
        .map(|due| due.credential_id)
        .collect();
    second.extend(
        repo.claim_due_reverifications(round, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|due| due.credential_id),
    );
    second.sort_by_key(|id| id.as_uuid());
    assert_eq!(second, expected, "once each in the second round");

    // A purged credential leaves the schedule.
    repo.purge_credential(&b.owner, stripe.id).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let third = repo.claim_due_reverifications(round, 100).await.unwrap();
    assert!(
        third.iter().all(|due| due.credential_id == twilio.id),
        "{third:?}"
    );
}

async fn status_changes_queue_credential_events(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) {
    let a = org(operator, "Clinic A").await;
    let twilio = credential(CredentialType::Twilio, "Main");
    let google = credential(CredentialType::GoogleCalendar, "Calendar");
    repo.insert_credential(&a.admin, &twilio).await.unwrap();
    repo.insert_credential(&a.admin, &google).await.unwrap();
    let outcome = |status, error: Option<&str>| VerificationOutcome {
        status,
        error: error.map(str::to_owned),
    };
    repo.record_verification(
        &a.admin,
        twilio.id,
        &outcome(VerificationStatus::Verified, None),
    )
    .await
    .unwrap();
    // No change, no event.
    repo.record_verification(
        &a.service,
        twilio.id,
        &outcome(VerificationStatus::Verified, None),
    )
    .await
    .unwrap();
    repo.record_verification(
        &a.service,
        twilio.id,
        &outcome(VerificationStatus::Failed, Some("account suspended")),
    )
    .await
    .unwrap();
    repo.record_verification(
        &a.admin,
        google.id,
        &outcome(VerificationStatus::Failed, Some("invalid_grant")),
    )
    .await
    .unwrap();
    // A reset to pending is no event either.
    repo.record_verification(
        &a.admin,
        google.id,
        &outcome(VerificationStatus::Pending, None),
    )
    .await
    .unwrap();
    repo.deactivate_credential(&a.admin, twilio.id)
        .await
        .unwrap();
    repo.purge_credential(&a.owner, google.id).await.unwrap();
    // A refused change queues nothing.
    assert!(is_forbidden(
        repo.purge_credential(&a.admin, twilio.id).await
    ));

    let events = repo
        .claim_credential_events(100, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    let seen: Vec<(CredentialId, CredentialEventKind)> = events
        .iter()
        .map(|event| (event.credential_id, event.kind))
        .collect();
    assert_eq!(
        seen,
        [
            (twilio.id, CredentialEventKind::Verified),
            (twilio.id, CredentialEventKind::VerificationFailed),
            (google.id, CredentialEventKind::ReconnectNeeded),
            (twilio.id, CredentialEventKind::Deactivated),
            (google.id, CredentialEventKind::Purged),
        ]
    );
    let failed = &events[1];
    assert_eq!(failed.org_id, a.id);
    assert_eq!(failed.credential_type, CredentialType::Twilio);
    assert_eq!(failed.display_name, "Main");
    assert_eq!(failed.verification_status, VerificationStatus::Failed);
    assert_eq!(
        failed.verification_error.as_deref(),
        Some("account suspended")
    );
    assert_eq!(failed.attempts, 1);
    assert_eq!(events[4].verification_status, VerificationStatus::Pending);
    let mut ids: Vec<_> = events.iter().map(|event| event.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 5, "every event has its own id");
}

async fn credential_events_are_leased_retried_settled_and_pruned(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) {
    let lease = std::time::Duration::from_secs(60);
    let a = org(operator, "Clinic A").await;
    for name in ["One", "Two", "Three"] {
        let new = credential(CredentialType::Stripe, name);
        repo.insert_credential(&a.admin, &new).await.unwrap();
        repo.deactivate_credential(&a.admin, new.id).await.unwrap();
    }
    let (left, right) = tokio::join!(
        repo.claim_credential_events(2, lease),
        repo.claim_credential_events(2, lease)
    );
    let mut claimed: Vec<_> = left.unwrap().into_iter().chain(right.unwrap()).collect();
    assert_eq!(claimed.len(), 3, "concurrent claimers share the events");
    claimed.sort_by_key(|event| event.id.as_uuid());
    claimed.dedup_by_key(|event| event.id);
    assert_eq!(claimed.len(), 3, "no event is claimed twice");
    assert!(
        repo.claim_credential_events(10, lease)
            .await
            .unwrap()
            .is_empty(),
        "leased events are not claimed again"
    );

    let (delivered, failing, waiting) = (&claimed[0], &claimed[1], &claimed[2]);
    assert!(repo
        .finish_credential_event(delivered.id, &EventDelivery::Delivered)
        .await
        .unwrap());
    assert!(
        !repo
            .finish_credential_event(delivered.id, &EventDelivery::Delivered)
            .await
            .unwrap(),
        "a delivered event is gone"
    );
    assert!(repo
        .finish_credential_event(
            failing.id,
            &EventDelivery::Retry {
                after: std::time::Duration::ZERO,
                error: "HTTP 503".to_owned(),
            },
        )
        .await
        .unwrap());
    assert!(repo
        .finish_credential_event(
            waiting.id,
            &EventDelivery::Retry {
                after: std::time::Duration::from_secs(3600),
                error: "connection refused".to_owned(),
            },
        )
        .await
        .unwrap());
    let again = repo.claim_credential_events(10, lease).await.unwrap();
    assert_eq!(again.len(), 1, "only the event due again: {again:?}");
    assert_eq!(again[0].id, failing.id);
    assert_eq!(again[0].attempts, 2);

    assert_eq!(
        repo.prune_credential_events(std::time::Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        repo.prune_credential_events(std::time::Duration::from_secs(1))
            .await
            .unwrap(),
        2,
        "the undelivered events older than a second"
    );
}

async fn credentials_are_counted_by_type_and_status(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) {
    let a = org(operator, "Clinic A").await;
    let b = org(operator, "Clinic B").await;
    let verified = credential(CredentialType::Twilio, "Main");
    repo.insert_credential(&a.admin, &verified).await.unwrap();
    repo.record_verification(
        &a.admin,
        verified.id,
        &VerificationOutcome {
            status: VerificationStatus::Verified,
            error: None,
        },
    )
    .await
    .unwrap();
    repo.insert_credential(&b.admin, &credential(CredentialType::Twilio, "Main"))
        .await
        .unwrap();
    repo.insert_credential(&b.admin, &credential(CredentialType::Twilio, "Spare"))
        .await
        .unwrap();
    let retired = credential(CredentialType::HubSpot, "CRM");
    repo.insert_credential(&b.admin, &retired).await.unwrap();
    repo.deactivate_credential(&b.admin, retired.id)
        .await
        .unwrap();

    let counts: Vec<(CredentialType, VerificationStatus, bool, u64)> = repo
        .credential_status_counts()
        .await
        .unwrap()
        .into_iter()
        .map(|count| {
            (
                count.credential_type,
                count.verification_status,
                count.is_active,
                count.credentials,
            )
        })
        .collect();
    let mut expected = vec![
        (
            CredentialType::HubSpot,
            VerificationStatus::Pending,
            false,
            1,
        ),
        (CredentialType::Twilio, VerificationStatus::Pending, true, 2),
        (
            CredentialType::Twilio,
            VerificationStatus::Verified,
            true,
            1,
        ),
    ];
    let mut counts = counts;
    counts.sort();
    expected.sort();
    assert_eq!(counts, expected);
}
