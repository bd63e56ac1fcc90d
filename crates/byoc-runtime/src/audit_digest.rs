//! Signed audit digests (CloudTrail's digest files are the model): the Ed25519 signing key
//! (`BYOC_AUDIT_SIGNING_KEY`), the payload the service signs for an organization's chain head, the digest as
//! delivered (`{"payload": "<JSON text>", "signature": "<hex>"}`), and the check of a directory of digests
//! against the database's chains (`byoc audit verify --digests DIR`).
//!
//! A digest proves, to anyone holding the public key, that the organization's chain had `headHash` at
//! `headSeq` when it was issued; each digest names the SHA-256 of the previous one's payload, so the digests of an
//! organization form a chain of their own. Rewriting the audit chain after a digest was delivered elsewhere is
//! detected even by someone who can write every table: they cannot sign a digest for the rewritten head.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use byoc_credential_store::{
    payload_hash, AuditDigestDue, CredentialRepository, NewAuditDigest, OrgId, StoreError,
    StoredAuditDigest,
};
use chrono::SecondsFormat;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

/// The signing algorithm, as `GET /api/audit/signing-key` names it.
pub const ALGORITHM: &str = "Ed25519";
/// The largest digest file read.
const MAX_DIGEST_FILE_BYTES: u64 = 64 * 1024;

/// Why `BYOC_AUDIT_SIGNING_KEY` was refused (never its value).
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    /// Not 64 hex digits.
    #[error("must be the 32-byte Ed25519 seed as 64 hex digits")]
    Malformed,
    /// The system's random source failed (generating a key).
    #[error("the system's random source failed")]
    Random,
}

/// The Ed25519 key that signs audit digests. `Debug` prints only the public key; the seed is zeroed on drop.
pub struct AuditSigningKey {
    seed: Zeroizing<[u8; 32]>,
    pair: Ed25519KeyPair,
}

impl AuditSigningKey {
    /// Parses the 32-byte seed from 64 hex digits (surrounding whitespace ignored).
    pub fn parse(hex_seed: &str) -> Result<AuditSigningKey, SigningKeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hex_seed.trim(), seed.as_mut_slice())
            .map_err(|_| SigningKeyError::Malformed)?;
        AuditSigningKey::from_seed(seed)
    }

    /// A new random key (dev mode keeps it in its folder).
    pub fn generate() -> Result<AuditSigningKey, SigningKeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(seed.as_mut_slice())
            .map_err(|_| SigningKeyError::Random)?;
        AuditSigningKey::from_seed(seed)
    }

    fn from_seed(seed: Zeroizing<[u8; 32]>) -> Result<AuditSigningKey, SigningKeyError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed.as_slice())
            .map_err(|_| SigningKeyError::Malformed)?;
        Ok(AuditSigningKey { seed, pair })
    }

    /// The seed as 64 hex digits (for dev mode's file).
    pub fn to_hex(&self) -> SecretString {
        SecretString::from(hex::encode(self.seed.as_slice()))
    }

    /// The public key that checks this key's digests.
    pub fn public_key(&self) -> AuditPublicKey {
        let mut key = [0u8; 32];
        key.copy_from_slice(self.pair.public_key().as_ref());
        AuditPublicKey(key)
    }

    /// Signs the digest `due` describes: the payload's JSON text and its signature.
    pub fn sign(&self, due: &AuditDigestDue) -> NewAuditDigest {
        let payload = DigestPayload {
            org_id: due.org_id.as_uuid(),
            head_seq: due.head.seq,
            head_hash: hex::encode(due.head.hash),
            previous_digest_hash: due.previous_payload_hash.map(hex::encode),
            issued_at: due.issued_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        }
        .to_json();
        let mut signature = [0u8; 64];
        signature.copy_from_slice(self.pair.sign(payload.as_bytes()).as_ref());
        NewAuditDigest {
            due: due.clone(),
            payload,
            signature,
        }
    }
}

impl fmt::Debug for AuditSigningKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("AuditSigningKey")
            .field("public_key", &self.public_key().to_hex())
            .finish_non_exhaustive()
    }
}

/// The public half of the signing key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AuditPublicKey([u8; 32]);

impl AuditPublicKey {
    /// Parses 64 hex digits.
    pub fn parse(hex_key: &str) -> Result<AuditPublicKey, SigningKeyError> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(hex_key.trim(), &mut key).map_err(|_| SigningKeyError::Malformed)?;
        Ok(AuditPublicKey(key))
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Whether `signature` is this key's signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, self.0)
            .verify(message, signature)
            .is_ok()
    }
}

