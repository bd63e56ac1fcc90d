//! [`Plaintext`]: decrypted bytes that are zeroed on drop.

use std::fmt;

use zeroize::Zeroizing;

/// Decrypted bytes. Zeroed (whole allocation) when dropped; `Debug` prints only the type name.
pub struct Plaintext(Zeroizing<Vec<u8>>);

impl Plaintext {
    /// Takes ownership of a buffer that holds exactly the plaintext.
    pub(crate) fn new(bytes: Zeroizing<Vec<u8>>) -> Plaintext {
        Plaintext(bytes)
    }

    /// The decrypted bytes. Keep the borrow short and do not copy them into types that are not zeroed.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Plaintext")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_bytes() {
        let plaintext = Plaintext::new(Zeroizing::new(b"secret".to_vec()));
        assert_eq!(format!("{plaintext:?}"), "Plaintext");
        assert_eq!(plaintext.expose_secret(), b"secret");
    }
}
