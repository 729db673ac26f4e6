//! Arbitrary bytes and arbitrary TOML never make the parser, checker, renderer or differ panic.
//! Bounded property tests: they run in CI on every build.

use custodia_policy::{CheckedPolicy, Source};
use proptest::prelude::*;

use crate::support::fixture;

fn run_everything(text: &str) {
    if let Ok(policy) = CheckedPolicy::from_source(Source::new("fuzz.toml", text)) {
        let _ = custodia_policy::render::markdown(&policy.policy);
        let _ = custodia_policy::render::html(&policy.policy);
        let _ = custodia_policy::diff::diff(&policy.policy, &policy.policy);
    }
}

/// TOML-ish text built from the tokens the policy language uses, so that mutations get past the
/// parser often enough to exercise the checker.
fn toml_like() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("version = \"1\"\n".to_owned()),
        Just("effective = \"2025-01-01\"\n".to_owned()),
        Just("laws = [\"PIPL\", \"GDPR\", \"CCPA\", \"COPPA\"]\n".to_owned()),
        Just("data_location = \"CN\"\n".to_owned()),
        Just(
            "[controller]\nname = \"x\"\nproduct = \"y\"\ncontact = { email = \"e\" }\n".to_owned()
        ),
        Just("[[category]]\n".to_owned()),
        Just("[[purpose]]\n".to_owned()),
        Just("[[retention]]\n".to_owned()),
        Just("[[processor]]\n".to_owned()),
        Just("[[transfer]]\n".to_owned()),
        Just(
            "[rights]\noffered = [\"access\"]\nrespond_within = { working_days = 15 }\n".to_owned()
        ),
        Just("[minors]\n".to_owned()),
        "key = \"[a-z._]{0,12}\"\n",
        "categories = \\[(\"[a-z._]{1,10}\", ?){0,3}\\]\n",
        "purposes = \\[(\"[a-z_]{1,8}\", ?){0,2}\\]\n",
        "keep = \"[0-9]{1,6}(s|min|h|d|w|mo|y|x)\"\n",
        "after = \"(collected|processed|account_closed|last_active|consent_withdrawn|never)\"\n",
        "basis = \"(consent|contract|legal_obligation|nope)\"\n",
        "(sensitive|never_share|extension|optional|separate_consent|statutory|network_log) = (true|false)\n",
        "(guardian_consent_below|refuse_below) = [0-9]{1,3}\n",
        "(location|destination|name|mechanism) = \"[A-Za-z_ ]{0,10}\"\n",
        "[\\PC]{0,12}",
    ];
    prop::collection::vec(token, 0..40).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let text = String::from_utf8_lossy(&bytes);
        run_everything(&text);
    }

    #[test]
    fn arbitrary_toml_never_panics(text in toml_like()) {
        run_everything(&text);
    }

    #[test]
    fn mutations_of_a_valid_policy_never_panic(
        cut in 0usize..4096,
        insert in "[\\PC\\n\\[\\]=\"]{0,16}",
        drop_len in 0usize..64,
    ) {
        let base = std::fs::read_to_string(fixture("clean.toml")).unwrap();
        let mut chars: Vec<char> = base.chars().collect();
        let at = cut % (chars.len() + 1);
        let end = (at + drop_len).min(chars.len());
        chars.splice(at..end, insert.chars());
        let text: String = chars.into_iter().collect();
        run_everything(&text);
    }
}
