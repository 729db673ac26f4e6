//! The SQLite backend's integration tests: the shared conformance suite, then what only this
//! backend promises (file layout and key custody tiers, pragmas, refusing files it must not
//! touch, overwriting deleted bytes, surviving a crash between its files' commits).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::sync::Arc;

use custodia_audit::{AuditEvent, EventKind};
use custodia_core::{
    ApiKeyId, ConsentId, DisclosureId, HoldId, KeyId, MediaId, NotificationId, RecordId, RequestId,
    SubjectId, Timestamp,
};
use custodia_store::conformance::{Harness, Reopen};
use custodia_store::{
    ApiKeyRow, ConsentEventKind, ConsentRow, DataKeyKind, DataKeyRow, DataStore, DisclosureRow,
    EpochRow, HoldRow, KeyStore, KeyStoreMeta, MediaRow, MediaState, Mutation, NotificationRow,
    PolicyVersionRow, RecordRow, RequestFilter, RequestRow, SCHEMA_VERSION, StoreError, SubjectRow,
    WriteBatch,
};
use custodia_store_sqlite::{DATA_FILE, KEYRING_FILE, KEYS_FILE, SqliteStores};
use tempfile::TempDir;

/// Stores in a fresh temporary directory, which lives as long as the harness's reopen closure.
fn fresh() -> Harness {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let (data, keys) = SqliteStores::open(dir.path()).unwrap();
    let reopen: Reopen = Box::new(move || {
        let (data, keys) = SqliteStores::open_existing(dir.path()).unwrap();
        (Arc::new(data), Arc::new(keys))
    });
    Harness {
        data: Arc::new(data),
        keys: Arc::new(keys),
        reopen,
    }
}

custodia_store::conformance_tests!(fresh);

/// The schema version of `keys.db` and `keyring.db`, which have had one migration so far.
const KEYS_VERSION: u32 = 1;

fn at(millis: i64) -> Timestamp {
    Timestamp::from_millis(millis)
}

fn subject(profile: Vec<u8>) -> SubjectRow {
    SubjectRow {
        id: SubjectId::random().unwrap(),
        lookup: [3; 32],
        profile,
        key: KeyId::random().unwrap(),
        created_at: at(1),
        last_active_at: at(1),
        closed_at: None,
        erased_at: None,
    }
}

fn record(subject: SubjectId, ciphertext: Vec<u8>) -> RecordRow {
    RecordRow {
        id: RecordId::random().unwrap(),
        subject,
        category: "user.contact.email".to_owned(),
        purpose: "account".to_owned(),
        key: KeyId::random().unwrap(),
        ciphertext,
        collected_at: at(1),
        rule: "rule-email".to_owned(),
        expires_at: None,
        statutory: false,
    }
}

fn initialise(keys: &dyn KeyStore) {
    let meta = KeyStoreMeta {
        verifier: vec![1; 32],
        kdf: None,
        created_at: at(1),
    };
    let epoch = EpochRow {
        id: 1,
        wrapped: vec![2; 60],
        created_at: at(1),
    };
    keys.initialise(&meta, &epoch).unwrap();
}

fn data_key(owner: SubjectId, wrapped: Vec<u8>) -> DataKeyRow {
    DataKeyRow {
        id: KeyId::random().unwrap(),
        owner,
        kind: DataKeyKind::Subject,
        epoch: 1,
        wrapped,
        created_at: at(1),
    }
}

/// A byte pattern that cannot occur by chance in a SQLite file.
fn marker(tag: &[u8]) -> Vec<u8> {
    tag.iter().copied().cycle().take(96).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every byte of a database file and its WAL, if one is left.
fn file_bytes(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    let wal = path.with_extension("db-wal");
    if wal.exists() {
        bytes.extend(std::fs::read(wal).unwrap());
    }
    bytes
}

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

fn tables(path: &Path) -> Vec<String> {
    let conn = raw(path);
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap();
    stmt.query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn new_dir() -> TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn pragmas_are_in_force_on_every_file() {
    let dir = new_dir();
    let (data, keys) = SqliteStores::open(dir.path()).unwrap();
    for settings in [
        data.settings().unwrap(),
        keys.settings().unwrap(),
        keys.keyring_settings().unwrap(),
    ] {
        assert_eq!(settings.journal_mode, "wal");
        assert_eq!(settings.synchronous, 2, "synchronous must be FULL");
        assert!(settings.foreign_keys);
        assert!(settings.secure_delete);
        assert!(
            settings.busy_timeout_ms >= 1_000,
            "{}",
            settings.busy_timeout_ms
        );
    }
    // Each file counts its own versions: the key store's schema has not changed since 1.
    assert_eq!(data.settings().unwrap().schema_version, SCHEMA_VERSION);
    assert_eq!(keys.settings().unwrap().schema_version, KEYS_VERSION);
    assert_eq!(
        keys.keyring_settings().unwrap().schema_version,
        KEYS_VERSION
    );
}

#[test]
fn data_and_keys_live_in_separate_files() {
    let dir = new_dir();
    let wrapped = marker(b"WRAPPED-KEY:");
    let profile = marker(b"SEALED-PROFILE:");
    {
        let (data, keys) = SqliteStores::open(dir.path()).unwrap();
        initialise(&keys);
        let subject = subject(profile.clone());
        keys.insert_data_keys(&[data_key(subject.id, wrapped.clone())])
            .unwrap();
        data.commit(WriteBatch {
            mutations: vec![Mutation::InsertSubject(subject)],
            audit: vec![AuditEvent::new(EventKind::SubjectCreated, 1)],
        })
        .unwrap();
    }
    let data_path = dir.path().join(DATA_FILE);
    let keys_path = dir.path().join(KEYS_FILE);
    assert_eq!(
        tables(&data_path),
        [
            "api_keys",
            "audit",
            "consent_events",
            "disclosures",
            "holds",
            "media",
            "notifications",
            "policy_versions",
            "records",
            "requests",
            "subjects"
        ]
    );
    assert_eq!(tables(&keys_path), ["data_keys", "meta"]);
    let data_bytes = file_bytes(&data_path);
    let keys_bytes = file_bytes(&keys_path);
    assert!(contains(&data_bytes, &profile));
    assert!(
        !contains(&data_bytes, &wrapped),
        "key material must stay out of data.db"
    );
    assert!(contains(&keys_bytes, &wrapped));
    assert!(!contains(&keys_bytes, &profile));
}

#[test]
fn destroyed_keys_and_deleted_records_leave_no_bytes_behind() {
    let dir = new_dir();
    let wrapped = marker(b"DOOMED-KEY:");
    let ciphertext = marker(b"DOOMED-CIPHERTEXT:");
    let (data, keys) = SqliteStores::open(dir.path()).unwrap();
    initialise(&keys);
    let owner = subject(vec![0; 16]);
    let key = data_key(owner.id, wrapped.clone());
    let doomed = record(owner.id, ciphertext.clone());
    keys.insert_data_keys(std::slice::from_ref(&key)).unwrap();
    data.commit(WriteBatch {
        mutations: vec![
            Mutation::InsertSubject(owner.clone()),
            Mutation::InsertRecord(doomed.clone()),
        ],
        audit: vec![],
    })
    .unwrap();
    let keys_path = dir.path().join(KEYS_FILE);
    assert!(
        contains(&file_bytes(&keys_path), &wrapped),
        "the test must see the key first"
    );

    assert_eq!(keys.destroy_data_keys(&[key.id]).unwrap(), 1);
    // Checked with the store still open: the WAL was emptied by the destruction itself.
    assert!(
        !contains(&file_bytes(&keys_path), &wrapped),
        "key bytes survived in keys.db"
    );

    data.commit(WriteBatch {
        mutations: vec![Mutation::DeleteRecord(doomed.id)],
        audit: vec![],
    })
    .unwrap();
    drop(data);
    drop(keys);
    assert!(
        !contains(&file_bytes(&dir.path().join(DATA_FILE)), &ciphertext),
        "ciphertext survived in data.db"
    );
}

#[test]
fn a_newer_schema_is_refused_and_left_untouched() {
    // One past what this build has for each file: for the key store files that is a version
    // the data store knows (2), which must not make a newer key store look readable.
    for (file, supported) in [
        (DATA_FILE, SCHEMA_VERSION),
        (KEYS_FILE, KEYS_VERSION),
        (KEYRING_FILE, KEYS_VERSION),
    ] {
        let dir = new_dir();
        drop(SqliteStores::open(dir.path()).unwrap());
        let path = dir.path().join(file);
        let newer = supported + 1;
        raw(&path)
            .pragma_update(None, "user_version", newer)
            .unwrap();
        let before = std::fs::read(&path).unwrap();

        let err = SqliteStores::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found, supported: s }
                if found == newer && s == supported),
            "{file}: {err:?}"
        );
        assert_eq!(err.code(), "store.schema_too_new");
        let err = SqliteStores::open_existing(dir.path()).unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { .. }),
            "{file}: {err:?}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before, "{file} was modified");
    }
}

