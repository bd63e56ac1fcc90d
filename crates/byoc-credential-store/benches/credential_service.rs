//! Credential service costs, each next to its baseline from the same run:
//!
//! - `cache_hit/get_credential`: a cached `get_credential` (cache lookup, audit event queued), with the
//!   repository mocked (a hit never reaches it; the audit writer drains into the mock). A per-call p50 over
//!   200,000 individually timed calls is printed as well.
//! - `uncached/*`: `get_credential` with the cache off on the local Postgres (`BYOC_TEST_DATABASE_URL`):
//!   one tenant read (context, role check, RLS), decryption and a queued audit event, against a raw prepared
//!   primary-key select of the same columns as the owner, and against the repository's
//!   `get_active_credential` alone (what the facade adds), at 1 and 16 concurrent callers, all pools 16
//!   connections that are not pinged on every acquire (one round trip per call). Then the ratios the target
//!   is stated in (raw time / our time) from `BYOC_BENCH_RATIO_OPERATIONS` calls (default 20,000) of each,
//!   in three interleaved rounds.
//! - rotation: `BYOC_BENCH_ROTATION_ROWS` rows (default 100,000) bulk-inserted under key version 1, then
//!   one timed `rotate` to version 2 and one back to version 1; rows/s printed. `BYOC_BENCH_ROTATION_BATCH`
//!   and `BYOC_BENCH_ROTATION_IN_FLIGHT` override the default batch size and swaps in flight.
//! - growth (only when named: `cargo bench -p byoc-credential-store --bench credential_service -- growth`):
//!   uncached `get_credential` p50 with 1,000 credentials stored against `BYOC_BENCH_GROWTH_ROWS` (default
//!   1,000,000) in 1,000-credential organizations, one caller, `BYOC_BENCH_GROWTH_ROUNDS` (10) interleaved
//!   rounds of `BYOC_BENCH_GROWTH_CALLS` (2,000) calls each; prints the ratio (target ≤ 1.2).

use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use byoc_credential_store::service::{envelope_context, rotate, RotationOptions};
use byoc_credential_store::test_support::fresh_postgres;
use byoc_credential_store::{
    CredentialId, CredentialMetadata, CredentialRecord, CredentialRepository, CredentialService,
    CredentialType, DisplayName, EncryptedEnvelope, HotLeadThreshold, MockCredentialRepository,
    NewCredential, OrgId, OrganizationName, PostgresStore, Purpose, Role, ServiceConfig,
    ServiceName, Tenant, UserId, VerificationStatus,
};
use byoc_crypto::{KeyVersion, Keyring, MasterKey};
use criterion::{black_box, BenchmarkId, Criterion};
use futures::future::join_all;
use rayon::prelude::*;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::Row;
use tokio::runtime::Runtime;

/// Interleaved rounds of the uncached ratio measurement.
const RATIO_ROUNDS: u64 = 3;

const PAYLOAD: &[u8] = br#"{"accountSid":"AC0123456789abcdef0123456789abcdef","authToken":"0123456789abcdef0123456789abcdef","phoneNumber":"+14155550123"}"#;

const RAW_SELECT: &str = "SELECT id, org_id, credential_type, display_name, public_hint, is_active, \
     verification_status, last_verified_at, verification_error, created_at, updated_at, created_by, \
     encryption_key_version, encrypted_data FROM organization_api_credentials WHERE id = $1";

fn keyring(versions: &[u32], active: u32) -> Arc<Keyring> {
    let keys = versions
        .iter()
        .map(|&version| {
            (
                KeyVersion::new(version).expect("version"),
                MasterKey::from_bytes([u8::try_from(version).expect("small"); 32]),
            )
        })
        .collect();
    Arc::new(Keyring::new(keys, KeyVersion::new(active).expect("version")).expect("keyring"))
}

fn config(ttl: Duration) -> ServiceConfig {
    let mut config = ServiceConfig::new(ServiceName::parse("bench").expect("name"));
    config.cache_ttl = ttl;
    config
}

fn purpose() -> Purpose {
    Purpose::parse("sms:hot_lead").expect("purpose")
}

