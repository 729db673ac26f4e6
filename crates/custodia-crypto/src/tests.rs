//! Tests of the whole hierarchy through the public API, plus the few internals (hex of the keys)
//! needed to prove that nothing prints key material.

use crate::{CryptoError, DataKey, EpochKey, FieldContext, KdfParams, RootKey, SecretKey};

const CTX: FieldContext<'static> = FieldContext {
    subject: "subj-7f3a",
    category: "user.contact.email",
    record: "rec-0001",
};

fn code<T: std::fmt::Debug>(result: Result<T, CryptoError>) -> &'static str {
    result.expect_err("expected an error").code()
}

// --- fields -------------------------------------------------------------------------------------

#[test]
fn field_round_trips_for_all_sizes() {
    let key = DataKey::generate().unwrap();
    for len in [0, 1, 15, 16, 17, 100, 4096, 1 << 20] {
        let plaintext: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let sealed = key.seal(&CTX, &plaintext).unwrap();
        assert_eq!(sealed.len(), plaintext.len() + crate::field::FIELD_OVERHEAD);
        assert_eq!(
            sealed.capacity(),
            sealed.len(),
            "one allocation of the exact size"
        );
        assert_eq!(sealed[0], 1, "format version");
        assert_eq!(*key.open(&CTX, &sealed).unwrap(), plaintext);
    }
}

#[test]
fn field_round_trips_with_a_context_too_long_for_the_stack_buffer() {
    let key = DataKey::generate().unwrap();
    let long = "x".repeat(2000);
    let context = FieldContext::new(&long, "user.name", "r");
    let sealed = key.seal(&context, b"Ada").unwrap();
    assert_eq!(&**key.open(&context, &sealed).unwrap(), b"Ada");
    let other = FieldContext::new(&long[1..], "user.name", "r");
    assert_eq!(
        code(key.open(&other, &sealed)),
        "crypto.authentication_failed"
    );
}

#[test]
fn sealing_twice_gives_different_ciphertexts() {
    let key = DataKey::generate().unwrap();
    let a = key.seal(&CTX, b"same value").unwrap();
    let b = key.seal(&CTX, b"same value").unwrap();
    assert_ne!(a, b, "a fresh nonce per seal");
}

#[test]
fn ciphertext_moved_to_another_context_fails() {
    let key = DataKey::generate().unwrap();
    let sealed = key.seal(&CTX, b"ada@example.org").unwrap();
    let moved = [
        FieldContext {
            subject: "subj-0000",
            ..CTX
        },
        FieldContext {
            category: "user.contact.phone_number",
            ..CTX
        },
        FieldContext {
            record: "rec-0002",
            ..CTX
        },
    ];
    for context in moved {
        let err = key.open(&context, &sealed).unwrap_err();
        assert!(
            matches!(err, CryptoError::AuthenticationFailed),
            "{context:?}"
        );
        assert_eq!(err.code(), "crypto.authentication_failed");
    }
}

#[test]
fn context_encoding_is_unambiguous() {
    let key = DataKey::generate().unwrap();
    let sealed = key.seal(&FieldContext::new("ab", "c", "d"), b"v").unwrap();
    for context in [
        FieldContext::new("a", "bc", "d"),
        FieldContext::new("abc", "", "d"),
        FieldContext::new("ab", "", "cd"),
        FieldContext::new("", "abc", "d"),
    ] {
        assert_eq!(
            code(key.open(&context, &sealed)),
            "crypto.authentication_failed"
        );
    }
}

#[test]
fn every_flipped_bit_fails() {
    let key = DataKey::generate().unwrap();
    let sealed = key.seal(&CTX, b"0612345678").unwrap();
    for byte in 0..sealed.len() {
        for bit in 0..8 {
            let mut tampered = sealed.clone();
            tampered[byte] ^= 1 << bit;
            let expected = if byte == 0 {
                "crypto.malformed"
            } else {
                "crypto.authentication_failed"
            };
            assert_eq!(
                code(key.open(&CTX, &tampered)),
                expected,
                "byte {byte} bit {bit}"
            );
        }
    }
}