/// A `data.db` left by the build before the consent ledger (schema version 1) is brought to the
/// current version when the directory is next opened, keeping what it held.
#[test]
fn a_version_1_data_store_is_migrated_on_open() {
    let dir = new_dir();
    drop(SqliteStores::open(dir.path()).unwrap());
    let data_path = dir.path().join(DATA_FILE);
    remove_db(&data_path);
    let owner = subject(vec![7; 16]);
    {
        // What that build's migration did: migration 001 and the version stamp, in one
        // transaction, on a WAL file.
        let mut conn = raw(&data_path);
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        let tx = conn.transaction().unwrap();
        tx.execute_batch(include_str!("../../migrations/data/001_initial.sql"))
            .unwrap();
        tx.pragma_update(None, "user_version", 1).unwrap();
        tx.execute(
            "INSERT INTO subjects (id, lookup, profile, key, created_at, last_active_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![
                owner.id.as_bytes(),
                owner.lookup,
                owner.profile,
                owner.key.as_bytes(),
                owner.created_at.as_millis(),
                owner.last_active_at.as_millis(),
            ],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    assert_eq!(tables(&data_path), ["audit", "records", "subjects"]);

    let (data, _keys) = SqliteStores::open_existing(dir.path()).unwrap();
    assert_eq!(data.settings().unwrap().schema_version, SCHEMA_VERSION);
    assert_eq!(data.subject(owner.id).unwrap(), Some(owner.clone()));
    let given = ConsentRow {
        id: ConsentId::random().unwrap(),
        subject: owner.id,
        purposes: vec!["marketing".to_owned()],
        kind: ConsentEventKind::Given,
        guardian: None,
        guardian_verified: false,
        policy_version: "v1".to_owned(),
        method: "app_dialog".to_owned(),
        at: at(2),
        expires_at: None,
    };
    data.commit(WriteBatch {
        mutations: vec![Mutation::InsertConsent(given.clone())],
        audit: vec![AuditEvent::new(EventKind::ConsentRecorded, 2)],
    })
    .unwrap();
    drop(data);

    // Opened again, it is current and migrates nothing more.
    let (data, _keys) = SqliteStores::open_existing(dir.path()).unwrap();
    assert_eq!(data.consents_of(owner.id).unwrap(), [given]);
    assert_eq!(data.settings().unwrap().schema_version, SCHEMA_VERSION);
}

/// A `data.db` left by the build before legal holds (schema version 2) is brought to the
/// current version when the directory is next opened, keeping what it held.
#[test]
fn a_version_2_data_store_is_migrated_on_open() {
    let dir = new_dir();
    drop(SqliteStores::open(dir.path()).unwrap());
    let data_path = dir.path().join(DATA_FILE);
    remove_db(&data_path);
    let owner = subject(vec![7; 16]);
    let record = RecordId::random().unwrap();
    {
        // What that build's migrations did: 001 and 002 and the version stamp, in one
        // transaction, on a WAL file.
        let mut conn = raw(&data_path);
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        let tx = conn.transaction().unwrap();
        tx.execute_batch(include_str!("../../migrations/data/001_initial.sql"))
            .unwrap();
        tx.execute_batch(include_str!(
            "../../migrations/data/002_consent_keys_policies.sql"
        ))
        .unwrap();
        tx.pragma_update(None, "user_version", 2).unwrap();
        tx.execute(
            "INSERT INTO subjects (id, lookup, profile, key, created_at, last_active_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![
                owner.id.as_bytes(),
                owner.lookup,
                owner.profile,
                owner.key.as_bytes(),
                owner.created_at.as_millis(),
                owner.last_active_at.as_millis(),
            ],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO records (id, subject, category, purpose, key, collected_at, rule, \
             expires_at, statutory, ciphertext) VALUES (?1, ?2, 'user.contact.email', \
             'account', ?3, 1, 'email', 10, 0, x'00')",
            rusqlite::params![record.as_bytes(), owner.id.as_bytes(), owner.key.as_bytes()],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    assert!(!tables(&data_path).contains(&"holds".to_owned()));

    let (data, _keys) = SqliteStores::open_existing(dir.path()).unwrap();
    assert_eq!(data.settings().unwrap().schema_version, SCHEMA_VERSION);
    assert_eq!(data.subject(owner.id).unwrap(), Some(owner.clone()));
    let hold = HoldRow {
        id: HoldId::random().unwrap(),
        subject: Some(owner.id),
        category: None,
        reason: "litigation".to_owned(),
        created_at: at(2),
        ends_at: None,
        released_at: None,
    };
    data.commit(WriteBatch {
        mutations: vec![Mutation::InsertHold(hold.clone())],
        audit: vec![AuditEvent::new(EventKind::HoldPlaced, 2)],
    })
    .unwrap();
    assert!(data.sweep_expired(at(20), 10, "t").unwrap().is_empty());
    drop(data);

    // Opened again, it is current and migrates nothing more.
    let (data, _keys) = SqliteStores::open_existing(dir.path()).unwrap();
    assert_eq!(data.holds().unwrap(), [hold]);
    assert_eq!(data.settings().unwrap().schema_version, SCHEMA_VERSION);
    assert!(data.record(record).unwrap().is_some(), "the hold keeps it");
}

/// A `data.db` left by the build before media objects (schema version 3) is brought to the
/// current version when the directory is next opened, keeping what it held; a subject of it can
/// then hold media objects, which its holds keep like its records.
#[test]
fn a_version_3_data_store_is_migrated_on_open() {
    let dir = new_dir();
    drop(SqliteStores::open(dir.path()).unwrap());
    let data_path = dir.path().join(DATA_FILE);
    remove_db(&data_path);
    let owner = subject(vec![7; 16]);
    let hold = HoldId::random().unwrap();
    {
        // What that build's migrations did: 001 to 003 and the version stamp, in one
        // transaction, on a WAL file.
        let mut conn = raw(&data_path);
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        let tx = conn.transaction().unwrap();
        tx.execute_batch(include_str!("../../migrations/data/001_initial.sql"))
            .unwrap();
        tx.execute_batch(include_str!(
            "../../migrations/data/002_consent_keys_policies.sql"
        ))
        .unwrap();
        tx.execute_batch(include_str!("../../migrations/data/003_holds.sql"))
            .unwrap();
        tx.pragma_update(None, "user_version", 3).unwrap();
        tx.execute(
            "INSERT INTO subjects (id, lookup, profile, key, created_at, last_active_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![
                owner.id.as_bytes(),
                owner.lookup,
                owner.profile,
                owner.key.as_bytes(),
                owner.created_at.as_millis(),
                owner.last_active_at.as_millis(),
            ],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO holds (id, subject, reason, created_at) VALUES (?1, ?2, 'case', 1)",
            rusqlite::params![hold.as_bytes(), owner.id.as_bytes()],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    assert!(!tables(&data_path).contains(&"media".to_owned()));

    let (data, _keys) = SqliteStores::open_existing(dir.path()).unwrap();
    assert_eq!(data.settings().unwrap().schema_version, SCHEMA_VERSION);
    assert_eq!(data.subject(owner.id).unwrap(), Some(owner.clone()));
    assert_eq!(data.holds().unwrap().len(), 1);
    let media = MediaRow {
        id: MediaId::random().unwrap(),
        subject: owner.id,
        category: "user.media.photo".to_owned(),
        purpose: "account".to_owned(),
        key: owner.key,
        wrapped_key: vec![9; 40],
        location: "objects/a".to_owned(),
        content_type: "image/jpeg".to_owned(),
        size: 10,
        stored_size: 50,
        state: MediaState::Stored,
        parent: None,
        created_at: at(2),
        processed_at: None,
        rule: "photo".to_owned(),
        expires_at: Some(at(10)),
        statutory: false,
        lease: None,
        digest: Vec::new(),
    };
    data.commit(WriteBatch {
        mutations: vec![Mutation::InsertMedia(media.clone())],
        audit: vec![],
    })
    .unwrap();
    assert!(
        data.claim_expired_media(at(20), 10, "t")
            .unwrap()
            .is_empty(),
        "the hold keeps it"
    );
    drop(data);

    // Opened again, it is current and migrates nothing more.
    let (data, _keys) = SqliteStores::open_existing(dir.path()).unwrap();
    assert_eq!(data.settings().unwrap().schema_version, SCHEMA_VERSION);
    assert_eq!(data.media(media.id).unwrap(), Some(media));
}

fn request(subject: SubjectId) -> RequestRow {
    RequestRow {
        id: RequestId::random().unwrap(),
        subject,
        kind: "erasure".to_owned(),
        state: "received".to_owned(),
        law: "PIPL".to_owned(),
        received_at: at(2),
        acknowledge_by: None,
        due_at: at(1_000),
        original_due_at: None,
        details: vec![0x5E; 8],
        flags: vec!["flag".to_owned()],
        verification: None,
        updated_at: at(2),
        closed_at: None,
        version: 0,
    }
}

fn disclosure(subject: SubjectId) -> DisclosureRow {
    DisclosureRow {
        id: DisclosureId::random().unwrap(),
        subject,
        recipient: "crm".to_owned(),
        recipient_kind: "processor".to_owned(),
        categories: vec!["user.contact.email".to_owned()],
        purpose: "account".to_owned(),
        at: at(3),
        reference: None,
        country: None,
        mechanism: None,
    }
}

fn notification(request: RequestId, subject: SubjectId) -> NotificationRow {
    NotificationRow {
        id: NotificationId::random().unwrap(),
        kind: "erasure_notice".to_owned(),
        request: Some(request),
        subject,
        recipient: "crm".to_owned(),
        payload: vec![0x9A; 8],
        state: "pending".to_owned(),
        attempts: 0,
        next_attempt_at: Some(at(4)),
        last_error: None,
        created_at: at(4),
        delivered_at: None,
        settled_at: None,
        reason: None,
    }
}

/// A `data.db` left by the build before data-subject requests (schema version 4) is brought to
/// the current version when the directory is next opened, keeping what it held; a subject of it
/// can then have requests, disclosures and notifications, which outlive its row.
#[test]
fn a_version_4_data_store_is_migrated_on_open() {
    let dir = new_dir();
    drop(SqliteStores::open(dir.path()).unwrap());
    let data_path = dir.path().join(DATA_FILE);
    remove_db(&data_path);
    let owner = subject(vec![7; 16]);
    let media = MediaId::random().unwrap();
    {
        // What that build's migrations did: 001 to 004 and the version stamp, in one
        // transaction, on a WAL file.
        let mut conn = raw(&data_path);
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        let tx = conn.transaction().unwrap();
        for sql in [
            include_str!("../../migrations/data/001_initial.sql"),
            include_str!("../../migrations/data/002_consent_keys_policies.sql"),
            include_str!("../../migrations/data/003_holds.sql"),
            include_str!("../../migrations/data/004_media.sql"),
        ] {
            tx.execute_batch(sql).unwrap();
        }
        tx.pragma_update(None, "user_version", 4).unwrap();
        tx.execute(
            "INSERT INTO subjects (id, lookup, profile, key, created_at, last_active_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![
                owner.id.as_bytes(),
                owner.lookup,
                owner.profile,
                owner.key.as_bytes(),
                owner.created_at.as_millis(),
                owner.last_active_at.as_millis(),
            ],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO media (id, subject, category, purpose, key, wrapped_key, location, \
             content_type, size, stored_size, state, created_at, rule, statutory) \
             VALUES (?1, ?2, 'user.media.photo', 'account', ?3, x'09', 'objects/a', \
             'image/jpeg', 1, 1, 'stored', 1, 'photo', 0)",
            rusqlite::params![media.as_bytes(), owner.id.as_bytes(), owner.key.as_bytes()],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    assert!(!tables(&data_path).contains(&"requests".to_owned()));

    let (data, _keys) = SqliteStores::open_existing(dir.path()).unwrap();
    assert_eq!(data.settings().unwrap().schema_version, SCHEMA_VERSION);
    assert_eq!(data.subject(owner.id).unwrap(), Some(owner.clone()));
    assert!(data.media(media).unwrap().is_some());
    let request = request(owner.id);
    let disclosure = disclosure(owner.id);
    let notice = notification(request.id, owner.id);
    data.commit(WriteBatch {
        mutations: vec![
            Mutation::InsertRequest(request.clone()),
            Mutation::InsertDisclosure(disclosure.clone()),
            Mutation::InsertNotification(notice.clone()),
        ],
        audit: vec![],
    })
    .unwrap();
    data.commit(WriteBatch {
        mutations: vec![
            Mutation::DeleteMedia(media),
            Mutation::DeleteSubject(owner.id),
        ],
        audit: vec![],
    })
    .unwrap();
    drop(data);

    // Opened again, it is current, migrates nothing more, and kept them past the subject.
    let (data, _keys) = SqliteStores::open_existing(dir.path()).unwrap();
    assert_eq!(data.settings().unwrap().schema_version, SCHEMA_VERSION);
    assert_eq!(data.subject(owner.id).unwrap(), None);
    assert_eq!(
        data.requests(&RequestFilter::default()).unwrap(),
        vec![request.clone()]
    );
    assert_eq!(data.disclosures_of(owner.id).unwrap(), [disclosure]);
    assert_eq!(data.notifications_of(request.id).unwrap(), [notice]);
}

#[test]
fn the_consent_ledger_disclosures_and_published_policies_refuse_updates_and_deletes() {
    let dir = new_dir();
    let (data, _keys) = SqliteStores::open(dir.path()).unwrap();
    let owner = subject(vec![1]);
    let event = ConsentRow {
        id: ConsentId::random().unwrap(),
        subject: owner.id,
        purposes: vec![],
        kind: ConsentEventKind::Restricted,
        guardian: None,
        guardian_verified: false,
        policy_version: "v1".to_owned(),
        method: "web_form".to_owned(),
        at: at(1),
        expires_at: None,
    };
    let policy = PolicyVersionRow {
        version: "v1".to_owned(),
        source: "version = \"v1\"\n".to_owned(),
        published_at: at(1),
        fresh_consent_purposes: vec![],
    };
    let disclosure = disclosure(owner.id);
    data.commit(WriteBatch {
        mutations: vec![
            Mutation::InsertSubject(owner),
            Mutation::InsertConsent(event),
            Mutation::InsertPolicyVersion(policy),
            Mutation::InsertDisclosure(disclosure),
        ],
        audit: vec![],
    })
    .unwrap();
    let conn = raw(&dir.path().join(DATA_FILE));
    for sql in [
        "UPDATE consent_events SET kind = 'given'",
        "DELETE FROM consent_events",
        "UPDATE policy_versions SET source = ''",
        "DELETE FROM policy_versions",
        "UPDATE disclosures SET recipient = ''",
        "DELETE FROM disclosures",
    ] {
        let err = conn.execute(sql, []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
}

#[test]
fn ledger_key_and_policy_errors_never_quote_values() {
    let dir = new_dir();
    let (data, _keys) = SqliteStores::open(dir.path()).unwrap();
    let key = ApiKeyRow {
        id: ApiKeyId::random().unwrap(),
        name: "KEY-NAME-SECRET".to_owned(),
        secret_hash: [0x5A; 32],
        admin: false,
        purposes: vec!["PURPOSE-SECRET".to_owned()],
        created_at: at(1),
        revoked_at: None,
    };
    let policy = PolicyVersionRow {
        version: "LABEL-SECRET".to_owned(),
        source: "SOURCE-SECRET".to_owned(),
        published_at: at(1),
        fresh_consent_purposes: vec![],
    };
    let insert = |mutation: Mutation| {
        data.commit(WriteBatch {
            mutations: vec![mutation],
            audit: vec![],
        })
    };
    insert(Mutation::InsertApiKey(key.clone())).unwrap();
    insert(Mutation::InsertPolicyVersion(policy.clone())).unwrap();
    let key_err = insert(Mutation::InsertApiKey(key.clone())).unwrap_err();
    let policy_err = insert(Mutation::InsertPolicyVersion(policy)).unwrap_err();
    for err in [&key_err, &policy_err] {
        let message = err.to_string();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        assert!(
            !message.contains("SECRET") && !message.to_lowercase().contains("5a5a"),
            "{message}"
        );
    }
    assert!(
        key_err.to_string().contains(&key.id.to_string()),
        "{key_err}"
    );
    assert!(
        policy_err.to_string().contains("policy_versions.version"),
        "{policy_err}"
    );

    // A damaged list is reported as corrupt, without its text.
    raw(&dir.path().join(DATA_FILE))
        .execute("UPDATE api_keys SET purposes = '\"LIST-SECRET'", [])
        .unwrap();
    let err = data.api_key(key.id).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert!(!err.to_string().contains("SECRET"), "{err}");
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_left_untouched() {
    for file in [DATA_FILE, KEYS_FILE, KEYRING_FILE] {
        let dir = new_dir();
        drop(SqliteStores::open(dir.path()).unwrap());
        let path = dir.path().join(file);
        let garbage: Vec<u8> = b"this is not a database, just some text. ".repeat(200);
        std::fs::write(&path, &garbage).unwrap();

        let err = SqliteStores::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{file}: {err:?}");
        let message = err.to_string();
        assert!(message.contains(file), "{message}");
        assert!(message.contains("not a SQLite database"), "{message}");
        assert_eq!(std::fs::read(&path).unwrap(), garbage);
    }
}

#[test]
fn a_foreign_or_swapped_database_is_refused() {
    let dir = new_dir();
    drop(SqliteStores::open(dir.path()).unwrap());
    let data_path = dir.path().join(DATA_FILE);
    let keys_path = dir.path().join(KEYS_FILE);

    let keyring_path = dir.path().join(KEYRING_FILE);

    let swapped = new_dir();
    std::fs::copy(&keys_path, swapped.path().join(DATA_FILE)).unwrap();
    std::fs::copy(&data_path, swapped.path().join(KEYS_FILE)).unwrap();
    std::fs::copy(&keyring_path, swapped.path().join(KEYRING_FILE)).unwrap();
    let err = SqliteStores::open(swapped.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt(ref m) if m.contains("not a Custodia")),
        "{err:?}"
    );

    for (file, other) in [(KEYS_FILE, KEYRING_FILE), (KEYRING_FILE, KEYS_FILE)] {
        let foreign = new_dir();
        std::fs::copy(dir.path().join(other), foreign.path().join(other)).unwrap();
        let conn = raw(&foreign.path().join(file));
        conn.execute_batch("CREATE TABLE notes (body TEXT)")
            .unwrap();
        drop(conn);
        let err = SqliteStores::open(foreign.path()).unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt(ref m) if m.contains(file)),
            "{file}: {err:?}"
        );
        assert_eq!(
            tables(&foreign.path().join(file)),
            ["notes"],
            "{file} left as it was"
        );
    }
}

#[test]
fn existing_data_without_its_key_store_is_refused() {
    let dir = new_dir();
    drop(SqliteStores::open(dir.path()).unwrap());
    let keys_path = dir.path().join(KEYS_FILE);
    std::fs::remove_file(&keys_path).unwrap();

    for err in [
        SqliteStores::open(dir.path()).unwrap_err(),
        SqliteStores::open_existing(dir.path()).unwrap_err(),
    ] {
        assert!(
            matches!(err, StoreError::Unavailable(ref m) if m.contains(KEYS_FILE)),
            "{err:?}"
        );
    }
    assert!(!keys_path.exists(), "no fresh key store may be created");
}

#[test]
fn open_existing_creates_nothing() {
    let parent = new_dir();
    let dir = parent.path().join("custodia");
    let err = SqliteStores::open_existing(&dir).unwrap_err();
    assert!(
        matches!(err, StoreError::Unavailable(ref m) if m.contains(DATA_FILE)),
        "{err:?}"
    );
    assert!(!dir.exists());

    let (data, keys) = SqliteStores::open(&dir).unwrap();
    assert!(data.path().starts_with(&dir) && keys.path().starts_with(&dir));
    assert_eq!(keys.keyring_path(), dir.join(KEYRING_FILE));
    drop((data, keys));
    SqliteStores::open_existing(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn files_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let parent = new_dir();
    let dir = parent.path().join("custodia");
    let _stores = SqliteStores::open(&dir).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(DATA_FILE)), 0o600);
    assert_eq!(mode(&dir.join(KEYS_FILE)), 0o600);
    assert_eq!(mode(&dir.join(KEYRING_FILE)), 0o600);
}

#[test]
fn audit_fields_round_trip_exactly() {
    let dir = new_dir();
    let (data, _keys) = SqliteStores::open(dir.path()).unwrap();
    let events = vec![
        AuditEvent::new(EventKind::Decision, -5)
            .with_subject("")
            .with_outcome("deny")
            .with_reasons(["consent.missing", "", "minor", "consent.missing"]),
        AuditEvent::new(EventKind::RetentionDeleted, i64::MAX)
            .with_actor("system")
            .with_category("user.content.audio_recording")
            .with_purpose("ai_transcription")
            .with_record("rec_00")
            .with_rule("r\"1\"\n[]")
            .with_reason("[\"not\",\"split\"]"),
        AuditEvent::new(EventKind::RecordRead, 0),
    ];
    data.commit(WriteBatch {
        mutations: vec![],
        audit: events.clone(),
    })
    .unwrap();
    let entries = data.audit_entries(1, 10).unwrap();
    assert_eq!(
        entries.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        events
    );
    assert_eq!(entries[0].event.subject.as_deref(), Some(""));
    assert_eq!(entries[0].event.actor, None);
    custodia_audit::verify(&entries).unwrap();
    assert!(data.audit_entries(u64::MAX, 10).unwrap().is_empty());
    assert!(data.audit_entries(1, 0).unwrap().is_empty());
}

#[test]
fn the_audit_log_refuses_updates_and_deletes() {
    let dir = new_dir();
    let (data, _keys) = SqliteStores::open(dir.path()).unwrap();
    data.commit(WriteBatch {
        mutations: vec![],
        audit: vec![AuditEvent::new(EventKind::Decision, 1)],
    })
    .unwrap();
    let conn = raw(&dir.path().join(DATA_FILE));
    for sql in ["UPDATE audit SET at = 2", "DELETE FROM audit"] {
        let err = conn.execute(sql, []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
}

#[test]
fn deleting_a_subject_with_records_conflicts_and_inserting_an_orphan_is_not_found() {
    let dir = new_dir();
    let (data, _keys) = SqliteStores::open(dir.path()).unwrap();
    let owner = subject(vec![1]);
    let kept = record(owner.id, vec![2]);
    data.commit(WriteBatch {
        mutations: vec![
            Mutation::InsertSubject(owner.clone()),
            Mutation::InsertRecord(kept.clone()),
        ],
        audit: vec![],
    })
    .unwrap();
    let err = data
        .commit(WriteBatch {
            mutations: vec![Mutation::DeleteSubject(owner.id)],
            audit: vec![AuditEvent::new(EventKind::SubjectErased, 2)],
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(data.subject(owner.id).unwrap(), Some(owner));
    assert_eq!(data.audit_head().unwrap(), None);

    let orphan = record(SubjectId::random().unwrap(), vec![3]);
    let err = data
        .commit(WriteBatch {
            mutations: vec![Mutation::InsertRecord(orphan)],
            audit: vec![],
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(data.count_records().unwrap(), 1);
}

#[test]
fn error_messages_name_ids_but_never_values() {
    let dir = new_dir();
    let (data, keys) = SqliteStores::open(dir.path()).unwrap();
    let secret_lookup = [0x5A; 32];
    let mut first = subject(b"PROFILE-SECRET".to_vec());
    first.lookup = secret_lookup;
    let mut second = subject(b"PROFILE-SECRET".to_vec());
    second.lookup = secret_lookup;
    let err = data
        .commit(WriteBatch {
            mutations: vec![
                Mutation::InsertSubject(first),
                Mutation::InsertSubject(second.clone()),
            ],
            audit: vec![],
        })
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&second.id.to_string()), "{message}");
    assert!(message.contains("subjects.lookup"), "{message}");
    assert!(
        !message.contains("PROFILE") && !message.to_lowercase().contains("5a5a"),
        "{message}"
    );

    initialise(&keys);
    let row = data_key(SubjectId::random().unwrap(), marker(b"KEY"));
    keys.insert_data_keys(std::slice::from_ref(&row)).unwrap();
    let message = keys
        .insert_data_keys(std::slice::from_ref(&row))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains(&row.id.to_string()) && !message.contains("KEY"),
        "{message}"
    );
}

#[test]
fn epochs_only_move_forward() {
    let dir = new_dir();
    let (_data, keys) = SqliteStores::open(dir.path()).unwrap();
    let epoch = |id| EpochRow {
        id,
        wrapped: vec![9; 60],
        created_at: at(1),
    };
    assert!(matches!(
        keys.add_epoch(&epoch(1)).unwrap_err(),
        StoreError::NotFound(_)
    ));
    initialise(&keys);
    keys.add_epoch(&epoch(3)).unwrap();
    assert!(matches!(
        keys.add_epoch(&epoch(2)).unwrap_err(),
        StoreError::Conflict(_)
    ));
    assert!(matches!(
        keys.add_epoch(&epoch(3)).unwrap_err(),
        StoreError::Conflict(_)
    ));
    keys.add_epoch(&epoch(u32::MAX)).unwrap();
    assert_eq!(
        keys.epochs()
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        [1, 3, u32::MAX]
    );
    let mut orphan = data_key(SubjectId::random().unwrap(), vec![1]);
    orphan.epoch = 2;
    let err = keys.insert_data_keys(&[orphan]).unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound(ref m) if m.contains("epoch 2")),
        "{err:?}"
    );
}

#[test]
fn a_large_batch_commits_at_once_and_reads_back_in_order() {
    let dir = new_dir();
    let (data, _keys) = SqliteStores::open(dir.path()).unwrap();
    let owner = subject(vec![1]);
    let mut mutations = vec![Mutation::InsertSubject(owner.clone())];
    let mut rows = Vec::new();
    for i in 0..5_000_i64 {
        let mut row = record(owner.id, i.to_le_bytes().to_vec());
        // Ten records share each collection time: ties come back in insertion order.
        row.collected_at = at(i / 10);
        rows.push(row.clone());
        mutations.push(Mutation::InsertRecord(row));
    }
    data.commit(WriteBatch {
        mutations,
        audit: vec![AuditEvent::new(EventKind::RecordWritten, 1); 5_000],
    })
    .unwrap();
    assert_eq!(data.count_records().unwrap(), 5_000);
    assert_eq!(data.records_of(owner.id, None).unwrap(), rows);
    assert_eq!(data.audit_head().unwrap().unwrap().seq, 5_000);
}

#[test]
fn a_second_process_style_handle_sees_commits_at_once() {
    let dir = new_dir();
    let (data, keys) = SqliteStores::open(dir.path()).unwrap();
    let (other_data, other_keys) = SqliteStores::open_existing(dir.path()).unwrap();
    let owner = subject(vec![1]);
    data.commit(WriteBatch {
        mutations: vec![Mutation::InsertSubject(owner.clone())],
        audit: vec![],
    })
    .unwrap();
    assert_eq!(other_data.subject(owner.id).unwrap(), Some(owner));
    initialise(&other_keys);
    assert!(keys.meta().unwrap().is_some());
}

#[test]
fn statutory_records_are_counted_per_subject() {
    let dir = new_dir();
    let (data, _keys) = SqliteStores::open(dir.path()).unwrap();
    let alice = subject(vec![1]);
    let mut bob = subject(vec![2]);
    bob.lookup = [4; 32];
    let mut kept = record(alice.id, vec![1]);
    kept.statutory = true;
    let mut bobs = record(bob.id, vec![2]);
    bobs.statutory = true;
    data.commit(WriteBatch {
        mutations: vec![
            Mutation::InsertSubject(alice.clone()),
            Mutation::InsertSubject(bob),
            Mutation::InsertRecord(kept),
            Mutation::InsertRecord(record(alice.id, vec![3])),
            Mutation::InsertRecord(bobs),
        ],
        audit: vec![],
    })
    .unwrap();
    assert_eq!(data.count_statutory_records(alice.id).unwrap(), 1);
    assert_eq!(
        data.count_statutory_records(SubjectId::random().unwrap())
            .unwrap(),
        0
    );
}

fn epoch_row(id: u32, wrapped: Vec<u8>) -> EpochRow {
    EpochRow {
        id,
        wrapped,
        created_at: at(i64::from(id)),
    }
}

fn key_meta() -> KeyStoreMeta {
    KeyStoreMeta {
        verifier: vec![1; 32],
        kdf: None,
        created_at: at(1),
    }
}

/// Removes a database file with its WAL and shared-memory files, as a lost file would be.
fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::remove_file(&name) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            other => other.unwrap(),
        }
    }
}

/// Copies a closed database file, and its WAL if one is left, as a cold backup would.
fn copy_db(from: &Path, to: &Path) {
    for suffix in ["", "-wal"] {
        let mut source = from.as_os_str().to_owned();
        source.push(suffix);
        let mut target = to.as_os_str().to_owned();
        target.push(suffix);
        if Path::new(&source).exists() {
            std::fs::copy(&source, &target).unwrap();
        }
    }
}

/// `(id, pending)` of every epoch row in a keyring, read past the store.
fn keyring_rows(path: &Path) -> Vec<(u32, bool)> {
    let conn = raw(path);
    let mut stmt = conn
        .prepare("SELECT id, pending FROM epochs ORDER BY id")
        .unwrap();
    stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn epoch_keys_live_only_in_the_keyring() {
    let dir = new_dir();
    let epoch_key = marker(b"EPOCH-KEY:");
    let data_key_bytes = marker(b"DATA-KEY:");
    {
        let (_data, keys) = SqliteStores::open(dir.path()).unwrap();
        keys.initialise(&key_meta(), &epoch_row(1, epoch_key.clone()))
            .unwrap();
        keys.insert_data_keys(&[data_key(
            SubjectId::random().unwrap(),
            data_key_bytes.clone(),
        )])
        .unwrap();
    }
    let keys_path = dir.path().join(KEYS_FILE);
    let keyring_path = dir.path().join(KEYRING_FILE);
    assert_eq!(tables(&keys_path), ["data_keys", "meta"]);
    assert_eq!(tables(&keyring_path), ["epochs"]);
    let keys_bytes = file_bytes(&keys_path);
    let keyring_bytes = file_bytes(&keyring_path);
    assert!(contains(&keyring_bytes, &epoch_key));
    assert!(
        !contains(&keys_bytes, &epoch_key),
        "epoch keys must stay out of keys.db"
    );
    assert!(contains(&keys_bytes, &data_key_bytes));
    assert!(
        !contains(&keyring_bytes, &data_key_bytes),
        "data keys must stay out of keyring.db"
    );
    assert!(
        !contains(&file_bytes(&dir.path().join(DATA_FILE)), &epoch_key),
        "epoch keys must stay out of data.db"
    );
    assert_eq!(keyring_rows(&keyring_path), [(1, false)]);
}

#[test]
fn an_old_key_store_backup_is_useless_once_its_epoch_is_destroyed() {
    let dir = new_dir();
    let backup = new_dir();
    let old_epoch = marker(b"OLD-EPOCH:");
    let keys_path = dir.path().join(KEYS_FILE);
    let keyring_path = dir.path().join(KEYRING_FILE);
    let row = data_key(SubjectId::random().unwrap(), vec![7; 60]);
    {
        let (_data, keys) = SqliteStores::open(dir.path()).unwrap();
        keys.initialise(&key_meta(), &epoch_row(1, old_epoch.clone()))
            .unwrap();
        keys.insert_data_keys(std::slice::from_ref(&row)).unwrap();
    }
    copy_db(&keys_path, &backup.path().join(KEYS_FILE));

    let (_data, keys) = SqliteStores::open_existing(dir.path()).unwrap();
    keys.add_epoch(&epoch_row(2, vec![2; 60])).unwrap();
    keys.rewrap_data_keys(&[DataKeyRow {
        epoch: 2,
        wrapped: vec![8; 60],
        ..row.clone()
    }])
    .unwrap();
    keys.destroy_epoch(1).unwrap();
    // Checked with the store still open: the destruction itself emptied the keyring's WAL.
    assert!(
        !contains(&file_bytes(&keyring_path), &old_epoch),
        "the destroyed epoch survived in keyring.db"
    );
    drop(keys);

    // The old key store comes back beside the live keyring: it opens, but the epoch its data
    // key is wrapped under exists nowhere.
    remove_db(&keys_path);
    copy_db(&backup.path().join(KEYS_FILE), &keys_path);
    let (_data, keys) = SqliteStores::open_existing(dir.path()).unwrap();
    assert_eq!(keys.data_key(row.id).unwrap(), Some(row));
    assert_eq!(keys.epochs().unwrap(), [epoch_row(2, vec![2; 60])]);
    assert!(
        !contains(&file_bytes(&keyring_path), &old_epoch),
        "the destroyed epoch came back"
    );
}

#[test]
fn a_key_store_without_its_keyring_is_refused() {
    let dir = new_dir();
    {
        let (_data, keys) = SqliteStores::open(dir.path()).unwrap();
        initialise(&keys);
    }
    let keys_path = dir.path().join(KEYS_FILE);
    let keyring_path = dir.path().join(KEYRING_FILE);
    remove_db(&keyring_path);

    for err in [
        SqliteStores::open(dir.path()).unwrap_err(),
        SqliteStores::open_existing(dir.path()).unwrap_err(),
        SqliteStores::open_keys(&keys_path, &keyring_path).unwrap_err(),
    ] {
        assert!(
            matches!(err, StoreError::Unavailable(ref m)
                if m.contains(KEYRING_FILE) && m.contains("restore")),
            "{err:?}"
        );
    }
    assert!(!keyring_path.exists(), "no fresh keyring may be created");

    // Without data.db too, the key store alone is still refused.
    remove_db(&dir.path().join(DATA_FILE));
    let err = SqliteStores::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::Unavailable(ref m) if m.contains(KEYRING_FILE)),
        "{err:?}"
    );
    assert!(!keyring_path.exists(), "no fresh keyring may be created");
}

