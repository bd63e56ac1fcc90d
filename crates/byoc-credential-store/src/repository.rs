//! The repository trait: every table behind one async interface, implemented for Postgres and SQLite.

use std::num::NonZeroU32;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use crate::digests::{AuditDigestDelivery, AuditDigestDue, NewAuditDigest, StoredAuditDigest};
use crate::error::StoreResult;
use crate::health::{
    CredentialEvent, CredentialEventId, CredentialStatusCount, DueReverification, EventDelivery,
};
use crate::model::{
    AuditChainReport, AuditEvent, AuditFilter, AuditPage, CredentialMetadata, CredentialRecord,
    CredentialType, DashboardSession, EncryptedEnvelope, EnvelopeCursor, EnvelopeSwap,
    HotLeadThreshold, Imported, KeyVersionCount, LoginLinkHash, LoginLinkRedemption, Member,
    MemberProfile, NewAuditEvent, NewCredential, NewDashboardSession, NewLoginLink, NewMasterKey,
    NewOAuthState, NewSmsMessage, OAuthState, OperatorEnvelope, Organization,
    OrganizationAuditChain, OrganizationName, Role, SessionIdHash, SmsMessage, SmsStatusUpdate,
    StoreChange, StoredKeyCheckValue, StoredMasterKey, UsageCounter, VerificationOutcome,
};
use crate::tenant::{CredentialId, OAuthStateId, OrgId, ServiceName, Tenant, UserId};

/// A subscription to the changes (credentials, members, organizations) made through any store on the same
/// database.
#[async_trait]
pub trait ChangeListener: Send {
    /// Waits for the next change. `Ok(None)` means the subscription lost its connection and changes may
    /// have been missed: treat everything cached as stale and listen again.
    async fn recv(&mut self) -> StoreResult<Option<StoreChange>>;
}