#[test]
fn truncated_input_is_malformed() {
    let key = DataKey::generate().unwrap();
    let sealed = key.seal(&CTX, b"").unwrap();
    assert_eq!(sealed.len(), 29);
    for len in 0..sealed.len() {
        let err = key.open(&CTX, &sealed[..len]).unwrap_err();
        assert!(matches!(err, CryptoError::Malformed { .. }), "length {len}");
        assert_eq!(err.code(), "crypto.malformed");
    }
    // Cutting a non-empty ciphertext short still looks well-formed, but cannot authenticate.
    let sealed = key.seal(&CTX, b"some value").unwrap();
    assert_eq!(
        code(key.open(&CTX, &sealed[..sealed.len() - 1])),
        "crypto.authentication_failed"
    );
}

#[test]
fn unknown_version_is_malformed() {
    let key = DataKey::generate().unwrap();
    let mut sealed = key.seal(&CTX, b"value").unwrap();
    sealed[0] = 2;
    let err = key.open(&CTX, &sealed).unwrap_err();
    assert_eq!(err.code(), "crypto.malformed");
    assert!(err.to_string().contains("version"), "{err}");
}

#[test]
fn another_data_key_fails() {
    let sealed = DataKey::generate().unwrap().seal(&CTX, b"value").unwrap();
    let other = DataKey::generate().unwrap();
    assert_eq!(
        code(other.open(&CTX, &sealed)),
        "crypto.authentication_failed"
    );
}

// --- root key and verifier ----------------------------------------------------------------------

#[test]
fn verifier_accepts_the_right_root_key_and_refuses_a_wrong_one() {
    let root = RootKey::generate().unwrap();
    let verifier = root.verifier().unwrap();
    assert_eq!(verifier.len(), 29);
    root.check(&verifier).unwrap();

    let wrong = RootKey::generate().unwrap();
    let err = wrong.check(&verifier).unwrap_err();
    assert!(matches!(err, CryptoError::WrongRootKey));
    assert_eq!(err.code(), "crypto.wrong_root_key");
}

#[test]
fn derived_keys_are_stable_per_name_and_unrelated_across_names_and_roots() {
    let root = RootKey::generate().unwrap();
    let sealed = root
        .derived_key("outbox")
        .unwrap()
        .seal(&CTX, b"notice")
        .unwrap();
    let again = root.derived_key("outbox").unwrap();
    assert_eq!(again.open(&CTX, &sealed).unwrap().as_slice(), b"notice");
    let other_name = root.derived_key("other").unwrap();
    assert_eq!(
        code(other_name.open(&CTX, &sealed)),
        "crypto.authentication_failed"
    );
    let other_root = RootKey::generate().unwrap().derived_key("outbox").unwrap();
    assert_eq!(
        code(other_root.open(&CTX, &sealed)),
        "crypto.authentication_failed"
    );
}

#[test]
fn a_corrupt_verifier_is_malformed_not_a_wrong_key() {
    let root = RootKey::generate().unwrap();
    assert_eq!(code(root.check(&[])), "crypto.malformed");
    assert_eq!(code(root.check(&[1; 10])), "crypto.malformed");
}

#[test]
fn a_verifier_cannot_be_replaced_by_another_sealed_object() {
    let root = RootKey::generate().unwrap();
    let wrapped_epoch = root.wrap_epoch(&EpochKey::generate(0).unwrap()).unwrap();
    assert_eq!(code(root.check(&wrapped_epoch)), "crypto.wrong_root_key");
}

#[test]
fn from_hex_accepts_either_case_and_surrounding_whitespace() {
    let root = RootKey::generate().unwrap();
    let hex = root.secret().to_hex();
    let verifier = root.verifier().unwrap();
    RootKey::from_hex(&hex).unwrap().check(&verifier).unwrap();
    RootKey::from_hex(&hex.to_uppercase())
        .unwrap()
        .check(&verifier)
        .unwrap();
    RootKey::from_hex(&format!("  {}\n", &*hex))
        .unwrap()
        .check(&verifier)
        .unwrap();
}

