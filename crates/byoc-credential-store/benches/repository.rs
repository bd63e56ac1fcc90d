//! Repository read and rotation costs on the local Postgres (`BYOC_TEST_DATABASE_URL`), each next to its
//! baseline from the same run:
//!
//! - `get_credential/*`: one credential by id through the repository (tenant context, role check and RLS,
//!   in one round trip) against a raw prepared primary-key select of the same columns as the owner, at 1 and
//!   at 16 concurrent callers;
//! - `rotation/*`: one batch of 1000 envelopes read through `operator_envelope_batch` and compare-and-swapped
//!   through `operator_swap_envelopes` (with its `rotated` audit event).

use std::sync::Arc;
use std::time::{Duration, Instant};

use byoc_credential_store::test_support::fresh_postgres;
use byoc_credential_store::{
    CredentialId, CredentialRepository, CredentialType, DisplayName, EncryptedEnvelope,
    EnvelopeSwap, HotLeadThreshold, NewCredential, OrganizationName, Role, ServiceName, Tenant,
    UserId,
};
use criterion::{BenchmarkId, Criterion};
use futures::future::join_all;
use sqlx::Row;
use tokio::runtime::Runtime;

const RAW_SELECT: &str = "SELECT id, org_id, credential_type, display_name, public_hint, is_active, \
     verification_status, last_verified_at, verification_error, created_at, updated_at, created_by, \
     encryption_key_version, encrypted_data FROM organization_api_credentials WHERE id = $1";

fn envelope(seed: u32) -> EncryptedEnvelope {
    EncryptedEnvelope::new(
        seed.to_le_bytes()
            .iter()
            .cycle()
            .take(180)
            .copied()
            .collect(),
    )
    .expect("non-empty")
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

fn get_credential(criterion: &mut Criterion) {
    let runtime = Runtime::new().expect("tokio runtime");
    let database = runtime.block_on(fresh_postgres());
    let store = Arc::new(runtime.block_on(database.connect_again()));
    let raw = runtime.block_on(database.superuser_pool(16));
    let credential_id = CredentialId::new_random();
    let operator = database.operator();
    let tenant = runtime.block_on(async {
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
        let credential = NewCredential {
            id: credential_id,
            credential_type: CredentialType::Twilio,
            display_name: DisplayName::parse("Twilio").expect("name"),
            public_hint: None,
            provider_account_id: None,
            encrypted_data: envelope(1),
            encryption_key_version: std::num::NonZeroU32::MIN,
        };
        store
            .insert_credential(&Tenant::user(organization.id, owner), &credential)
            .await
            .expect("credential");
        Tenant::service(
            organization.id,
            ServiceName::parse("bench").expect("service"),
        )
    });

    let mut group = criterion.benchmark_group("get_credential");
    for concurrency in [1_u64, 16] {
        group.bench_with_input(
            BenchmarkId::new("repository", concurrency),
            &concurrency,
            |bencher, &concurrency| {
                bencher.iter_custom(|operations| {
                    let (store, tenant) = (store.clone(), tenant.clone());
                    runtime.block_on(spread(operations, concurrency, move || {
                        let (store, tenant) = (store.clone(), tenant.clone());
                        async move {
                            store
                                .get_credential(&tenant, credential_id)
                                .await
                                .expect("read");
                        }
                    }))
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("raw_pk_select", concurrency),
            &concurrency,
            |bencher, &concurrency| {
                bencher.iter_custom(|operations| {
                    let raw = raw.clone();
                    runtime.block_on(spread(operations, concurrency, move || {
                        let raw = raw.clone();
                        async move {
                            let row = sqlx::query(RAW_SELECT)
                                .bind(credential_id.as_uuid())
                                .fetch_one(&raw)
                                .await
                                .expect("raw read");
                            let _: Vec<u8> = row.get("encrypted_data");
                        }
                    }))
                });
            },
        );
    }
    group.finish();
    runtime.block_on(async {
        store.close().await;
        raw.close().await;
    });
    drop(database);
}

fn rotation(criterion: &mut Criterion) {
    const BATCH: u32 = 1000;
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
        for index in 0..BATCH {
            let credential = NewCredential {
                id: CredentialId::new_random(),
                credential_type: CredentialType::Twilio,
                display_name: DisplayName::parse(&format!("Twilio {index}")).expect("name"),
                public_hint: None,
                provider_account_id: None,
                encrypted_data: envelope(index),
                encryption_key_version: std::num::NonZeroU32::MIN,
            };
            store
                .operator_import_credential(
                    organization.id,
                    &credential,
                    &ServiceName::parse("bench").expect("name"),
                    &serde_json::json!({}),
                )
                .await
                .expect("credential");
        }
    });

    let rotation = ServiceName::parse("key-rotation").expect("name");
    let mut group = criterion.benchmark_group("rotation");
    group.sample_size(20);
    group.throughput(criterion::Throughput::Elements(u64::from(BATCH)));
    group.bench_function("read_and_swap_batch_of_1000", |bencher| {
        bencher.iter(|| {
            runtime.block_on(async {
                let batch = store
                    .operator_envelope_batch(None, None, BATCH)
                    .await
                    .expect("batch");
                let swaps: Vec<EnvelopeSwap> = batch
                    .into_iter()
                    .map(|row| {
                        let mut replacement = row.encrypted_data.as_bytes().to_vec();
                        replacement.reverse();
                        EnvelopeSwap {
                            id: row.id,
                            expected: row.encrypted_data,
                            expected_key_version: row.encryption_key_version,
                            replacement: EncryptedEnvelope::new(replacement).expect("non-empty"),
                            replacement_key_version: row.encryption_key_version,
                        }
                    })
                    .collect();
                let swapped = store
                    .operator_swap_envelopes(&swaps, &rotation)
                    .await
                    .expect("swap");
                assert_eq!(swapped.len(), swaps.len());
            })
        });
    });
    group.finish();
    runtime.block_on(store.close());
    drop(database);
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    get_credential(&mut criterion);
    rotation(&mut criterion);
    criterion.final_summary();
}