impl fmt::Debug for AuditPublicKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "AuditPublicKey({})", self.to_hex())
    }
}

/// What a digest signs: `{orgId, headSeq, headHash, previousDigestHash, issuedAt}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DigestPayload {
    /// The organization.
    pub org_id: Uuid,
    /// The chain position signed.
    pub head_seq: i64,
    /// The chain hash at that position, 64 lowercase hex digits.
    pub head_hash: String,
    /// The SHA-256 of the previous digest's payload text, 64 lowercase hex digits; null for the first.
    pub previous_digest_hash: Option<String>,
    /// When it was issued (RFC 3339, UTC, milliseconds).
    pub issued_at: String,
}

impl DigestPayload {
    fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A digest as delivered: the payload's JSON text and the hex Ed25519 signature of exactly its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedDigest {
    /// The payload's JSON text.
    pub payload: String,
    /// The signature, 128 lowercase hex digits.
    pub signature: String,
}

impl SignedDigest {
    /// The delivered form of a recorded digest.
    pub fn of(digest: &StoredAuditDigest) -> SignedDigest {
        SignedDigest {
            payload: digest.payload.clone(),
            signature: hex::encode(digest.signature),
        }
    }

    /// The JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Checks the signature with `key` and reads the payload.
    pub fn open(&self, key: &AuditPublicKey) -> Result<OpenedDigest, &'static str> {
        let signature = hex::decode(&self.signature).map_err(|_| "the signature is not hex")?;
        if !key.verifies(self.payload.as_bytes(), &signature) {
            return Err("the signature does not hold for this public key");
        }
        let payload: DigestPayload = serde_json::from_str(&self.payload)
            .map_err(|_| "the signed payload is not a digest payload")?;
        let head_hash = decode_hash(&payload.head_hash).ok_or("headHash is not 64 hex digits")?;
        let previous = match &payload.previous_digest_hash {
            None => None,
            Some(text) => Some(decode_hash(text).ok_or("previousDigestHash is not 64 hex digits")?),
        };
        Ok(OpenedDigest {
            payload_hash: payload_hash(&self.payload),
            head_hash,
            previous,
            payload,
        })
    }
}

/// A digest whose signature holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenedDigest {
    /// What it signs.
    pub payload: DigestPayload,
    /// The SHA-256 of its payload text (what the next digest names).
    pub payload_hash: [u8; 32],
    /// The signed head hash.
    pub head_hash: [u8; 32],
    /// The previous digest's payload hash, if any.
    pub previous: Option<[u8; 32]>,
}

fn decode_hash(text: &str) -> Option<[u8; 32]> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text, &mut hash).ok()?;
    Some(hash)
}

/// Where a digest is filed under the digest directory: `<orgId>/<headSeq, 12 digits>.json`.
pub fn digest_file(dir: &Path, org_id: OrgId, head_seq: i64) -> PathBuf {
    dir.join(org_id.to_string())
        .join(format!("{head_seq:012}.json"))
}