#[test]
fn from_hex_refuses_malformed_values_without_echoing_them() {
    let secretish = "ab".repeat(31) + "zz";
    for bad in [
        "",
        "abcd",
        &"a".repeat(63),
        &"a".repeat(65),
        &secretish,
        &"é".repeat(32),
    ] {
        let err = RootKey::from_hex(bad).unwrap_err();
        assert_eq!(err.code(), "crypto.key_encoding", "{bad:?}");
        let message = err.to_string();
        if bad.len() > 4 {
            assert!(!message.contains(bad.trim()), "{message}");
        }
    }
}

// --- epochs and data keys -----------------------------------------------------------------------

#[test]
fn the_whole_hierarchy_round_trips_through_bytes() {
    let root = RootKey::generate().unwrap();
    let epoch = EpochKey::generate(7).unwrap();
    let data = DataKey::generate().unwrap();
    let sealed = data.seal(&CTX, b"ada@example.org").unwrap();

    let wrapped_epoch = root.wrap_epoch(&epoch).unwrap();
    let wrapped_data = epoch.wrap_data_key(b"subj-7f3a", &data).unwrap();
    assert_eq!(wrapped_epoch.len(), 61);
    assert_eq!(wrapped_data.len(), 61);
    drop((epoch, data));

    let epoch = root.unwrap_epoch(7, &wrapped_epoch).unwrap();
    assert_eq!(epoch.id(), 7);
    let data = epoch.unwrap_data_key(b"subj-7f3a", &wrapped_data).unwrap();
    assert_eq!(&**data.open(&CTX, &sealed).unwrap(), b"ada@example.org");
}

#[test]
fn a_wrapped_epoch_only_unwraps_under_its_id_and_root() {
    let root = RootKey::generate().unwrap();
    let wrapped = root.wrap_epoch(&EpochKey::generate(1).unwrap()).unwrap();
    assert_eq!(
        code(root.unwrap_epoch(2, &wrapped)),
        "crypto.authentication_failed"
    );
    let other_root = RootKey::generate().unwrap();
    assert_eq!(
        code(other_root.unwrap_epoch(1, &wrapped)),
        "crypto.authentication_failed"
    );
    assert_eq!(
        code(root.unwrap_epoch(1, &wrapped[..40])),
        "crypto.malformed"
    );
}

#[test]
fn a_wrapped_data_key_under_another_owner_fails() {
    let epoch = EpochKey::generate(1).unwrap();
    let wrapped = epoch
        .wrap_data_key(b"subj-a", &DataKey::generate().unwrap())
        .unwrap();
    epoch.unwrap_data_key(b"subj-a", &wrapped).unwrap();
    for owner in [&b"subj-b"[..], b"subj-", b"subj-aa", b""] {
        assert_eq!(
            code(epoch.unwrap_data_key(owner, &wrapped)),
            "crypto.authentication_failed"
        );
    }
}

#[test]
fn a_wrapped_data_key_is_bound_to_its_epoch_id() {
    let epoch = EpochKey::generate(1).unwrap();
    let wrapped = epoch
        .wrap_data_key(b"subj-a", &DataKey::generate().unwrap())
        .unwrap();
    // Same key bytes, another id: only the bound id differs.
    let renumbered =
        EpochKey::from_secret(2, SecretKey::from_bytes(*epoch.secret().expose())).unwrap();
    assert_eq!(
        code(renumbered.unwrap_data_key(b"subj-a", &wrapped)),
        "crypto.authentication_failed"
    );
    let other_epoch = EpochKey::generate(1).unwrap();
    assert_eq!(
        code(other_epoch.unwrap_data_key(b"subj-a", &wrapped)),
        "crypto.authentication_failed"
    );
}

// --- key files ----------------------------------------------------------------------------------

#[cfg(unix)]
fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[cfg(unix)]
fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_generated_key_file_reads_back_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("root.key");
    let root = RootKey::generate_key_file(&path).unwrap();

    let content = std::fs::read_to_string(&path).unwrap();
    assert_eq!(content.len(), 65);
    assert!(content.ends_with('\n'));
    assert_eq!(content.trim_end(), &*root.secret().to_hex());

    let verifier = root.verifier().unwrap();
    RootKey::from_key_file(&path)
        .unwrap()
        .check(&verifier)
        .unwrap();
}

#[cfg(unix)]
#[test]
fn a_generated_key_file_has_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("root.key");
    RootKey::generate_key_file(&path).unwrap();
    assert_eq!(mode_of(&path), 0o600);
}