#[test]
fn a_lone_keyring_left_by_a_crash_while_creating_is_completed() {
    let dir = new_dir();
    drop(SqliteStores::open(dir.path()).unwrap());
    // The keyring is created first; a crash right after it leaves it alone.
    remove_db(&dir.path().join(KEYS_FILE));
    remove_db(&dir.path().join(DATA_FILE));
    let (_data, keys) = SqliteStores::open(dir.path()).unwrap();
    initialise(&keys);
    assert_eq!(keys.epochs().unwrap().len(), 1);
}

#[test]
fn swapped_key_store_files_are_refused() {
    let dir = new_dir();
    drop(SqliteStores::open(dir.path()).unwrap());
    let swapped = new_dir();
    copy_db(
        &dir.path().join(KEYS_FILE),
        &swapped.path().join(KEYRING_FILE),
    );
    copy_db(
        &dir.path().join(KEYRING_FILE),
        &swapped.path().join(KEYS_FILE),
    );
    let err = SqliteStores::open(swapped.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt(ref m) if m.contains("not a Custodia")),
        "{err:?}"
    );
}

/// The state a crash leaves between `initialise`'s two commits: the epoch is in the keyring,
/// the metadata never reached keys.db.
#[test]
fn a_crash_before_the_metadata_commits_is_recovered_by_the_next_initialise() {
    let dir = new_dir();
    let leftover = marker(b"LEFTOVER-EPOCH:");
    drop(SqliteStores::open(dir.path()).unwrap());
    let keyring_path = dir.path().join(KEYRING_FILE);
    raw(&keyring_path)
        .execute(
            "INSERT INTO epochs (id, wrapped, created_at, pending) VALUES (1, ?1, 1, 1)",
            [&leftover],
        )
        .unwrap();

    let (_data, keys) = SqliteStores::open_existing(dir.path()).unwrap();
    assert_eq!(keys.meta().unwrap(), None);
    assert!(
        keys.epochs().unwrap().is_empty(),
        "an unfinished epoch is not live"
    );
    let first = epoch_row(1, marker(b"FRESH-EPOCH:"));
    keys.initialise(&key_meta(), &first).unwrap();
    assert_eq!(keys.meta().unwrap(), Some(key_meta()));
    assert_eq!(keys.epochs().unwrap(), [first]);
    assert_eq!(keyring_rows(&keyring_path), [(1, false)]);
    assert!(matches!(
        keys.initialise(&key_meta(), &epoch_row(1, vec![3; 60]))
            .unwrap_err(),
        StoreError::Conflict(_)
    ));
}

