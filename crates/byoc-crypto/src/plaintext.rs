//! [`Plaintext`]: decrypted bytes that are zeroed on drop.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Decrypted bytes. The whole allocation is zeroed when dropped; `Debug` prints only the type name.
pub struct Plaintext(Vec<u8>);

impl Plaintext {
    /// Takes ownership of a buffer to decrypt in place; whatever it holds is zeroed on drop, also when
    /// decryption fails half-way.
    pub(crate) fn new(buffer: Vec<u8>) -> Plaintext {
        Plaintext(buffer)
    }

    /// The buffer, for decrypting in place and trimming the tag.
    pub(crate) fn buffer_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }

    /// The decrypted bytes. Keep the borrow short and do not copy them into types that are not zeroed.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Plaintext {
    fn drop(&mut self) {
        // zeroize's slice impls clear in bulk; its `Vec` impl goes byte by byte, which would dominate the
        // cost of opening a small envelope. Spare capacity holds the trimmed-off tag.
        self.0.as_mut_slice().zeroize();
        self.0.spare_capacity_mut().zeroize();
    }
}

impl ZeroizeOnDrop for Plaintext {}

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
        let plaintext = Plaintext::new(b"secret".to_vec());
        assert_eq!(format!("{plaintext:?}"), "Plaintext");
        assert_eq!(plaintext.expose_secret(), b"secret");
    }
}