#[test]
fn generating_a_key_file_never_overwrites_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("root.key");
    let first = RootKey::generate_key_file(&path).unwrap();
    let err = RootKey::generate_key_file(&path).unwrap_err();
    assert!(matches!(err, CryptoError::KeyFileIo { .. }));
    assert_eq!(err.code(), "crypto.key_file");
    let verifier = first.verifier().unwrap();
    RootKey::from_key_file(&path)
        .unwrap()
        .check(&verifier)
        .unwrap();
}

#[cfg(unix)]
#[test]
fn a_key_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("root.key");
    let root = RootKey::generate_key_file(&path).unwrap();
    let hex = root.secret().to_hex();
    for mode in [0o644, 0o640, 0o604, 0o620, 0o601] {
        set_mode(&path, mode);
        let err = RootKey::from_key_file(&path).unwrap_err();
        assert!(
            matches!(err, CryptoError::KeyFilePermissions { mode: m, .. } if m == mode),
            "{err:?}"
        );
        assert_eq!(err.code(), "crypto.key_file");
        let message = err.to_string();
        assert!(message.contains(&format!("{mode:04o}")), "{message}");
        assert!(message.contains("chmod 600"), "{message}");
        assert!(!message.contains(&*hex), "{message}");
    }
    set_mode(&path, 0o400);
    RootKey::from_key_file(&path).unwrap();
}

#[test]
fn a_key_file_with_bad_content_is_refused_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    let long = "0".repeat(64) + &" ".repeat(100);
    let contents = [
        "",
        "\n",
        "not a key",
        &"a".repeat(63),
        &("a".repeat(64) + "b"),
        &("a".repeat(62) + "g1"),
        &("a".repeat(32) + " " + &"a".repeat(32)),
        &long,
    ];
    for (n, content) in contents.into_iter().enumerate() {
        let path = dir.path().join(format!("bad-{n}.key"));
        std::fs::write(&path, content).unwrap();
        #[cfg(unix)]
        set_mode(&path, 0o600);
        let err = RootKey::from_key_file(&path).unwrap_err();
        assert!(
            matches!(err, CryptoError::KeyFileContent { .. }),
            "{content:?}: {err:?}"
        );
        assert_eq!(err.code(), "crypto.key_file");
        let message = err.to_string();
        assert!(message.contains("bad-"), "names the file: {message}");
        if content.trim().len() > 4 {
            assert!(!message.contains(content.trim()), "{message}");
        }
    }
    let binary = dir.path().join("binary.key");
    std::fs::write(&binary, [0xff; 64]).unwrap();
    #[cfg(unix)]
    set_mode(&binary, 0o600);
    assert_eq!(code(RootKey::from_key_file(&binary)), "crypto.key_file");
}

#[test]
fn a_missing_key_file_or_a_directory_is_a_key_file_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = RootKey::from_key_file(dir.path().join("absent.key")).unwrap_err();
    assert!(matches!(missing, CryptoError::KeyFileIo { .. }));
    assert_eq!(missing.code(), "crypto.key_file");
    #[cfg(unix)]
    set_mode(dir.path(), 0o700);
    assert_eq!(code(RootKey::from_key_file(dir.path())), "crypto.key_file");
}

// --- passphrases --------------------------------------------------------------------------------

#[test]
fn passphrase_derivation_is_deterministic_and_salted() {
    let params = KdfParams::for_tests();
    let a = RootKey::from_passphrase(b"correct horse battery staple", &params).unwrap();
    let b = RootKey::from_passphrase(b"correct horse battery staple", &params).unwrap();
    assert_eq!(a.secret().expose(), b.secret().expose());
    a.check(&b.verifier().unwrap()).unwrap();

    let resalted = KdfParams {
        salt: [9; 16],
        ..params
    };
    let c = RootKey::from_passphrase(b"correct horse battery staple", &resalted).unwrap();
    assert_ne!(a.secret().expose(), c.secret().expose());
    assert_eq!(
        code(c.check(&a.verifier().unwrap())),
        "crypto.wrong_root_key"
    );

    let d = RootKey::from_passphrase(b"correct horse battery stapler", &params).unwrap();
    assert_ne!(a.secret().expose(), d.secret().expose());

    let costlier = KdfParams {
        t_cost: 2,
        ..params
    };
    let e = RootKey::from_passphrase(b"correct horse battery staple", &costlier).unwrap();
    assert_ne!(a.secret().expose(), e.secret().expose());
}