fn sealed(keyring: &Keyring, org_id: OrgId, id: CredentialId) -> EncryptedEnvelope {
    let envelope = keyring
        .seal(
            PAYLOAD,
            &envelope_context(org_id, CredentialType::Twilio, id),
        )
        .expect("seal");
    EncryptedEnvelope::new(envelope.into_bytes()).expect("non-empty")
}

fn cache_hit(criterion: &mut Criterion) {
    let runtime = Runtime::new().expect("tokio runtime");
    let org_id = OrgId::new_random();
    let keys = keyring(&[1], 1);
    let id = CredentialId::new_random();
    let now = chrono::Utc::now();
    let record = CredentialRecord {
        metadata: CredentialMetadata {
            id,
            org_id,
            credential_type: CredentialType::Twilio,
            display_name: "Twilio".to_owned(),
            public_hint: None,
            provider_account_id: None,
            is_active: true,
            verification_status: VerificationStatus::Verified,
            last_verified_at: Some(now),
            verification_error: None,
            created_at: now,
            updated_at: now,
            created_by: None,
            encryption_key_version: NonZeroU32::MIN,
        },
        encrypted_data: sealed(&keys, org_id, id),
    };
    let mut repository = MockCredentialRepository::new();
    repository
        .expect_get_active_credential()
        .returning(move |_, _| Ok(Some(record.clone())));
    repository
        .expect_append_audit_events()
        .returning(|_, events| Ok(events.len() as u64));
    let service = runtime.block_on(async {
        CredentialService::new(
            Arc::new(repository),
            keys,
            config(Duration::from_secs(3600)),
        )
    });
    let tenant = Tenant::service(org_id, ServiceName::parse("lead-scorer").expect("name"));
    let purpose = purpose();
    runtime.block_on(async {
        service
            .get_credential(&tenant, CredentialType::Twilio, &purpose)
            .await
            .expect("prime the cache");
    });

    let mut group = criterion.benchmark_group("cache_hit");
    group.bench_function("get_credential", |bencher| {
        bencher.iter_custom(|iterations| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iterations {
                    black_box(
                        service
                            .get_credential(&tenant, CredentialType::Twilio, &purpose)
                            .await
                            .expect("hit"),
                    );
                }
                start.elapsed()
            })
        });
    });
    group.finish();

    let mut samples: Vec<Duration> = runtime.block_on(async {
        let mut samples = Vec::with_capacity(200_000);
        for _ in 0..200_000 {
            let start = Instant::now();
            black_box(
                service
                    .get_credential(&tenant, CredentialType::Twilio, &purpose)
                    .await
                    .expect("hit"),
            );
            samples.push(start.elapsed());
            if samples.len() % 10_000 == 0 {
                // Let the audit writer drain between slices.
                tokio::task::yield_now().await;
            }
        }
        samples
    });
    samples.sort_unstable();
    println!(
        "cache_hit/get_credential per call (200000 calls, timer included): p50 {:?}, p90 {:?}, p99 {:?}",
        samples[samples.len() / 2],
        samples[samples.len() * 9 / 10],
        samples[samples.len() * 99 / 100]
    );
    runtime.block_on(async {
        service.shutdown().await.expect("audit flushed");
    });
}

/// Runs `operations` calls of `call` spread over `concurrency` tasks and returns the elapsed time.
async fn spread<F, Fut>(operations: u64, concurrency: u64, call: F) -> Duration
where
    F: Fn() -> Fut + Clone,
    Fut: std::future::Future<Output = ()>,
{
    let start = Instant::now();
    join_all((0..concurrency).map(|task| {
        let call = call.clone();
        let share = operations / concurrency + u64::from(task < operations % concurrency);
        async move {
            for _ in 0..share {
                call().await;
            }
        }
    }))
    .await;
    start.elapsed()
}