/// Storage for organizations, members, credentials (as envelopes), the audit log, key check values, OAuth
/// states, SMS messages, usage counters and settings-page sessions.
///
/// Every tenant-scoped method takes the [`Tenant`] and never reads or writes another organization's rows;
/// a row of another organization is reported exactly as a missing one. Role rules (checked here and, on
/// Postgres, again by row-level security):
///
/// | who | may |
/// | --- | --- |
/// | member, admin, owner | read organization, members, credential metadata and envelopes, audit log; append audit events of uses; record SMS messages, usage; store a refresh token Google rotated |
/// | admin, owner | insert credentials, update envelopes, deactivate, record verification outcomes; add non-owner members; set the hot-lead threshold; start an OAuth connect |
/// | owner | purge credentials; add owners |
/// | service (no user) | what a member may, except listing members and OAuth states, plus recording verification outcomes |
///
/// The service's background work (re-verification claims and the outbox of credential events) crosses
/// organizations but hands out no envelope; on Postgres it needs a login granted `byoc_service` (the service
/// pool of `BYOC_SERVICE_DATABASE_URL`; [`crate::StoreError::Denied`] otherwise).
///
/// A user who is not a member of the tenant's organization gets [`crate::StoreError::Forbidden`] from every
/// method. On Postgres a service context also needs a login that is a member of `byoc_service`
/// ([`crate::StoreError::Denied`] otherwise). Methods named `operator_*` are the only ones that cross
/// organizations or need no membership; they serve the CLI (`byoc org create`, `member add`, `import-env`, `audit verify`),
/// the dev-mode seed, key rotation and `byoc keys check`, and on Postgres they need a store connected for the
/// operator ([`crate::PostgresStore::connect_operator`]). The settings-page session lookups by hash
/// (`touch_dashboard_session`, `end_dashboard_session`) need no tenant either: a request carries only its
/// cookie.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait CredentialRepository: Send + Sync {
    /// Cheap readiness check: the database answers.
    async fn ping(&self) -> StoreResult<()>;

    /// Listens for credential changes made through any store on this database (another replica), or `None`
    /// when the backend has none to report (SQLite serves one process).
    async fn listen_for_changes(&self) -> StoreResult<Option<Box<dyn ChangeListener>>>;

    // Organizations.

    /// Operator: creates an organization.
    async fn operator_create_organization(
        &self,
        name: &OrganizationName,
        hot_lead_threshold: HotLeadThreshold,
    ) -> StoreResult<Organization>;

    /// The tenant's organization.
    async fn get_organization(&self, tenant: &Tenant) -> StoreResult<Organization>;

    /// Sets the tenant organization's hot-lead threshold (owner or admin).
    async fn set_hot_lead_threshold(
        &self,
        tenant: &Tenant,
        threshold: HotLeadThreshold,
    ) -> StoreResult<Organization>;

    // Members.

    /// Operator: adds a member with any role, with no membership needed (bootstrap of the first owner).
    /// `Conflict(Member)` if already a member, `NotFound` if the organization does not exist.
    async fn operator_add_member(
        &self,
        org_id: OrgId,
        user_id: UserId,
        role: Role,
    ) -> StoreResult<Member>;

    /// Adds a member to the tenant's organization: admins may add members and admins, only owners add owners.
    async fn add_member(&self, tenant: &Tenant, user_id: UserId, role: Role)
        -> StoreResult<Member>;

    /// The tenant user's role in the tenant's organization; `None` when the user is not a member (never
    /// `Forbidden`), and for a service.
    async fn member_role(&self, tenant: &Tenant) -> StoreResult<Option<Role>>;

    /// The organization's members, by user id (users only).
    async fn list_members(&self, tenant: &Tenant) -> StoreResult<Vec<Member>>;

    /// Records what the tenant user's latest token said about them (email, name) on their own membership,
    /// replacing what was recorded before; any member, for themself only (a service: `Forbidden`). Returns
    /// whether anything changed.
    async fn record_member_profile(
        &self,
        tenant: &Tenant,
        profile: &MemberProfile,
    ) -> StoreResult<bool>;

    // Credentials.

    /// Stores a new credential (owner or admin), `pending`, created by the tenant user.
    /// `Conflict(DisplayName)` when the org already has one of that type and name (deactivated ones count).
    async fn insert_credential(
        &self,
        tenant: &Tenant,
        credential: &NewCredential,
    ) -> StoreResult<CredentialMetadata>;

    /// Operator, for `byoc import-env`: when the organization already has an active credential of the
    /// credential's type with the same provider account id (the same Twilio Account SID), returns it as
    /// [`Imported::AlreadyPresent`] and writes nothing. Otherwise stores the credential with no user
    /// (`created_by` empty) and its `created` audit event in `actor`'s name and `detail`, in one transaction,
    /// and returns [`Imported::Created`]; on Postgres the event's detail also gets `session_user`, the
    /// database login that ran the import, set by the database (a `session_user` in `detail` is replaced).
    /// A credential without a provider account id is always stored. The check and the insert are atomic: of
    /// two concurrent imports of one account into one organization, one stores it and the other finds it.
    /// `Conflict(DisplayName)` when the name is taken by another credential of the type (deactivated ones
    /// count), `NotFound` when the organization does not exist.
    async fn operator_import_credential(
        &self,
        org_id: OrgId,
        credential: &NewCredential,
        actor: &ServiceName,
        detail: &serde_json::Value,
    ) -> StoreResult<Imported>;

    /// Every credential of the organization (active or not), metadata only, newest first.
    async fn list_credentials(&self, tenant: &Tenant) -> StoreResult<Vec<CredentialMetadata>>;

    /// One credential with its envelope.
    async fn get_credential(
        &self,
        tenant: &Tenant,
        id: CredentialId,
    ) -> StoreResult<CredentialRecord>;

    /// The credential of a type that a service should use, or `None` when the org has no active one.
    ///
    /// Among the active credentials of the type: verified ones first, then the most recently created, then the
    /// largest id. The winner may be pending or failed when no active one is verified; the caller decides
    /// whether that is usable.
    async fn get_active_credential(
        &self,
        tenant: &Tenant,
        credential_type: CredentialType,
    ) -> StoreResult<Option<CredentialRecord>>;

    /// Records a verification outcome (status, error) at the store's time. Verifying is an owner's or admin's
    /// action; a service may record any outcome too (the service marks a credential failed when its provider
    /// refuses a use). Only the verification columns change.
    async fn record_verification(
        &self,
        tenant: &Tenant,
        id: CredentialId,
        outcome: &VerificationOutcome,
    ) -> StoreResult<CredentialMetadata>;

    /// Deactivates a credential (owner or admin); it is never returned by `get_active_credential` again.
    async fn deactivate_credential(
        &self,
        tenant: &Tenant,
        id: CredentialId,
    ) -> StoreResult<CredentialMetadata>;

    /// Deletes a credential and its envelope for good (owner). Audit events about it stay.
    async fn purge_credential(&self, tenant: &Tenant, id: CredentialId) -> StoreResult<()>;

    /// Replaces a credential's envelope (owner or admin), for example after editing its secret.
    async fn update_envelope(
        &self,
        tenant: &Tenant,
        id: CredentialId,
        encrypted_data: &EncryptedEnvelope,
        encryption_key_version: NonZeroU32,
    ) -> StoreResult<CredentialMetadata>;

    /// Stores a refresh token that Google rotated during a use: replaces the envelope of an **active
    /// `google_calendar`** credential of the tenant's organization, only while it still holds `expected`
    /// (compare-and-swap), and changes nothing but `encrypted_data` and `encryption_key_version`.
    ///
    /// Unlike [`CredentialRepository::update_envelope`] (owner or admin), any member or service may call
    /// it, because any of them may run the availability check that receives the rotated token; on Postgres
    /// it goes through the narrow `byoc_replace_rotated_envelope` function (migration 0009) rather than the
    /// table's update policy. `None` when no active Google Calendar credential with that id holds `expected`
    /// any more (another request stored the rotation first, or it was deactivated or purged meanwhile).
    async fn replace_rotated_envelope(
        &self,
        tenant: &Tenant,
        id: CredentialId,
        expected: &EncryptedEnvelope,
        replacement: &EncryptedEnvelope,
        encryption_key_version: NonZeroU32,
    ) -> StoreResult<Option<CredentialMetadata>>;

    // Audit log.

    /// Appends one audit event to the organization's hash chain, in the tenant's name and at the store's time.
    /// An event that records a change needs the role that may make it (`purged`: owner; `created`,
    /// `deactivated`, `verification_reset`: owner or admin; `verified`: owner, admin or service); any other
    /// action any member or service.
    async fn append_audit_event(
        &self,
        tenant: &Tenant,
        event: &NewAuditEvent,
    ) -> StoreResult<AuditEvent>;

    /// Appends many audit events of one organization in one statement, in order, in the tenant's name and at
    /// the store's time (the rules of [`CredentialRepository::append_audit_event`]). Returns how many.
    async fn append_audit_events(
        &self,
        tenant: &Tenant,
        events: &[NewAuditEvent],
    ) -> StoreResult<u64>;

    /// Audit events, newest first.
    async fn list_audit_events(
        &self,
        tenant: &Tenant,
        page: AuditPage,
    ) -> StoreResult<Vec<AuditEvent>> {
        self.list_matching_audit_events(tenant, &AuditFilter::default(), page)
            .await
    }

    /// The audit events that match `filter`, newest first, one page (the page's `before` cursor applies on top
    /// of the filter, so paging a filtered list neither repeats nor skips an event while events are appended).
    async fn list_matching_audit_events(
        &self,
        tenant: &Tenant,
        filter: &AuditFilter,
        page: AuditPage,
    ) -> StoreResult<Vec<AuditEvent>>;

    /// Checks the organization's audit hash chain (any member or service) and reports the stored chain head.
    async fn verify_audit_chain(&self, tenant: &Tenant) -> StoreResult<AuditChainReport>;

    /// Operator, for `byoc audit verify`: checks the audit chain of every organization (`None`) or of one, in
    /// organization id order. An organization that does not exist gives no entry.
    async fn operator_verify_audit_chains(
        &self,
        org_id: Option<OrgId>,
    ) -> StoreResult<Vec<OrganizationAuditChain>>;

    // Key check values (global, not tenant data).

    /// Every stored key check value, by version.
    async fn key_check_values(&self) -> StoreResult<Vec<StoredKeyCheckValue>>;

    /// Stores a version's key check value unless one is stored already; returns the stored one (compare it
    /// with yours: a different value means a different key under the same version).
    async fn insert_key_check_value_if_absent(
        &self,
        key_version: NonZeroU32,
        check_value: &[u8],
    ) -> StoreResult<StoredKeyCheckValue>;

    // KMS-held master key versions (global, not tenant data).

    /// Every KMS-held master key version, by version (the service and the operator read them at start).
    async fn master_keys(&self) -> StoreResult<Vec<StoredMasterKey>>;

    /// Operator: adds a KMS-held master key version; `Conflict` (`MasterKeyVersion`) when the version is
    /// already there.
    async fn operator_add_master_key(&self, key: &NewMasterKey) -> StoreResult<StoredMasterKey>;

    // OAuth states.

    /// Remembers an OAuth connect attempt for the tenant user (owner or admin).
    async fn insert_oauth_state(&self, tenant: &Tenant, state: &NewOAuthState) -> StoreResult<()>;

    /// Takes an OAuth state once: returns it and deletes it in one step. `NotFound` when it does not exist,
    /// was taken already, has expired at `now`, or belongs to another user or organization.
    async fn consume_oauth_state(
        &self,
        tenant: &Tenant,
        id: OAuthStateId,
        now: DateTime<Utc>,
    ) -> StoreResult<OAuthState>;

    // SMS messages.

    /// Records a sent SMS.
    async fn insert_sms_message(
        &self,
        tenant: &Tenant,
        message: &NewSmsMessage,
    ) -> StoreResult<SmsMessage>;

    /// Records a delivery status by the provider's message id; `NotFound` for an unknown id. Statuses never
    /// move backwards in Twilio's order (queued → sending → sent → delivered / undelivered / failed, the last
    /// three final): a status ranked below the recorded one, or any after a final one, changes nothing, and the
    /// message is returned as recorded.
    async fn update_sms_status(
        &self,
        tenant: &Tenant,
        update: &SmsStatusUpdate,
    ) -> StoreResult<SmsMessage>;

    // Settings-page sessions.

    /// Stores a settings-page session for the tenant user (a member of the tenant organization; services and
    /// non-members get `Forbidden`), and deletes every session already past its idle or absolute expiry.
    async fn create_dashboard_session(
        &self,
        tenant: &Tenant,
        session: &NewDashboardSession,
    ) -> StoreResult<()>;

    /// The live session with this hash (before its absolute expiry, and used within its idle timeout), whose
    /// last use it sets to now; `None` for an unknown, ended or expired one.
    async fn touch_dashboard_session(
        &self,
        id_hash: &SessionIdHash,
    ) -> StoreResult<Option<DashboardSession>>;

    /// Ends (deletes) the session with this hash, live or not; whether there was one.
    async fn end_dashboard_session(&self, id_hash: &SessionIdHash) -> StoreResult<bool>;

    /// Stores a single-use login link for the tenant user (any member; services and non-members:
    /// `Forbidden`), valid until its `expires_at` but never more than [`crate::LOGIN_LINK_MAX_LIFETIME`] from
    /// the store's now; expired links are deleted on the way.
    async fn create_dashboard_login_link(
        &self,
        tenant: &Tenant,
        link: &NewLoginLink,
    ) -> StoreResult<()>;

    /// Uses up the login link with this hash (no tenant: the browser holds only the link) and, when it was
    /// live, stores a session `session_hash` for its organization and user, idle for at most `idle_timeout`
    /// between requests and ending at the link's session expiry. In one step, so of two concurrent uses of one
    /// link at most one opens a session, on any replica.
    async fn redeem_dashboard_login_link(
        &self,
        link_hash: &LoginLinkHash,
        session_hash: &SessionIdHash,
        idle_timeout: std::time::Duration,
    ) -> StoreResult<LoginLinkRedemption>;

    // Provider usage counters.

    /// Adds calls and failures to the organization's counter for a provider and day; returns the new totals.
    async fn increment_usage(
        &self,
        tenant: &Tenant,
        provider: CredentialType,
        day: NaiveDate,
        calls: u32,
        failures: u32,
    ) -> StoreResult<UsageCounter>;

    /// The organization's counters for a day, by provider.
    async fn usage_for_day(
        &self,
        tenant: &Tenant,
        day: NaiveDate,
    ) -> StoreResult<Vec<UsageCounter>>;

    // Operator paths for key rotation and `byoc keys check` (cross-organization, envelope fields only).

    /// Operator: up to `limit` credentials after `after` in (organization, id) order (keyset pagination;
    /// `None` starts at the beginning), skipping those already on `skip_key_version` when given.
    async fn operator_envelope_batch(
        &self,
        after: Option<EnvelopeCursor>,
        skip_key_version: Option<NonZeroU32>,
        limit: u32,
    ) -> StoreResult<Vec<OperatorEnvelope>>;

    /// Operator: compare-and-swap of many envelopes in one statement. A row changes only if it still holds
    /// the expected envelope; returns the ids that changed. In the same transaction it appends, for the rows
    /// that changed, one `rotated` audit event per organization and old key version, by `service:<actor>`,
    /// with detail `{"rewrapped": count, "from_key_version": old, "key_version": new}`; so whenever the
    /// swap is committed its audit is too, and never otherwise.
    async fn operator_swap_envelopes(
        &self,
        swaps: &[EnvelopeSwap],
        actor: &ServiceName,
    ) -> StoreResult<Vec<CredentialId>>;

    /// How many credentials each key version wraps, across organizations (counts only: the service reports
    /// them at start, the operator around a rotation).
    async fn credentials_per_key_version(&self) -> StoreResult<Vec<KeyVersionCount>>;

    // The service's background work (cross-organization, no envelopes).

    /// Claims up to `limit` active credentials whose re-verification is due, for this caller alone: of many
    /// callers (replicas) on one database, exactly one gets a credential per round, and the credential is moved
    /// to its next round (`interval` later) by the claim itself. Active credentials not yet scheduled are first
    /// given a due time at a random point of the next `interval` (rounds spread over the interval); a due time
    /// further out than `interval` is drawn again within it. `interval` is whole seconds, at least one.
    async fn claim_due_reverifications(
        &self,
        interval: std::time::Duration,
        limit: u32,
    ) -> StoreResult<Vec<DueReverification>>;

    /// How many credentials there are by type, verification status and activity, across organizations
    /// (counts only; any store).
    async fn credential_status_counts(&self) -> StoreResult<Vec<CredentialStatusCount>>;

    /// Claims up to `limit` credential events whose next attempt is due, oldest first, for this caller alone:
    /// each counts an attempt and is leased for `lease` (nobody else claims it meanwhile; a caller that dies
    /// leaves it to be claimed again when the lease ends). Events are queued by the store in the transaction of
    /// the change they report (status verified or failed, deactivation, purge).
    async fn claim_credential_events(
        &self,
        limit: u32,
        lease: std::time::Duration,
    ) -> StoreResult<Vec<CredentialEvent>>;

    /// Settles a claimed event: delivered, it leaves the outbox; otherwise its next attempt waits. `false` when
    /// there is no such event (delivered by another caller after its lease ended, or pruned).
    async fn finish_credential_event(
        &self,
        id: CredentialEventId,
        outcome: &EventDelivery,
    ) -> StoreResult<bool>;

    /// Deletes the events that occurred more than `older_than` ago, delivered or not; returns how many.
    async fn prune_credential_events(&self, older_than: std::time::Duration) -> StoreResult<u64>;

    // Signed audit digests (the service's background work; the operator's check).

    /// Up to `limit` organizations whose audit chain moved since their last digest (or that have a chain and no
    /// digest) and whose last digest was issued at least `interval` ago, with what their next digest signs.
    /// Reads only: [`CredentialRepository::record_audit_digest`] is the claim.
    async fn audit_digests_due(
        &self,
        interval: std::time::Duration,
        limit: u32,
    ) -> StoreResult<Vec<AuditDigestDue>>;

    /// Records a signed digest, which claims it: `true` when this call recorded it, `false` when another caller
    /// recorded the organization's digest of that number first (or one followed the previous digest
    /// differently). Refuses a head that is not in the organization's chain at its position.
    async fn record_audit_digest(&self, digest: &NewAuditDigest) -> StoreResult<bool>;

    /// Up to `limit` recorded digests not yet written to the digest directory, oldest first.
    async fn unfiled_audit_digests(&self, limit: u32) -> StoreResult<Vec<StoredAuditDigest>>;

    /// Notes that a digest was written to the digest directory; `false` when there is no such digest.
    async fn mark_audit_digest_filed(&self, org_id: OrgId, digest_seq: i64) -> StoreResult<bool>;

    /// Claims up to `limit` digests whose webhook delivery is due and that were issued less than `max_age` ago,
    /// oldest first, for this caller alone (counted as an attempt, leased for `lease`), as
    /// [`CredentialRepository::claim_credential_events`] does events.
    async fn claim_audit_digest_deliveries(
        &self,
        limit: u32,
        lease: std::time::Duration,
        max_age: std::time::Duration,
    ) -> StoreResult<Vec<AuditDigestDelivery>>;

    /// Settles a claimed digest delivery: delivered, it is done; otherwise its next attempt waits. `false` when
    /// there is no such delivery.
    async fn finish_audit_digest_delivery(
        &self,
        id: uuid::Uuid,
        outcome: &EventDelivery,
    ) -> StoreResult<bool>;

    /// Deletes the digests issued more than `older_than` ago, except each organization's newest; returns how
    /// many.
    async fn prune_audit_digests(&self, older_than: std::time::Duration) -> StoreResult<u64>;

    /// Operator, for `byoc audit verify --digests`: the chain hash stored at each of `seqs` in the
    /// organization's chain, by position (positions the chain does not have are left out).
    async fn operator_audit_chain_hashes(
        &self,
        org_id: OrgId,
        seqs: &[i64],
    ) -> StoreResult<Vec<(i64, [u8; 32])>>;
}