#[test]
fn passphrase_derivation_refuses_empty_passphrases_and_wild_parameters() {
    let params = KdfParams::for_tests();
    assert_eq!(code(RootKey::from_passphrase(b"", &params)), "crypto.kdf");
    for wild in [
        KdfParams {
            m_cost_kib: u32::MAX,
            ..params
        },
        KdfParams {
            t_cost: 1000,
            ..params
        },
        KdfParams {
            p_cost: 64,
            ..params
        },
        KdfParams {
            t_cost: 0,
            ..params
        },
        KdfParams {
            m_cost_kib: 1,
            ..params
        },
        KdfParams {
            p_cost: 0,
            ..params
        },
    ] {
        assert_eq!(
            code(RootKey::from_passphrase(b"pw", &wild)),
            "crypto.kdf",
            "{wild:?}"
        );
    }
}

#[test]
fn kdf_params_have_sensible_defaults_and_survive_serialisation() {
    let params = KdfParams::generate().unwrap();
    assert_eq!(
        (params.m_cost_kib, params.t_cost, params.p_cost),
        (64 * 1024, 3, 1)
    );
    assert_ne!(params.salt, KdfParams::generate().unwrap().salt);
    let json = serde_json::to_string(&params).unwrap();
    assert_eq!(serde_json::from_str::<KdfParams>(&json).unwrap(), params);
    assert!(
        serde_json::from_str::<KdfParams>(r#"{"salt":[1],"m_cost_kib":8,"t_cost":1,"p_cost":1}"#)
            .is_err()
    );
}

// --- lookup digests ----------------------------------------------------------------------------

#[test]
fn lookup_digests_are_deterministic_per_root_key_and_distinct_per_value() {
    let root = RootKey::generate().unwrap();
    let same_root = RootKey::from_hex(&root.secret().to_hex()).unwrap();
    let a = root.lookup_key().unwrap();
    let b = same_root.lookup_key().unwrap();
    assert_eq!(a.digest(b"acct-42"), b.digest(b"acct-42"));
    assert_ne!(a.digest(b"acct-42"), a.digest(b"acct-43"));
    assert_ne!(a.digest(b""), a.digest(b"\0"));

    let other = RootKey::generate().unwrap().lookup_key().unwrap();
    assert_ne!(a.digest(b"acct-42"), other.digest(b"acct-42"));
}

#[test]
fn the_lookup_key_is_not_the_root_key() {
    // A digest must not be an HMAC under the root key itself: the root key is kept for AES only.
    let root = RootKey::generate().unwrap();
    let direct = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, root.secret().expose());
    let direct = aws_lc_rs::hmac::sign(&direct, b"acct-42");
    assert_ne!(
        &root.lookup_key().unwrap().digest(b"acct-42")[..],
        direct.as_ref()
    );
    assert_eq!(
        format!("{:?}", root.lookup_key().unwrap()),
        "LookupKey(redacted)"
    );
}

#[test]
fn the_verification_key_is_independent_of_the_lookup_key() {
    let root = RootKey::generate().unwrap();
    let same_root = RootKey::from_hex(&root.secret().to_hex()).unwrap();
    let codes = root.verification_key().unwrap();
    assert_eq!(
        codes.digest(b"req_1:123456"),
        same_root
            .verification_key()
            .unwrap()
            .digest(b"req_1:123456")
    );
    assert_ne!(
        codes.digest(b"req_1:123456"),
        root.lookup_key().unwrap().digest(b"req_1:123456")
    );
}

// --- nothing prints a key -----------------------------------------------------------------------

/// Every rendering of `bytes` that a careless `Debug` could produce.
fn renderings(bytes: &[u8; 32]) -> Vec<String> {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        hex.clone(),
        hex.to_uppercase(),
        format!("{bytes:?}"),
        format!("{:?}", &bytes[..8])
            .trim_end_matches(']')
            .to_owned(),
    ]
}

