//! Phone numbers as they come in: in E.164 form **and** valid in their country's numbering plan
//! (libphonenumber's metadata). Stored payloads are read with the shape check alone
//! ([`E164Phone::parse`]); a number a person or a service submits goes through [`dialable_phone`].

use byoc_credential_types::{invalid_phone, E164Phone, InvalidField};

/// Parses a submitted phone number: E.164 form, and a number that exists in its country's numbering plan;
/// `field` names the request field in the error.
pub fn dialable_phone(field: &'static str, text: &str) -> Result<E164Phone, InvalidField> {
    let shaped = E164Phone::parse(field, text)?;
    let number = phonenumber::parse(None, shaped.as_str()).map_err(|_| invalid_phone(field))?;
    if !phonenumber::is_valid(&number) {
        return Err(invalid_phone(field));
    }
    E164Phone::parse(
        field,
        &number.format().mode(phonenumber::Mode::E164).to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dialable_number_has_the_shape_and_exists_in_its_plan() {
        assert!(dialable_phone("to", "+14155550123").is_ok());
        assert!(dialable_phone("to", "+447911123456").is_ok());
        for bad in ["+19999999999", "+1", "14155550123", "+0123456789"] {
            let error = dialable_phone("to", bad).expect_err(bad);
            assert_eq!(error.field, "to");
        }
    }
}
