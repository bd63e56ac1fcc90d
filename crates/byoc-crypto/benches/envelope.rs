//! Envelope seal / open / rewrap of a 256-byte payload, and raw ring AES-256-GCM open of the same payload.
//!
//! Run with `cargo bench -p byoc-crypto --bench envelope`. After the criterion benchmarks it prints the
//! ratio raw-open time / envelope-open time (envelope open throughput relative to raw open; target >= 0.30),
//! from interleaved timed loops over the same inputs, next to the bare ring operations an envelope open is
//! made of (the limit of the construction on the machine).

use std::hint::black_box;
use std::time::{Duration, Instant};

use byoc_crypto::{EnvelopeContext, KeyVersion, Keyring, MasterKey};
use criterion::Criterion;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use uuid::Uuid;

const PAYLOAD_LEN: usize = 256;
const CREDENTIAL_TYPE: &str = "twilio";

/// Everything the benchmarks share, built once.
struct Fixture {
    keyring: Keyring,
    org_id: Uuid,
    credential_id: Uuid,
    payload: Vec<u8>,
    /// Sealed under the active version (2).
    envelope: Vec<u8>,
    /// Sealed under version 1, so rewrap moves it to version 2.
    old_envelope: Vec<u8>,
    raw_key: LessSafeKey,
    raw_key_bytes: [u8; 32],
    raw_nonce: [u8; 12],
    raw_aad: Vec<u8>,
    raw_ciphertext: Vec<u8>,
}

impl Fixture {
    fn new() -> Fixture {
        let v1 = KeyVersion::new(1).expect("1 is a valid version");
        let v2 = KeyVersion::new(2).expect("2 is a valid version");
        let org_id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let credential_id = Uuid::from_u128(0xfedc_ba98_7654_3210_fedc_ba98_7654_3210);
        let payload: Vec<u8> = (0..PAYLOAD_LEN).map(|index| index as u8).collect();
        let context = EnvelopeContext::new(org_id, CREDENTIAL_TYPE, credential_id);

        let first_key = MasterKey::from_bytes([0x11; 32]);
        let old_keyring = Keyring::new(vec![(v1, first_key)], v1).expect("one-version keyring");
        let old_envelope = old_keyring
            .seal(&payload, &context)
            .expect("seal under version 1")
            .into_bytes();
        let keyring = Keyring::new(
            vec![
                (v1, MasterKey::from_bytes([0x11; 32])),
                (v2, MasterKey::from_bytes([0x22; 32])),
            ],
            v2,
        )
        .expect("two-version keyring");
        let envelope = keyring
            .seal(&payload, &context)
            .expect("seal under version 2")
            .into_bytes();

        let raw_key_bytes = [0x33; 32];
        let raw_key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &raw_key_bytes).expect("32-byte AES key"),
        );
        let raw_nonce = [0x44; 12];
        let mut raw_aad = Vec::new();
        raw_aad.extend_from_slice(org_id.as_bytes());
        raw_aad.extend_from_slice(CREDENTIAL_TYPE.as_bytes());
        raw_aad.extend_from_slice(credential_id.as_bytes());
        let mut raw_ciphertext = payload.clone();
        raw_key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(raw_nonce),
                Aad::from(&raw_aad),
                &mut raw_ciphertext,
            )
            .expect("raw seal");

        Fixture {
            keyring,
            org_id,
            credential_id,
            payload,
            envelope,
            old_envelope,
            raw_key,
            raw_key_bytes,
            raw_nonce,
            raw_aad,
            raw_ciphertext,
        }
    }

    fn context(&self) -> EnvelopeContext<'static> {
        EnvelopeContext::new(self.org_id, CREDENTIAL_TYPE, self.credential_id)
    }

    fn envelope_open(&self) -> usize {
        self.keyring
            .open(black_box(&self.envelope), &self.context())
            .expect("envelope opens")
            .expose_secret()
            .len()
    }

    /// Raw AES-256-GCM open into an owned buffer, as the envelope open does.
    fn raw_open(&self) -> usize {
        let mut buffer = black_box(&self.raw_ciphertext).clone();
        self.raw_key
            .open_in_place(
                Nonce::assume_unique_for_key(self.raw_nonce),
                Aad::from(&self.raw_aad),
                &mut buffer,
            )
            .expect("raw ciphertext opens")
            .len()
    }
}

fn bench(criterion: &mut Criterion, fixture: &Fixture) {
    let context = fixture.context();
    criterion.bench_function("envelope_seal_256B", |bencher| {
        bencher.iter(|| fixture.keyring.seal(black_box(&fixture.payload), &context))
    });
    criterion.bench_function("envelope_open_256B", |bencher| {
        bencher.iter(|| fixture.envelope_open())
    });
    criterion.bench_function("envelope_rewrap_256B", |bencher| {
        bencher.iter(|| {
            fixture
                .keyring
                .rewrap(black_box(&fixture.old_envelope), &context)
        })
    });
    criterion.bench_function("raw_aes256gcm_open_256B", |bencher| {
        bencher.iter(|| fixture.raw_open())
    });
}