fn assert_redacted(debug: &str, bytes: &[u8; 32]) {
    for rendering in renderings(bytes) {
        assert!(!debug.contains(&rendering), "{debug} contains {rendering}");
    }
    assert!(debug.contains("redacted"), "{debug}");
}

#[test]
fn debug_output_of_every_secret_type_hides_the_key() {
    let secret = SecretKey::generate().unwrap();
    assert_eq!(format!("{secret:?}"), "SecretKey(redacted)");
    assert_redacted(&format!("{secret:?}"), secret.expose());
    assert_redacted(&format!("{secret:#?}"), secret.expose());

    let root = RootKey::generate().unwrap();
    assert_eq!(format!("{root:?}"), "RootKey(redacted)");
    assert_redacted(&format!("{root:#?}"), root.secret().expose());

    let epoch = EpochKey::generate(3).unwrap();
    assert_eq!(format!("{epoch:?}"), "EpochKey { id: 3, key: redacted }");
    assert_redacted(&format!("{epoch:#?}"), epoch.secret().expose());

    let data = DataKey::generate().unwrap();
    assert_eq!(format!("{data:?}"), "DataKey(redacted)");
    assert_redacted(&format!("{data:#?}"), data.secret().expose());
}

#[test]
fn hex_round_trips_and_the_hex_form_matches_the_bytes() {
    let secret = SecretKey::generate().unwrap();
    let hex = secret.to_hex();
    let expected: String = secret.expose().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(*hex, expected);
    assert_eq!(SecretKey::from_hex(&hex).unwrap().expose(), secret.expose());
}

// --- error codes --------------------------------------------------------------------------------

#[test]
fn error_codes_are_stable() {
    let path = std::path::PathBuf::from("k");
    let cases = [
        (CryptoError::WrongRootKey, "crypto.wrong_root_key"),
        (
            CryptoError::AuthenticationFailed,
            "crypto.authentication_failed",
        ),
        (CryptoError::Malformed { reason: "r" }, "crypto.malformed"),
        (
            CryptoError::KeyFileIo {
                path: path.clone(),
                source: std::io::Error::other("x"),
            },
            "crypto.key_file",
        ),
        (
            CryptoError::KeyFilePermissions {
                path: path.clone(),
                mode: 0o644,
            },
            "crypto.key_file",
        ),
        (
            CryptoError::KeyFileContent { path, reason: "r" },
            "crypto.key_file",
        ),
        (
            CryptoError::KeyEncoding { reason: "r" },
            "crypto.key_encoding",
        ),
        (CryptoError::Kdf { reason: "r".into() }, "crypto.kdf"),
        (CryptoError::Rng, "crypto.rng"),
        (CryptoError::Backend, "crypto.backend"),
        (CryptoError::NoncesExhausted, "crypto.nonces_exhausted"),
        (CryptoError::Truncated, "crypto.truncated"),
        (CryptoError::StreamTooLong, "crypto.stream_too_long"),
        (
            CryptoError::Io {
                source: std::io::Error::other("x"),
            },
            "crypto.io",
        ),
    ];
    for (error, expected) in cases {
        assert_eq!(error.code(), expected, "{error:?}");
    }
}

#[test]
fn keys_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RootKey>();
    assert_send_sync::<EpochKey>();
    assert_send_sync::<DataKey>();
}

#[test]
fn field_nonces_never_repeat_within_a_loaded_key_and_differ_between_loadings() {
    let key = DataKey::generate().unwrap();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10_000 {
        let sealed = key.seal(&CTX, b"v").unwrap();
        assert!(seen.insert(sealed[1..13].to_vec()), "nonce repeated");
    }
    let other = DataKey::generate().unwrap();
    let first = other.seal(&CTX, b"v").unwrap();
    assert!(!seen.contains(&first[1..13]));
}

#[test]
fn an_exhausted_nonce_sequence_refuses_instead_of_wrapping() {
    let sequence = crate::envelope::NonceSequence::new().unwrap();
    sequence.force_next_for_tests(u32::MAX - 1);
    let last = sequence.next().unwrap();
    assert_eq!(&last[8..], &(u32::MAX - 1).to_be_bytes());
    let err = sequence.next().unwrap_err();
    assert_eq!(err.code(), "crypto.nonces_exhausted");
}