/// A crash after the metadata commits but before the epoch is marked live: the epoch is live
/// already, and the next open records it so.
#[test]
fn a_crash_after_the_metadata_commits_is_settled_by_the_next_open() {
    let dir = new_dir();
    let keyring_path = dir.path().join(KEYRING_FILE);
    {
        let (_data, keys) = SqliteStores::open(dir.path()).unwrap();
        initialise(&keys);
    }
    raw(&keyring_path)
        .execute("UPDATE epochs SET pending = 1", [])
        .unwrap();
    let (_data, keys) = SqliteStores::open_existing(dir.path()).unwrap();
    assert_eq!(keyring_rows(&keyring_path), [(1, false)]);
    assert_eq!(keys.epochs().unwrap().len(), 1);
}

#[test]
fn a_lost_key_store_never_gets_a_live_keyring_overwritten() {
    let dir = new_dir();
    let keys_path = dir.path().join(KEYS_FILE);
    let keyring_path = dir.path().join(KEYRING_FILE);
    {
        let (_data, keys) = SqliteStores::open(dir.path()).unwrap();
        initialise(&keys);
        keys.add_epoch(&epoch_row(2, vec![4; 60])).unwrap();
    }
    // keys.db replaced by an empty one, next to the live keyring.
    remove_db(&keys_path);
    let keys = SqliteStores::open_keys(&keys_path, &keyring_path).unwrap();
    assert_eq!(keys.meta().unwrap(), None);
    let err = keys
        .initialise(&key_meta(), &epoch_row(1, vec![5; 60]))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(ref m) if m.contains(KEYS_FILE) && m.contains("restore")),
        "{err:?}"
    );
    assert_eq!(keyring_rows(&keyring_path), [(1, false), (2, false)]);
    assert_eq!(keys.meta().unwrap(), None, "nothing written to keys.db");
}