/// Time per call of one round of `calls` calls.
fn time_per_call(calls: u32, mut operation: impl FnMut() -> usize) -> Duration {
    let start = Instant::now();
    for _ in 0..calls {
        black_box(operation());
    }
    start.elapsed() / calls
}

/// Minimum and median of a set of per-call times.
fn min_and_median(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (samples[0], samples[samples.len() / 2])
}

/// Prints raw-open time / envelope-open time, from interleaved rounds so every operation sees the same
/// machine load. Also times the bare ring operations an envelope open cannot avoid (unwrap the 32-byte
/// data key, build its AES-256-GCM key, open the payload), the construction's limit on this machine.
fn print_open_ratio(fixture: &Fixture) {
    const ROUNDS: usize = 41;
    const CALLS: u32 = 10_000;
    let floor = RingFloor::new(fixture);
    let (mut envelope, mut raw, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        envelope.push(time_per_call(CALLS, || fixture.envelope_open()));
        raw.push(time_per_call(CALLS, || fixture.raw_open()));
        bare.push(time_per_call(CALLS, || floor.open()));
    }
    let (envelope_min, envelope_median) = min_and_median(envelope);
    let (raw_min, raw_median) = min_and_median(raw);
    let (bare_min, bare_median) = min_and_median(bare);
    let ratio = |raw: Duration, other: Duration| raw.as_secs_f64() / other.as_secs_f64();
    println!("open of a {PAYLOAD_LEN}-byte payload, {ROUNDS} interleaved rounds of {CALLS} calls (min / median per call):");
    println!("  envelope open                           {envelope_min:?} / {envelope_median:?}");
    println!("  bare ring: unwrap + key schedule + open {bare_min:?} / {bare_median:?}");
    println!("  raw ring AES-256-GCM open               {raw_min:?} / {raw_median:?}");
    println!(
        "  construction limit raw/bare: {:.3} (min) / {:.3} (median)",
        ratio(raw_min, bare_min),
        ratio(raw_median, bare_median)
    );
    let (by_min, by_median) = (
        ratio(raw_min, envelope_min),
        ratio(raw_median, envelope_median),
    );
    println!(
        "ratio raw-open time / envelope-open time = {by_min:.3} (min) / {by_median:.3} (median); \
         target >= 0.30: {}",
        if by_min >= 0.30 {
            "met (min)"
        } else {
            "NOT met"
        }
    );
}

/// The ring operations an envelope open is made of, without the envelope around them.
struct RingFloor {
    key_encryption_key: LessSafeKey,
    wrapped_key: [u8; 48],
    data_key_ciphertext: Vec<u8>,
    aad: Vec<u8>,
}

impl RingFloor {
    fn new(fixture: &Fixture) -> RingFloor {
        let key_encryption_key =
            LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[0x55; 32]).expect("32-byte AES key"));
        let aad = fixture.raw_aad.clone();
        let mut wrapped = fixture.raw_key_bytes.to_vec();
        key_encryption_key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(fixture.raw_nonce),
                Aad::from(&aad),
                &mut wrapped,
            )
            .expect("wrap");
        RingFloor {
            key_encryption_key,
            wrapped_key: wrapped.try_into().expect("32-byte key + 16-byte tag"),
            data_key_ciphertext: fixture.raw_ciphertext.clone(),
            aad,
        }
    }

    fn open(&self) -> usize {
        let nonce = || Nonce::assume_unique_for_key([0x44; 12]);
        let mut wrapped = black_box(self.wrapped_key);
        let data_key = self
            .key_encryption_key
            .open_in_place(nonce(), Aad::from(&self.aad), &mut wrapped)
            .expect("unwrap");
        let data_key =
            LessSafeKey::new(UnboundKey::new(&AES_256_GCM, data_key).expect("32-byte AES key"));
        let mut buffer = black_box(&self.data_key_ciphertext).clone();
        data_key
            .open_in_place(nonce(), Aad::from(&self.aad), &mut buffer)
            .expect("raw ciphertext opens")
            .len()
    }
}

fn main() {
    let fixture = Fixture::new();
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
        .configure_from_args();
    bench(&mut criterion, &fixture);
    criterion.final_summary();
    // `cargo bench` passes --bench; `cargo test --benches` does not and only smoke-tests the functions.
    if std::env::args().any(|arg| arg == "--bench") {
        print_open_ratio(&fixture);
    }
}