/// Creates the benchmarked organization with an owner and one verified Twilio credential sealed under `keys`,
/// and answers the service tenant that reads it with the credential's id.
async fn bench_organization(
    store: &PostgresStore,
    operator: &PostgresStore,
    keys: &Keyring,
) -> (Tenant, CredentialId) {
    let organization = operator
        .operator_create_organization(
            &OrganizationName::parse("Bench").expect("name"),
            HotLeadThreshold::DEFAULT,
        )
        .await
        .expect("organization");
    let owner = UserId::new_random();
    operator
        .operator_add_member(organization.id, owner, Role::Owner)
        .await
        .expect("member");
    let id = CredentialId::new_random();
    let admin = Tenant::user(organization.id, owner);
    store
        .insert_credential(
            &admin,
            &NewCredential {
                id,
                credential_type: CredentialType::Twilio,
                display_name: DisplayName::parse("Twilio").expect("name"),
                public_hint: None,
                provider_account_id: None,
                encrypted_data: sealed(keys, organization.id, id),
                encryption_key_version: NonZeroU32::MIN,
            },
        )
        .await
        .expect("credential");
    store
        .record_verification(
            &admin,
            id,
            &byoc_credential_store::VerificationOutcome {
                status: VerificationStatus::Verified,
                error: None,
            },
        )
        .await
        .expect("verified");
    let tenant = Tenant::service(
        organization.id,
        ServiceName::parse("lead-scorer").expect("name"),
    );
    (tenant, id)
}

