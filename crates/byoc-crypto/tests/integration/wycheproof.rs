//! Wycheproof AES-GCM vectors (256-bit keys, 96-bit IVs) through ring's AES_256_GCM, the AEAD both
//! envelope layers use.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use serde::Deserialize;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/data/wycheproof/wycheproof_aes_gcm_test.json"
);

#[derive(Deserialize)]
struct TestFile {
    #[serde(rename = "testGroups")]
    test_groups: Vec<TestGroup>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TestGroup {
    key_size: usize,
    iv_size: usize,
    tag_size: usize,
    tests: Vec<TestCase>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TestCase {
    tc_id: u32,
    key: String,
    iv: String,
    aad: String,
    msg: String,
    ct: String,
    tag: String,
    result: Verdict,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Valid,
    Invalid,
    Acceptable,
}

fn decode(field: &str, tc_id: u32, text: &str) -> Vec<u8> {
    hex::decode(text).unwrap_or_else(|_| panic!("tcId {tc_id}: {field} is not hex"))
}

#[test]
fn every_256_bit_key_96_bit_iv_case_matches() {
    let text =
        std::fs::read_to_string(VECTORS).unwrap_or_else(|error| panic!("{VECTORS}: {error}"));
    let file: TestFile = serde_json::from_str(&text).expect("Wycheproof JSON parses");
    let cases: Vec<&TestCase> = file
        .test_groups
        .iter()
        .filter(|group| group.key_size == 256 && group.iv_size == 96)
        .inspect(|group| assert_eq!(group.tag_size, 128, "ring's AES-GCM tag is 128 bits"))
        .flat_map(|group| &group.tests)
        .collect();

    let (mut valid, mut invalid) = (0, 0);
    for case in &cases {
        let tc_id = case.tc_id;
        let key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &decode("key", tc_id, &case.key)).expect("256-bit key"),
        );
        let nonce: [u8; 12] = decode("iv", tc_id, &case.iv).try_into().expect("96-bit IV");
        let aad = decode("aad", tc_id, &case.aad);
        let msg = decode("msg", tc_id, &case.msg);
        let mut sealed = decode("ct", tc_id, &case.ct);
        sealed.extend_from_slice(&decode("tag", tc_id, &case.tag));

        let mut buffer = sealed.clone();
        let opened = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut buffer,
            )
            .map(|plaintext| plaintext.to_vec());
        match case.result {
            Verdict::Valid => {
                assert_eq!(opened.as_deref(), Ok(msg.as_slice()), "tcId {tc_id}: open");
                let mut resealed = msg.clone();
                key.seal_in_place_append_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(&aad),
                    &mut resealed,
                )
                .expect("seal");
                assert_eq!(resealed, sealed, "tcId {tc_id}: seal");
                valid += 1;
            }
            Verdict::Invalid => {
                assert!(opened.is_err(), "tcId {tc_id}: invalid case opened");
                invalid += 1;
            }
            Verdict::Acceptable => panic!("tcId {tc_id}: no acceptable cases expected"),
        }
    }
    assert_eq!(cases.len(), 66, "256-bit key / 96-bit IV cases in the file");
    assert_eq!(valid + invalid, 66);
    assert_eq!((valid, invalid), (39, 27), "valid and invalid cases");
}
