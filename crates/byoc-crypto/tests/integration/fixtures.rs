//! Keys, keyrings and contexts shared by the tests.

use byoc_crypto::{EnvelopeContext, KeyVersion, Keyring, MasterKey};
use uuid::Uuid;

/// A key version from a literal.
pub fn version(number: u32) -> KeyVersion {
    KeyVersion::new(number).expect("test versions are non-zero")
}

/// A fixed master key for `version`, different per version.
pub fn master_key(version_number: u32) -> MasterKey {
    MasterKey::from_bytes([u8::try_from(version_number).expect("small test version"); 32])
}

/// A keyring with keys for `versions` (fixed keys) and `active` as the active version.
pub fn keyring(versions: &[u32], active: u32) -> Keyring {
    Keyring::new(
        versions
            .iter()
            .map(|&number| (version(number), master_key(number)))
            .collect(),
        version(active),
    )
    .expect("valid test keyring")
}

/// The context most tests seal under.
pub fn context() -> EnvelopeContext<'static> {
    EnvelopeContext::new(
        Uuid::from_u128(0x1111_2222_3333_4444_5555_6666_7777_8888),
        "twilio",
        Uuid::from_u128(0x9999_aaaa_bbbb_cccc_dddd_eeee_ffff_0000),
    )
}