fn uncached(criterion: &mut Criterion) {
    let runtime = Runtime::new().expect("tokio runtime");
    let database = runtime.block_on(fresh_postgres());
    // The service's login (users and services alike); the raw baseline is a superuser's, without RLS.
    let options = PgConnectOptions::from_str(&database.service_url()).expect("service URL");
    let store = runtime
        .block_on(PostgresStore::connect_with(options, 16))
        .expect("store");
    let operator = database.operator();
    // Like the store's pool, the raw pool does not ping a connection on every acquire: both make one round
    // trip per call.
    let raw = runtime
        .block_on(
            PgPoolOptions::new()
                .max_connections(16)
                .test_before_acquire(false)
                .connect(&database.superuser_url()),
        )
        .expect("raw pool");
    let keys = keyring(&[1], 1);
    let (tenant, credential_id) = runtime.block_on(bench_organization(&store, operator, &keys));
    // The service spawns its audit writer, so it is built inside the runtime.
    let service = runtime.block_on(async {
        CredentialService::new(
            Arc::new(store.clone()),
            Arc::clone(&keys),
            config(Duration::ZERO),
        )
    });
    let purpose = purpose();
    let service_read = {
        let (service, tenant) = (service.clone(), tenant.clone());
        move || {
            let (service, tenant, purpose) = (service.clone(), tenant.clone(), purpose.clone());
            async move {
                black_box(
                    service
                        .get_credential(&tenant, CredentialType::Twilio, &purpose)
                        .await
                        .expect("read"),
                );
            }
        }
    };
    let repository_read = {
        let (store, tenant) = (store.clone(), tenant.clone());
        move || {
            let (store, tenant) = (store.clone(), tenant.clone());
            async move {
                black_box(
                    store
                        .get_active_credential(&tenant, CredentialType::Twilio)
                        .await
                        .expect("read"),
                );
            }
        }
    };
    let raw_read = {
        let raw = raw.clone();
        move || {
            let raw = raw.clone();
            async move {
                let row = sqlx::query(RAW_SELECT)
                    .bind(credential_id.as_uuid())
                    .fetch_one(&raw)
                    .await
                    .expect("raw read");
                let _: Vec<u8> = row.get("encrypted_data");
            }
        }
    };

    let mut group = criterion.benchmark_group("uncached");
    for concurrency in [1_u64, 16] {
        group.bench_with_input(
            BenchmarkId::new("get_credential", concurrency),
            &concurrency,
            |bencher, &concurrency| {
                bencher.iter_custom(|operations| {
                    runtime.block_on(spread(operations, concurrency, service_read.clone()))
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("repository_get_active_credential", concurrency),
            &concurrency,
            |bencher, &concurrency| {
                bencher.iter_custom(|operations| {
                    runtime.block_on(spread(operations, concurrency, repository_read.clone()))
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("raw_pk_select", concurrency),
            &concurrency,
            |bencher, &concurrency| {
                bencher.iter_custom(|operations| {
                    runtime.block_on(spread(operations, concurrency, raw_read.clone()))
                });
            },
        );
    }
    group.finish();

    // The ratios the target is stated in (raw time / our time: our throughput relative to the raw select),
    // from the three runs interleaved in rounds so that background load hits them alike.
    let operations: u64 = env_number("BYOC_BENCH_RATIO_OPERATIONS").unwrap_or(20_000);
    for concurrency in [1_u64, 16] {
        let (mut ours, mut repository, mut baseline) =
            (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        for _ in 0..RATIO_ROUNDS {
            baseline += runtime.block_on(spread(operations, concurrency, raw_read.clone()));
            ours += runtime.block_on(spread(operations, concurrency, service_read.clone()));
            repository +=
                runtime.block_on(spread(operations, concurrency, repository_read.clone()));
        }
        let calls = operations * RATIO_ROUNDS;
        let per_call = |total: Duration| total / u32::try_from(calls).unwrap_or(u32::MAX);
        println!(
            "uncached at {concurrency} concurrent callers, {calls} calls each: raw_pk_select {:?}/call, \
             get_credential {:?}/call (ratio {:.2}x), repository_get_active_credential {:?}/call (ratio {:.2}x)",
            per_call(baseline),
            per_call(ours),
            baseline.as_secs_f64() / ours.as_secs_f64(),
            per_call(repository),
            baseline.as_secs_f64() / repository.as_secs_f64(),
        );
    }
    runtime.block_on(async {
        service.shutdown().await.expect("audit flushed");
        store.close().await;
        raw.close().await;
    });
    drop(database);
}

/// Inserts `rows` Twilio credentials sealed under `keys` into one organization, 10,000 per statement,
/// through the owner pool (no per-row notifications: the inserts run as a rotation would).
async fn bulk_seed(pool: &sqlx::PgPool, org_id: OrgId, keys: &Keyring, rows: usize) {
    const CHUNK: usize = 10_000;
    for start in (0..rows).step_by(CHUNK) {
        let end = (start + CHUNK).min(rows);
        let sealed_rows: Vec<(uuid::Uuid, Vec<u8>, String)> = (start..end)
            .into_par_iter()
            .map(|index| {
                let id = CredentialId::new_random();
                (
                    id.as_uuid(),
                    sealed(keys, org_id, id).into_bytes(),
                    format!("Twilio {index}"),
                )
            })
            .collect();
        let ids: Vec<uuid::Uuid> = sealed_rows.iter().map(|row| row.0).collect();
        let envelopes: Vec<&[u8]> = sealed_rows.iter().map(|row| row.1.as_slice()).collect();
        let names: Vec<&str> = sealed_rows.iter().map(|row| row.2.as_str()).collect();
        let mut transaction = pool.begin().await.expect("transaction");
        // Seeding is not a change anyone listens for: the notification trigger is off for this transaction
        // (the pool is a superuser's).
        sqlx::query(
            "ALTER TABLE organization_api_credentials DISABLE TRIGGER notify_credential_change",
        )
        .execute(&mut *transaction)
        .await
        .expect("quiet inserts");
        sqlx::query(
            "INSERT INTO organization_api_credentials \
             (id, org_id, credential_type, encrypted_data, encryption_key_version, display_name, \
              verification_status) \
             SELECT id, $2, 'twilio', data, 1, name, 'verified' \
             FROM UNNEST($1::uuid[], $3::bytea[], $4::text[]) AS t(id, data, name)",
        )
        .bind(ids)
        .bind(org_id.as_uuid())
        .bind(envelopes)
        .bind(names)
        .execute(&mut *transaction)
        .await
        .expect("bulk insert");
        sqlx::query(
            "ALTER TABLE organization_api_credentials ENABLE TRIGGER notify_credential_change",
        )
        .execute(&mut *transaction)
        .await
        .expect("notifications back on");
        transaction.commit().await.expect("commit");
    }
}

fn env_number<T: FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|text| text.parse().ok())
}

fn rotation() {
    let rows: usize = env_number("BYOC_BENCH_ROTATION_ROWS").unwrap_or(100_000);
    let runtime = Runtime::new().expect("tokio runtime");
    let database = runtime.block_on(fresh_postgres());
    let store = database.operator().clone();
    runtime.block_on(async {
        let organization = store
            .operator_create_organization(
                &OrganizationName::parse("Bench").expect("name"),
                HotLeadThreshold::DEFAULT,
            )
            .await
            .expect("organization");
        let owner = database.superuser_pool(2).await;
        let seeding = Instant::now();
        bulk_seed(&owner, organization.id, &keyring(&[1], 1), rows).await;
        sqlx::query("VACUUM ANALYZE organization_api_credentials")
            .execute(&owner)
            .await
            .expect("vacuum");
        owner.close().await;
        println!("rotation: seeded {rows} rows in {:?}", seeding.elapsed());
        let repository: Arc<dyn CredentialRepository> = Arc::new(store.clone());
        let defaults = RotationOptions::default();
        let options = RotationOptions {
            batch_size: env_number("BYOC_BENCH_ROTATION_BATCH").unwrap_or(defaults.batch_size),
            swaps_in_flight: env_number("BYOC_BENCH_ROTATION_IN_FLIGHT")
                .unwrap_or(defaults.swaps_in_flight),
            ..defaults
        };
        println!(
            "rotation: batch {} rows, {} swaps in flight",
            options.batch_size, options.swaps_in_flight
        );
        for (active, label) in [(2, "1 -> 2"), (1, "2 -> 1")] {
            let started = Instant::now();
            let report = rotate(
                Arc::clone(&repository),
                keyring(&[1, 2], active),
                &options,
                |_| {},
            )
            .await
            .expect("rotation");
            let elapsed = started.elapsed();
            assert_eq!(report.rewrapped, rows as u64);
            println!(
                "rotation {label}: {rows} rows re-wrapped in {elapsed:.2?} = {:.0} rows/s",
                rows as f64 / elapsed.as_secs_f64()
            );
        }
        store.close().await;
    });
    drop(database);
}

/// One database of the growth bench: the benchmarked organization's credential among `stored` credentials in
/// all, the others spread over organizations of 1,000 credentials each.
struct GrowthDatabase {
    stored: u64,
    service: CredentialService,
    tenant: Tenant,
    store: PostgresStore,
    _database: byoc_credential_store::test_support::TestPostgres,
}

async fn growth_database(stored: u64, keys: &Arc<Keyring>) -> GrowthDatabase {
    const PER_ORGANIZATION: u64 = 1_000;
    let database = fresh_postgres().await;
    let options = PgConnectOptions::from_str(&database.service_url()).expect("service URL");
    let store = PostgresStore::connect_with(options, 4)
        .await
        .expect("store");
    let (tenant, credential_id) = bench_organization(&store, database.operator(), keys).await;
    let owner = database.superuser_pool(2).await;
    // The other organizations' rows are never opened: they carry a copy of a real envelope's bytes, so rows
    // and indexes have their real size. Seeding is nobody's change: triggers are off for this session.
    let filler = sealed(keys, tenant.org_id, credential_id).into_bytes();
    let seeding = Instant::now();
    let mut connection = owner.acquire().await.expect("connection");
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut *connection)
        .await
        .expect("triggers off");
    let others = stored - 1;
    let organizations = others.div_ceil(PER_ORGANIZATION);
    sqlx::query(
        "INSERT INTO organizations (name) SELECT 'Growth ' || g FROM generate_series(1, $1::bigint) g",
    )
    .bind(i64::try_from(organizations).expect("small"))
    .execute(&mut *connection)
    .await
    .expect("organizations");
    sqlx::query(
        "INSERT INTO organization_api_credentials \
         (org_id, credential_type, encrypted_data, encryption_key_version, display_name, verification_status) \
         SELECT o.id, 'twilio', $1, 1, 'Twilio ' || g, 'verified' \
         FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM organizations WHERE name LIKE 'Growth %') o \
         CROSS JOIN LATERAL generate_series(1, LEAST($2::bigint, $3::bigint - (o.n - 1) * $2::bigint)) g",
    )
    .bind(filler)
    .bind(i64::try_from(PER_ORGANIZATION).expect("small"))
    .bind(i64::try_from(others).expect("small"))
    .execute(&mut *connection)
    .await
    .expect("credentials");
    sqlx::query("VACUUM ANALYZE")
        .execute(&mut *connection)
        .await
        .expect("vacuum");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM organization_api_credentials")
        .fetch_one(&mut *connection)
        .await
        .expect("count");
    assert_eq!(u64::try_from(count).expect("a count"), stored);
    drop(connection);
    owner.close().await;
    println!(
        "growth: {stored} credentials stored in {organizations} + 1 organizations, seeded in {:.1?}",
        seeding.elapsed()
    );
    let service = CredentialService::new(
        Arc::new(store.clone()),
        Arc::clone(keys),
        config(Duration::ZERO),
    );
    GrowthDatabase {
        stored,
        service,
        tenant,
        store,
        _database: database,
    }
}

/// Times `calls` uncached reads one after another, each on its own.
async fn timed_reads(database: &GrowthDatabase, calls: usize, samples: &mut Vec<Duration>) {
    let purpose = purpose();
    for _ in 0..calls {
        let started = Instant::now();
        black_box(
            database
                .service
                .get_credential(&database.tenant, CredentialType::Twilio, &purpose)
                .await
                .expect("read"),
        );
        samples.push(started.elapsed());
    }
}

fn quantile(samples: &mut [Duration], quantile: f64) -> Duration {
    samples.sort_unstable();
    let index = ((samples.len() as f64 - 1.0) * quantile).round() as usize;
    samples[index]
}

/// Uncached `get_credential` latency with 1,000 credentials stored and with `BYOC_BENCH_GROWTH_ROWS`
/// (default 1,000,000), one caller, in interleaved rounds (target: p50 at the large size ≤ 1.2 × at 1,000).
fn growth() {
    let large: u64 = env_number("BYOC_BENCH_GROWTH_ROWS").unwrap_or(1_000_000);
    let rounds: usize = env_number("BYOC_BENCH_GROWTH_ROUNDS").unwrap_or(10);
    let calls_per_round: usize = env_number("BYOC_BENCH_GROWTH_CALLS").unwrap_or(2_000);
    let runtime = Runtime::new().expect("tokio runtime");
    let keys = keyring(&[1], 1);
    runtime.block_on(async {
        let databases = [
            growth_database(1_000, &keys).await,
            growth_database(large, &keys).await,
        ];
        // Warm-up: connections, prepared statements, the shared buffers for both.
        for database in &databases {
            timed_reads(database, calls_per_round, &mut Vec::new()).await;
        }
        let mut samples = [Vec::new(), Vec::new()];
        for _ in 0..rounds {
            for (database, samples) in databases.iter().zip(samples.iter_mut()) {
                timed_reads(database, calls_per_round, samples).await;
            }
        }
        let mut p50 = Vec::new();
        for (database, samples) in databases.iter().zip(samples.iter_mut()) {
            let median = quantile(samples, 0.5);
            println!(
                "growth: uncached get_credential with {} credentials stored, {} calls: p50 {median:.1?}, p90 {:.1?}, p99 {:.1?}",
                database.stored,
                samples.len(),
                quantile(samples, 0.9),
                quantile(samples, 0.99)
            );
            p50.push(median);
        }
        let ratio = p50[1].as_secs_f64() / p50[0].as_secs_f64();
        println!(
            "growth: p50 with {large} ÷ p50 with 1000 = {ratio:.3} (target <= 1.2: {})",
            if ratio <= 1.2 { "met" } else { "NOT met" }
        );
        for database in databases {
            database.service.shutdown().await.expect("audit flushed");
            database.store.close().await;
        }
    });
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let wants = |name: &str| {
        filter.is_empty()
            || filter
                .iter()
                .any(|f| name.contains(f.as_str()) || f.contains(name))
    };
    if wants("cache_hit") {
        cache_hit(&mut criterion);
    }
    if wants("uncached") {
        uncached(&mut criterion);
    }
    if wants("rotation") {
        rotation();
    }
    // A million rows take minutes to seed: the growth bench runs only when named.
    if filter.iter().any(|f| f == "growth") {
        growth();
    }
    criterion.final_summary();
}