#[test]
fn destroying_an_epoch_races_storing_keys_under_it_safely() {
    let dir = new_dir();
    let (_data, keys) = SqliteStores::open(dir.path()).unwrap();
    let (_other_data, other_keys) = SqliteStores::open_existing(dir.path()).unwrap();
    initialise(&keys);
    keys.add_epoch(&epoch_row(2, vec![2; 60])).unwrap();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for _ in 0..100 {
                match keys.insert_data_keys(&[data_key(SubjectId::random().unwrap(), vec![1])]) {
                    Ok(()) => {}
                    Err(StoreError::NotFound(m)) if m.contains("epoch 1") => break,
                    Err(e) => panic!("{e:?}"),
                }
            }
        });
        scope.spawn(|| {
            loop {
                match other_keys.destroy_epoch(1) {
                    Ok(()) => break,
                    Err(StoreError::Conflict(_)) => {
                        let moved: Vec<_> = other_keys
                            .data_keys_in_epoch(1, None, 1_000)
                            .unwrap()
                            .into_iter()
                            .map(|row| DataKeyRow { epoch: 2, ..row })
                            .collect();
                        other_keys.rewrap_data_keys(&moved).unwrap();
                    }
                    Err(e) => panic!("{e:?}"),
                }
            }
        });
    });
    assert_eq!(keys.epochs().unwrap(), [epoch_row(2, vec![2; 60])]);
    assert!(
        keys.data_keys_in_epoch(1, None, 10).unwrap().is_empty(),
        "a data key was stored under the destroyed epoch"
    );
}