/// Writes a recorded digest under `dir` (atomically: a temporary file renamed into place; writing it again
/// gives the same file).
pub fn file_digest(dir: &Path, digest: &StoredAuditDigest) -> std::io::Result<PathBuf> {
    let path = digest_file(dir, digest.org_id, digest.head_seq);
    let folder = path.parent().unwrap_or(dir);
    fs::create_dir_all(folder)?;
    let temporary = folder.join(format!(".{}.tmp", Uuid::new_v4()));
    let written = (|| {
        let mut file = fs::File::create(&temporary)?;
        file.write_all(SignedDigest::of(digest).to_json().as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        fs::rename(&temporary, &path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written.map(|()| path)
}

/// What checking a directory of digests found for one organization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestCheck {
    /// The organization.
    pub org_id: OrgId,
    /// How many of its digests were checked.
    pub digests: usize,
    /// The newest digested chain position.
    pub newest_head_seq: i64,
    /// The first thing that does not hold (a sentence naming the file), if any.
    pub problem: Option<String>,
}

/// What checking a directory of digests found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DigestDirReport {
    /// Files that are no digest of this key (unreadable, malformed, or a signature that does not hold), each a
    /// sentence naming the file.
    pub refused_files: Vec<String>,
    /// Each organization with digests, in organization id order.
    pub organizations: Vec<DigestCheck>,
}

/// Why a directory of digests could not be checked at all.
#[derive(Debug, thiserror::Error)]
pub enum DigestDirError {
    /// The directory or a file in it could not be read.
    #[error("{path}: {source}")]
    Io {
        /// What could not be read.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be read.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Checks every digest under `dir` (`*.json` in it and in its folders) with `key`, and each organization's
/// chain in the database against them (only `org`'s when given): every signature holds, each organization's
/// digests link up (each names the previous one's payload hash), and the chain still has each digested head
/// hash at its position. Organizations in organization id order.
pub async fn check_digest_dir(
    dir: &Path,
    key: &AuditPublicKey,
    repository: &dyn CredentialRepository,
    org: Option<OrgId>,
) -> Result<DigestDirReport, DigestDirError> {
    let mut by_org: BTreeMap<Uuid, Vec<(PathBuf, OpenedDigest)>> = BTreeMap::new();
    let mut report = DigestDirReport::default();
    for path in digest_paths(dir)? {
        match read_digest(&path, key) {
            Ok(opened) => by_org
                .entry(opened.payload.org_id)
                .or_default()
                .push((path, opened)),
            Err(problem) => report
                .refused_files
                .push(format!("{}: {problem}", path.display())),
        }
    }
    for (org_uuid, mut opened) in by_org {
        let org_id = OrgId::from_uuid(org_uuid);
        if org.is_some_and(|wanted| wanted != org_id) {
            continue;
        }
        opened.sort_by_key(|(_, digest)| digest.payload.head_seq);
        report
            .organizations
            .push(check_organization(org_id, &opened, repository).await?);
    }
    Ok(report)
}

/// Checks one organization's digests, sorted by position, against each other and its chain.
async fn check_organization(
    org_id: OrgId,
    opened: &[(PathBuf, OpenedDigest)],
    repository: &dyn CredentialRepository,
) -> Result<DigestCheck, DigestDirError> {
    let newest_head_seq = opened
        .last()
        .map_or(0, |(_, digest)| digest.payload.head_seq);
    let report = |problem: Option<String>| DigestCheck {
        org_id,
        digests: opened.len(),
        newest_head_seq,
        problem,
    };
    for pair in opened.windows(2) {
        let [(earlier_path, earlier), (path, digest)] = pair else {
            continue;
        };
        if digest.payload.head_seq == earlier.payload.head_seq {
            return Ok(report(Some(format!(
                "{} and {} both sign position {}",
                earlier_path.display(),
                path.display(),
                digest.payload.head_seq
            ))));
        }
        if digest.previous != Some(earlier.payload_hash) {
            return Ok(report(Some(format!(
                "{} does not follow {}: a digest between them is missing or the digests were reissued",
                path.display(),
                earlier_path.display()
            ))));
        }
    }
    let positions: Vec<i64> = opened
        .iter()
        .map(|(_, digest)| digest.payload.head_seq)
        .collect();
    let stored: BTreeMap<i64, [u8; 32]> = repository
        .operator_audit_chain_hashes(org_id, &positions)
        .await?
        .into_iter()
        .collect();
    for (path, digest) in opened {
        let seq = digest.payload.head_seq;
        match stored.get(&seq) {
            None => {
                return Ok(report(Some(format!(
                    "the chain no longer has event {seq}, which {} signed (events were deleted)",
                    path.display()
                ))))
            }
            Some(hash) if *hash != digest.head_hash => {
                return Ok(report(Some(format!(
                    "event {seq} is not the one {} signed (the chain was rewritten)",
                    path.display()
                ))))
            }
            Some(_) => {}
        }
    }
    Ok(report(None))
}

fn digest_paths(dir: &Path) -> Result<Vec<PathBuf>, DigestDirError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DigestDirError::Io { path, source }
    };
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.is_dir() {
            for inner in fs::read_dir(&path).map_err(io(&path))? {
                let inner = inner.map_err(io(&path))?.path();
                if is_digest_file(&inner) {
                    paths.push(inner);
                }
            }
        } else if is_digest_file(&path) {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

fn is_digest_file(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .is_some_and(|extension| extension == "json")
}

/// Reads one digest file and checks its signature; why not, as a phrase, otherwise.
fn read_digest(path: &Path, key: &AuditPublicKey) -> Result<OpenedDigest, String> {
    let mut text = String::new();
    fs::File::open(path)
        .and_then(|file| file.take(MAX_DIGEST_FILE_BYTES).read_to_string(&mut text))
        .map_err(|error| format!("cannot be read: {error}"))?;
    let digest: SignedDigest = serde_json::from_str(text.trim())
        .map_err(|_| "is not a digest ({\"payload\", \"signature\"})".to_owned())?;
    digest.open(key).map_err(str::to_owned)
}

#[cfg(test)]
mod tests {
    use byoc_credential_store::AuditChainHead;
    use chrono::{DateTime, Utc};

    use super::*;

    const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn due(previous: Option<[u8; 32]>) -> AuditDigestDue {
        AuditDigestDue {
            org_id: OrgId::from_uuid(Uuid::from_u128(7)),
            digest_seq: 2,
            head: AuditChainHead {
                seq: 42,
                hash: [0xab; 32],
            },
            previous_payload_hash: previous,
            issued_at: DateTime::parse_from_rfc3339("2026-12-07T01:02:03.456Z")
                .unwrap()
                .with_timezone(&Utc),
        }
    }

    #[test]
    fn the_key_is_rfc_8032s_and_never_printed() {
        let key = AuditSigningKey::parse(SEED).unwrap();
        assert_eq!(key.public_key().to_hex(), PUBLIC);
        let printed = format!("{key:?}");
        assert!(
            !printed.contains(SEED) && printed.contains(PUBLIC),
            "{printed}"
        );
        for bad in [
            "",
            "abc",
            &SEED[..62],
            &format!("{SEED}00"),
            &SEED.replace('9', "g"),
        ] {
            let line = AuditSigningKey::parse(bad).err().unwrap().to_string();
            assert_eq!(line, "must be the 32-byte Ed25519 seed as 64 hex digits");
        }
        let generated = AuditSigningKey::generate().unwrap();
        let again =
            AuditSigningKey::parse(secrecy::ExposeSecret::expose_secret(&generated.to_hex()))
                .unwrap();
        assert_eq!(generated.public_key(), again.public_key());
    }

    #[test]
    fn a_digest_signs_exactly_its_payload_text() {
        let key = AuditSigningKey::parse(SEED).unwrap();
        let signed = key.sign(&due(Some([1; 32])));
        assert_eq!(
            signed.payload,
            format!(
                "{{\"orgId\":\"{}\",\"headSeq\":42,\"headHash\":\"{}\",\"previousDigestHash\":\"{}\",\
                 \"issuedAt\":\"2026-12-07T01:02:03.456Z\"}}",
                Uuid::from_u128(7),
                "ab".repeat(32),
                "01".repeat(32)
            )
        );
        // The payload's SHA-256 as Python's hashlib gives it.
        assert_eq!(
            hex::encode(signed.payload_hash()),
            "bbed38a9c9213f0a15fbb1b992eb718cd25b1fda248de52e76b188f2e4f58e41"
        );
        let first = key.sign(&due(None));
        assert!(first.payload.contains("\"previousDigestHash\":null"));
        let stored = StoredAuditDigest {
            org_id: signed.due.org_id,
            digest_seq: 2,
            head_seq: 42,
            payload: signed.payload.clone(),
            signature: signed.signature,
        };
        let delivered = SignedDigest::of(&stored);
        let opened = delivered.open(&key.public_key()).unwrap();
        assert_eq!(opened.payload.head_seq, 42);
        assert_eq!(opened.head_hash, [0xab; 32]);
        assert_eq!(opened.previous, Some([1; 32]));
        let other = AuditSigningKey::generate().unwrap().public_key();
        assert!(delivered.open(&other).is_err());
        let mut forged = delivered.clone();
        forged.payload = forged.payload.replace("42", "41");
        assert!(forged.open(&key.public_key()).is_err());
    }

    #[test]
    fn a_filed_digest_is_written_once_where_its_name_says() {
        let dir = tempfile::tempdir().unwrap();
        let key = AuditSigningKey::parse(SEED).unwrap();
        let signed = key.sign(&due(None));
        let stored = StoredAuditDigest {
            org_id: signed.due.org_id,
            digest_seq: 1,
            head_seq: 42,
            payload: signed.payload,
            signature: signed.signature,
        };
        let path = file_digest(dir.path(), &stored).unwrap();
        assert_eq!(path, digest_file(dir.path(), stored.org_id, 42));
        let again = file_digest(dir.path(), &stored).unwrap();
        assert_eq!(path, again);
        assert!(read_digest(&path, &key.public_key()).is_ok());
        let entries = fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert_eq!(entries, 1, "no temporary file is left");
    }
}
