//! The PostgreSQL stores against a real server: the shared conformance suite (with the keyring
//! reached through the key store's pool, and through a pool of its own), then what only this
//! backend does (migrations, the three schemas and what each holds, crash recovery, several
//! instances, connection errors, the audit columns).
//!
//! Tests that need a server read `CUSTODIA_TEST_DATABASE_URL` (`scripts/start-test-postgres`
//! starts one and prints it). Without it they print a one-line skip notice and pass, so
//! `cargo test --workspace` passes on a machine without PostgreSQL; CI always sets it. Each test
//! works in its own random namespace (`t_<16 hex>`) and drops its schemas afterwards.
//!
//! The test role cannot create databases, so the keyring's "own database" is the same database
//! reached through another URL string: that gives it its own pool and its own transactions,
//! which is what the split code paths depend on.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use custodia_audit::{AuditEvent, EventKind};
use custodia_core::{
    ConsentId, DisclosureId, HoldId, KeyId, MediaId, NotificationId, RecordId, RequestId,
    SubjectId, Timestamp,
};
use custodia_store::conformance::Harness;
use custodia_store::{
    ConsentEventKind, ConsentRow, DataKeyKind, DataKeyRow, DataStore, DisclosureRow, EpochRow,
    HoldRow, KeyStore, KeyStoreMeta, MediaRow, MediaState, Mutation, NotificationRow,
    PolicyVersionRow, RequestFilter, RequestRow, SCHEMA_VERSION, StoreError, SubjectRow,
    WriteBatch,
};
use custodia_store_postgres::{PgDataStore, PgKeyStore, PoolOptions, PostgresStores};

const URL_VAR: &str = "CUSTODIA_TEST_DATABASE_URL";

fn database_url() -> Option<String> {
    std::env::var(URL_VAR).ok().filter(|url| !url.is_empty())
}

/// The database URL, or a skip notice and an early return from the test.
macro_rules! database_or_skip {
    ($test:literal) => {
        match database_url() {
            Some(url) => url,
            None => {
                eprintln!(
                    "skipped {}: {URL_VAR} is not set (scripts/start-test-postgres starts a server \
                     and prints one)",
                    $test
                );
                return;
            }
        }
    };
}

/// How the keyring is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Through the key store's URL and pool: one transaction covers both key schemas.
    Shared,
    /// Through a URL of its own: its own pool, its own transactions.
    Separate,
}

const LAYOUTS: [Layout; 2] = [Layout::Shared, Layout::Separate];

/// `url` with an extra `application_name`, which makes it another URL for the same database.
fn tagged_url(url: &str, application_name: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}application_name={application_name}")
}

/// A fresh namespace on the test server whose schemas are dropped when it goes (best effort: a
/// failed drop leaves a `t_…` schema behind, nothing worse).
struct Scratch {
    url: String,
    namespace: String,
}

impl Scratch {
    fn new(url: &str) -> Self {
        let id = SubjectId::random().unwrap();
        let hex: String = id.as_bytes()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self {
            url: url.to_owned(),
            namespace: format!("t_{hex}"),
        }
    }

    fn connect(&self) -> Result<(PgDataStore, PgKeyStore), StoreError> {
        PostgresStores::connect(&self.url, &self.namespace)
    }

    fn connect_as(&self, layout: Layout) -> Result<(PgDataStore, PgKeyStore), StoreError> {
        match layout {
            Layout::Shared => self.connect(),
            Layout::Separate => PostgresStores::connect_custody(
                &self.url,
                &self.url,
                &tagged_url(&self.url, "custodia_keyring"),
                &self.namespace,
            ),
        }
    }

    /// The name of one of the namespace's schemas.
    fn schema(&self, suffix: &str) -> String {
        format!("{}_{suffix}", self.namespace)
    }

    fn sql(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.url, postgres::NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{ns}_data\", \"{ns}_keys\", \"{ns}_keyring\", \
                 \"{ns}_backup\" CASCADE",
                ns = self.namespace
            ));
        }
    }
}

/// Fresh stores for one conformance case in a new namespace, or `None` (skip) without a test
/// database; `reopen` opens a second instance on the same schemas.
fn fresh_as(layout: Layout) -> Option<Harness> {
    let url = database_url()?;
    let scratch = Arc::new(Scratch::new(&url));
    let (data, keys) = scratch.connect_as(layout).unwrap();
    assert_eq!(keys.keyring_is_separate(), layout == Layout::Separate);
    Some(Harness {
        data: Arc::new(data),
        keys: Arc::new(keys),
        reopen: Box::new(move || {
            // Holding the scratch here drops the schemas when the harness goes.
            let (data, keys) = scratch.connect_as(layout).unwrap();
            (Arc::new(data), Arc::new(keys))
        }),
    })
}

fn fresh() -> Option<Harness> {
    fresh_as(Layout::Shared)
}

custodia_store::conformance_tests!(fresh);

/// The conformance suite again, with the keyring behind a pool (and transactions) of its own.
mod separate_keyring {
    use super::*;

    fn fresh() -> Option<Harness> {
        fresh_as(Layout::Separate)
    }

    custodia_store::conformance_tests!(fresh);
}

fn version_rows(client: &mut postgres::Client, schema: &str) -> Vec<i32> {
    client
        .query(
            &format!("SELECT version FROM \"{schema}\".schema_version ORDER BY version"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The versions each schema has once migrated: the key schemas have had one migration so far.
fn current_versions(suffix: &str) -> Vec<i32> {
    let latest = if suffix == "data" { SCHEMA_VERSION } else { 1 };
    (1..=i32::try_from(latest).unwrap()).collect()
}

#[test]
fn a_schema_newer_than_this_build_is_refused_and_left_alone() {
    let url = database_or_skip!("a_schema_newer_than_this_build_is_refused_and_left_alone");
    let scratch = Scratch::new(&url);
    drop(scratch.connect().unwrap());
    let mut sql = scratch.sql();
    // One past what this build has for each schema: for the key schemas that is a version the
    // data schema knows (2), which must not make a newer key schema look readable.
    for suffix in ["data", "keys", "keyring"] {
        let schema = scratch.schema(suffix);
        let mut rows = current_versions(suffix);
        let supported = u32::try_from(rows.len()).unwrap();
        let newer = i32::try_from(supported + 1).unwrap();
        sql.execute(
            &format!("INSERT INTO \"{schema}\".schema_version (version) VALUES ($1)"),
            &[&newer],
        )
        .unwrap();
        let err = scratch.connect().map(|_| ()).unwrap_err();
        match err {
            StoreError::SchemaTooNew {
                found,
                supported: s,
            } => {
                assert_eq!(found, supported + 1, "{schema}");
                assert_eq!(s, supported, "{schema}");
            }
            other => panic!("expected SchemaTooNew for {schema}, got {other:?}"),
        }
        assert_eq!(err_code_of(&scratch), "store.schema_too_new");
        // Refused before anything was written: the version rows are as they were.
        rows.push(newer);
        assert_eq!(version_rows(&mut sql, &schema), rows);
        sql.execute(
            &format!("DELETE FROM \"{schema}\".schema_version WHERE version = $1"),
            &[&newer],
        )
        .unwrap();
    }
    scratch.connect().unwrap();
}

fn err_code_of(scratch: &Scratch) -> &'static str {
    scratch.connect().map(|_| ()).unwrap_err().code()
}

#[test]
fn a_foreign_schema_of_the_same_name_is_refused() {
    let url = database_or_skip!("a_foreign_schema_of_the_same_name_is_refused");
    for (suffix, kind) in [
        ("data", "data store"),
        ("keys", "key store"),
        ("keyring", "keyring"),
    ] {
        let scratch = Scratch::new(&url);
        let schema = scratch.schema(suffix);
        scratch
            .sql()
            .batch_execute(&format!(
                "CREATE SCHEMA \"{schema}\"; CREATE TABLE \"{schema}\".someone_elses (x INT)"
            ))
            .unwrap();
        let err = scratch.connect().map(|_| ()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{suffix}: {err:?}");
        assert!(
            err.to_string().contains(&format!("not a Custodia {kind}")),
            "{err}"
        );
        // Nothing was created beside it.
        let created: i64 = scratch
            .sql()
            .query_one(
                "SELECT count(*) FROM pg_namespace WHERE nspname LIKE $1",
                &[&format!("{}\\_%", scratch.namespace)],
            )
            .unwrap()
            .get(0);
        assert_eq!(created, 1, "{suffix}");
    }
}

#[test]
fn instances_starting_together_migrate_once() {
    let url = database_or_skip!("instances_starting_together_migrate_once");
    let scratch = Arc::new(Scratch::new(&url));
    let start = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let scratch = scratch.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                scratch.connect().map(|_| ())
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap().unwrap();
    }
    let mut sql = scratch.sql();
    for suffix in ["data", "keys", "keyring"] {
        assert_eq!(
            version_rows(&mut sql, &scratch.schema(suffix)),
            current_versions(suffix)
        );
    }
}

#[test]
fn connect_split_puts_each_store_in_its_own_schema() {
    let url = database_or_skip!("connect_split_puts_each_store_in_its_own_schema");
    let scratch = Scratch::new(&url);
    let (data, keys) = PostgresStores::connect_split(&url, &url, &scratch.namespace).unwrap();
    assert_eq!(data.schema(), format!("{}_data", scratch.namespace));
    assert_eq!(keys.schema(), format!("{}_keys", scratch.namespace));
    assert_eq!(
        keys.keyring_schema(),
        format!("{}_keyring", scratch.namespace)
    );
    // connect_split keeps the keyring beside the keys, in one transaction with them.
    assert!(!keys.keyring_is_separate());
    assert_eq!(keys.keyring_target(), keys.target());
    assert!(
        !data.target().contains("custodia:"),
        "no credentials in {}",
        data.target()
    );
    let tables: Vec<(String, String)> = scratch
        .sql()
        .query(
            "SELECT table_schema::text, table_name::text FROM information_schema.tables \
             WHERE table_schema LIKE $1 ORDER BY 1, 2",
            &[&format!("{}\\_%", scratch.namespace)],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let names: Vec<String> = tables.iter().map(|(s, t)| format!("{s}.{t}")).collect();
    let ns = &scratch.namespace;
    assert_eq!(
        names,
        vec![
            format!("{ns}_data.api_keys"),
            format!("{ns}_data.audit"),
            format!("{ns}_data.audit_head"),
            format!("{ns}_data.consent_events"),
            format!("{ns}_data.disclosures"),
            format!("{ns}_data.holds"),
            format!("{ns}_data.media"),
            format!("{ns}_data.notifications"),
            format!("{ns}_data.policy_versions"),
            format!("{ns}_data.records"),
            format!("{ns}_data.requests"),
            format!("{ns}_data.schema_version"),
            format!("{ns}_data.subjects"),
            format!("{ns}_keyring.epochs"),
            format!("{ns}_keyring.schema_version"),
            format!("{ns}_keys.data_keys"),
            format!("{ns}_keys.meta"),
            format!("{ns}_keys.schema_version"),
        ]
    );
}

#[test]
fn an_unreachable_server_is_unavailable_without_the_password() {
    // Port 1 on the loopback: nothing listens there, so the connection is refused at once.
    let url = "postgres://custodia:Sup3r-s3cret-pw@127.0.0.1:1/custodia_test";
    let options = PoolOptions::default().with_connect_timeout(Duration::from_secs(5));
    let err = PostgresStores::connect_with(url, url, url, "custodia", options)
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let message = err.to_string();
    assert!(!message.contains("Sup3r-s3cret-pw"), "{message}");
    assert!(message.contains("127.0.0.1:1/custodia_test"), "{message}");
    assert_eq!(err.code(), "store.unavailable");
}

#[test]
fn a_bad_url_is_unavailable_without_the_password() {
    for url in [
        "postgres://custodia:Sup3r-s3cret-pw@127.0.0.1:notaport/custodia_test",
        "postgres://custodia:Sup3r-s3cret-pw@127.0.0.1/custodia_test?nonsense=1",
        "host=127.0.0.1 password=Sup3r-s3cret-pw nonsense=1",
    ] {
        let err = PostgresStores::connect(url, "custodia")
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{url}: {err:?}");
        let message = err.to_string();
        assert!(message.contains("invalid PostgreSQL URL"), "{message}");
        assert!(!message.contains("Sup3r-s3cret-pw"), "{message}");
    }
}

#[test]
fn a_wrong_password_is_unavailable_without_the_password() {
    let url = database_or_skip!("a_wrong_password_is_unavailable_without_the_password");
    let config: postgres::Config = url.parse().unwrap();
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        _ => {
            eprintln!("skipped a_wrong_password_is_unavailable_without_the_password: not TCP");
            return;
        }
    };
    let wrong = format!(
        "host={host} port={} user={} dbname={} password=Wr0ng-pw-for-test",
        config.get_ports().first().copied().unwrap_or(5432),
        config.get_user().unwrap_or("custodia"),
        config.get_dbname().unwrap_or("custodia_test"),
    );
    let err = PostgresStores::connect(&wrong, "custodia")
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let message = err.to_string();
    assert!(!message.contains("Wr0ng-pw-for-test"), "{message}");
    assert!(message.contains("authentication failed"), "{message}");
}

#[test]
fn invalid_namespaces_are_refused_before_connecting() {
    // The URL is unreachable: a namespace error proves nothing was attempted.
    let url = "postgres://custodia:custodia@127.0.0.1:1/custodia_test";
    for namespace in [
        "",
        "Custodia",
        "1st",
        "a-b",
        "x; DROP TABLE y",
        &"n".repeat(42),
    ] {
        let err = PostgresStores::connect(url, namespace)
            .map(|_| ())
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Unavailable(_)),
            "{namespace:?}: {err:?}"
        );
        assert!(
            err.to_string().contains("invalid PostgreSQL namespace"),
            "{err}"
        );
    }
}

fn tricky_events(count: usize) -> Vec<AuditEvent> {
    (0..count)
        .map(|i| {
            let at = i64::try_from(i).unwrap();
            let mut event = AuditEvent::new(EventKind::ALL[i % EventKind::ALL.len()], at)
                .with_actor(format!("key_{i}"))
                .with_reasons(["zeta", "alpha", "", "mid 中文"]);
            // Empty strings and absent fields must stay apart: both are hashed.
            if i % 2 == 0 {
                event = event.with_subject("").with_outcome("allow");
            } else {
                event = event
                    .with_category("user.contact.phone_number")
                    .with_rule("");
            }
            if i % 3 == 0 {
                event.reasons.clear();
            }
            event
        })
        .collect()
}

#[test]
fn audit_fields_come_back_exactly_through_insert_and_copy() {
    let url = database_or_skip!("audit_fields_come_back_exactly_through_insert_and_copy");
    let scratch = Scratch::new(&url);
    let (data, _keys) = PostgresStores::connect(&url, &scratch.namespace).unwrap();
    // 3 events go through single-row inserts, 40 through COPY.
    let small = tricky_events(3);
    let large = tricky_events(40);
    for events in [small.clone(), large.clone()] {
        data.commit(WriteBatch {
            mutations: vec![],
            audit: events,
        })
        .unwrap();
    }
    let entries = data.audit_entries(1, 1_000).unwrap();
    let events: Vec<AuditEvent> = entries.iter().map(|e| e.event.clone()).collect();
    let expected: Vec<AuditEvent> = small.into_iter().chain(large).collect();
    assert_eq!(events, expected);
    let report = custodia_audit::verify(&entries).unwrap();
    assert_eq!(Some(report.head()), data.audit_head().unwrap());
}

#[test]
fn the_audit_table_refuses_updates_and_deletes() {
    let url = database_or_skip!("the_audit_table_refuses_updates_and_deletes");
    let scratch = Scratch::new(&url);
    let (data, _keys) = PostgresStores::connect(&url, &scratch.namespace).unwrap();
    data.commit(WriteBatch {
        mutations: vec![],
        audit: tricky_events(2),
    })
    .unwrap();
    let mut sql = scratch.sql();
    let table = format!("\"{}_data\".audit", scratch.namespace);
    for statement in [
        format!("UPDATE {table} SET outcome = 'deny'"),
        format!("DELETE FROM {table}"),
        format!("TRUNCATE {table}"),
    ] {
        let err = sql.batch_execute(&statement).unwrap_err();
        let message = err
            .as_db_error()
            .map(|db| db.message().to_owned())
            .unwrap_or_default();
        assert!(message.contains("append-only"), "{statement}: {err:?}");
    }
    assert_eq!(data.audit_entries(1, 10).unwrap().len(), 2);
}

fn consent(subject: SubjectId, kind: ConsentEventKind) -> ConsentRow {
    ConsentRow {
        id: ConsentId::random().unwrap(),
        subject,
        purposes: vec!["marketing".to_owned()],
        kind,
        guardian: None,
        guardian_verified: false,
        policy_version: "v1".to_owned(),
        method: "app_dialog".to_owned(),
        at: Timestamp::from_millis(2),
        expires_at: None,
    }
}

fn subject_row() -> SubjectRow {
    SubjectRow {
        id: SubjectId::random().unwrap(),
        lookup: [0x3C; 32],
        profile: vec![1, 2, 3],
        key: KeyId::random().unwrap(),
        created_at: Timestamp::from_millis(1),
        last_active_at: Timestamp::from_millis(1),
        closed_at: None,
        erased_at: None,
    }
}

fn request_row(subject: SubjectId) -> RequestRow {
    RequestRow {
        id: RequestId::random().unwrap(),
        subject,
        kind: "erasure".to_owned(),
        state: "received".to_owned(),
        law: "PIPL".to_owned(),
        received_at: Timestamp::from_millis(2),
        acknowledge_by: None,
        due_at: Timestamp::from_millis(1_000),
        original_due_at: None,
        details: vec![0x5E; 8],
        flags: vec!["flag".to_owned()],
        verification: None,
        updated_at: Timestamp::from_millis(2),
        closed_at: None,
        version: 0,
    }
}

fn disclosure_row(subject: SubjectId) -> DisclosureRow {
    DisclosureRow {
        id: DisclosureId::random().unwrap(),
        subject,
        recipient: "crm".to_owned(),
        recipient_kind: "processor".to_owned(),
        categories: vec!["user.contact.email".to_owned()],
        purpose: "account".to_owned(),
        at: Timestamp::from_millis(3),
        reference: None,
        country: None,
        mechanism: None,
    }
}

fn notification_row(request: RequestId, subject: SubjectId) -> NotificationRow {
    NotificationRow {
        id: NotificationId::random().unwrap(),
        kind: "erasure_notice".to_owned(),
        request: Some(request),
        subject,
        recipient: "crm".to_owned(),
        payload: vec![0x9A; 8],
        state: "pending".to_owned(),
        attempts: 0,
        next_attempt_at: Some(Timestamp::from_millis(4)),
        last_error: None,
        created_at: Timestamp::from_millis(4),
        delivered_at: None,
        settled_at: None,
        reason: None,
    }
}

#[test]
fn the_consent_ledger_disclosures_and_published_policies_refuse_updates_and_deletes() {
    let url = database_or_skip!(
        "the_consent_ledger_disclosures_and_published_policies_refuse_updates_and_deletes"
    );
    let scratch = Scratch::new(&url);
    let (data, _keys) = PostgresStores::connect(&url, &scratch.namespace).unwrap();
    let owner = subject_row();
    let policy = PolicyVersionRow {
        version: "LABEL-SECRET".to_owned(),
        source: "SOURCE-SECRET".to_owned(),
        published_at: Timestamp::from_millis(1),
        fresh_consent_purposes: vec![],
    };
    data.commit(WriteBatch {
        mutations: vec![
            Mutation::InsertSubject(owner.clone()),
            Mutation::InsertConsent(consent(owner.id, ConsentEventKind::Given)),
            Mutation::InsertPolicyVersion(policy.clone()),
            Mutation::InsertDisclosure(disclosure_row(owner.id)),
        ],
        audit: vec![],
    })
    .unwrap();
    let mut sql = scratch.sql();
    for (table, column) in [
        ("consent_events", "at"),
        ("policy_versions", "source"),
        ("disclosures", "recipient"),
    ] {
        let table = format!("\"{}_data\".{table}", scratch.namespace);
        for statement in [
            format!("UPDATE {table} SET {column} = {column}"),
            format!("DELETE FROM {table}"),
            format!("TRUNCATE {table}"),
        ] {
            let err = sql.batch_execute(&statement).unwrap_err();
            let message = err
                .as_db_error()
                .map(|db| db.message().to_owned())
                .unwrap_or_default();
            assert!(message.contains("append-only"), "{statement}: {err:?}");
        }
    }
    assert_eq!(data.consents_of(owner.id).unwrap().len(), 1);
    assert_eq!(data.disclosures_of(owner.id).unwrap().len(), 1);
    // A second publication of the label conflicts without quoting it.
    let err = data
        .commit(WriteBatch {
            mutations: vec![Mutation::InsertPolicyVersion(policy)],
            audit: vec![],
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(!err.to_string().contains("SECRET"), "{err}");
}

/// A data schema left by the build before the consent ledger (version 1) is brought to the
/// current version by the next connect, keeping what it held.
#[test]
fn a_version_1_data_schema_is_migrated_on_connect() {
    let url = database_or_skip!("a_version_1_data_schema_is_migrated_on_connect");
    let scratch = Scratch::new(&url);
    drop(scratch.connect().unwrap());
    let schema = scratch.schema("data");
    let owner = subject_row();
    {
        // What that build's migration did: the schema, its version table, migration 001 and
        // its version row, in one transaction.
        let mut sql = scratch.sql();
        let mut tx = sql.transaction().unwrap();
        tx.batch_execute(&format!(
            "DROP SCHEMA \"{schema}\" CASCADE;
             CREATE SCHEMA \"{schema}\";
             CREATE TABLE \"{schema}\".schema_version (
                 version    INTEGER     NOT NULL PRIMARY KEY CHECK (version >= 1),
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             );
             SET LOCAL search_path TO \"{schema}\";"
        ))
        .unwrap();
        tx.batch_execute(include_str!("../../migrations/data/001_initial.sql"))
            .unwrap();
        tx.batch_execute("INSERT INTO schema_version (version) VALUES (1)")
            .unwrap();
        let (id, lookup, key): (&[u8], &[u8], &[u8]) =
            (owner.id.as_bytes(), &owner.lookup, owner.key.as_bytes());
        tx.execute(
            "INSERT INTO subjects (id, lookup, profile, key, created_at, last_active_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &id,
                &lookup,
                &owner.profile,
                &key,
                &owner.created_at.as_millis(),
                &owner.last_active_at.as_millis(),
            ],
        )
        .unwrap();
        tx.commit().unwrap();
        assert_eq!(
            tables_of(&mut sql, &schema),
            [
                "audit",
                "audit_head",
                "records",
                "schema_version",
                "subjects"
            ]
        );
    }

    let (data, _keys) = scratch.connect().unwrap();
    assert_eq!(
        version_rows(&mut scratch.sql(), &schema),
        current_versions("data")
    );
    assert_eq!(data.subject(owner.id).unwrap(), Some(owner.clone()));
    let given = consent(owner.id, ConsentEventKind::Given);
    data.commit(WriteBatch {
        mutations: vec![Mutation::InsertConsent(given.clone())],
        audit: vec![AuditEvent::new(EventKind::ConsentRecorded, 2)],
    })
    .unwrap();
    drop(data);

    // Connected again, it is current and migrates nothing more.
    let (data, _keys) = scratch.connect().unwrap();
    assert_eq!(data.consents_of(owner.id).unwrap(), [given]);
    assert_eq!(
        version_rows(&mut scratch.sql(), &schema),
        current_versions("data")
    );
}

/// A data schema left by the build before legal holds (version 2) is brought to the current
/// version by the next connect, keeping what it held.
#[test]
fn a_version_2_data_schema_is_migrated_on_connect() {
    let url = database_or_skip!("a_version_2_data_schema_is_migrated_on_connect");
    let scratch = Scratch::new(&url);
    drop(scratch.connect().unwrap());
    let schema = scratch.schema("data");
    let owner = subject_row();
    let record = RecordId::random().unwrap();
    {
        // What that build's migrations did: the schema, its version table, migrations 001 and
        // 002 and their version rows, in one transaction.
        let mut sql = scratch.sql();
        let mut tx = sql.transaction().unwrap();
        tx.batch_execute(&format!(
            "DROP SCHEMA \"{schema}\" CASCADE;
             CREATE SCHEMA \"{schema}\";
             CREATE TABLE \"{schema}\".schema_version (
                 version    INTEGER     NOT NULL PRIMARY KEY CHECK (version >= 1),
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             );
             SET LOCAL search_path TO \"{schema}\";"
        ))
        .unwrap();
        tx.batch_execute(include_str!("../../migrations/data/001_initial.sql"))
            .unwrap();
        tx.batch_execute(include_str!(
            "../../migrations/data/002_consent_keys_policies.sql"
        ))
        .unwrap();
        tx.batch_execute("INSERT INTO schema_version (version) VALUES (1), (2)")
            .unwrap();
        let (id, lookup, key): (&[u8], &[u8], &[u8]) =
            (owner.id.as_bytes(), &owner.lookup, owner.key.as_bytes());
        tx.execute(
            "INSERT INTO subjects (id, lookup, profile, key, created_at, last_active_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &id,
                &lookup,
                &owner.profile,
                &key,
                &owner.created_at.as_millis(),
                &owner.last_active_at.as_millis(),
            ],
        )
        .unwrap();
        let record_id: &[u8] = record.as_bytes();
        tx.execute(
            "INSERT INTO records (id, subject, category, purpose, key, collected_at, rule, \
             expires_at, statutory, ciphertext) VALUES ($1, $2, 'user.contact.email', \
             'account', $3, 1, 'email', 10, false, '\\x00')",
            &[&record_id, &id, &key],
        )
        .unwrap();
        tx.commit().unwrap();
        assert!(!tables_of(&mut sql, &schema).contains(&"holds".to_owned()));
    }

    let (data, _keys) = scratch.connect().unwrap();
    assert_eq!(
        version_rows(&mut scratch.sql(), &schema),
        current_versions("data")
    );
    assert_eq!(data.subject(owner.id).unwrap(), Some(owner.clone()));
    let hold = HoldRow {
        id: HoldId::random().unwrap(),
        subject: Some(owner.id),
        category: None,
        reason: "litigation".to_owned(),
        created_at: Timestamp::from_millis(2),
        ends_at: None,
        released_at: None,
    };
    data.commit(WriteBatch {
        mutations: vec![Mutation::InsertHold(hold.clone())],
        audit: vec![AuditEvent::new(EventKind::HoldPlaced, 2)],
    })
    .unwrap();
    assert!(
        data.sweep_expired(Timestamp::from_millis(20), 10, "t")
            .unwrap()
            .is_empty()
    );
    drop(data);

    // Connected again, it is current and migrates nothing more.
    let (data, _keys) = scratch.connect().unwrap();
    assert_eq!(data.holds().unwrap(), [hold]);
    assert!(data.record(record).unwrap().is_some(), "the hold keeps it");
    assert_eq!(
        version_rows(&mut scratch.sql(), &schema),
        current_versions("data")
    );
}

/// A data schema left by the build before media objects (version 3) is brought to the current
/// version by the next connect, keeping what it held; a subject of it can then hold media
/// objects, which its holds keep like its records.
#[test]
fn a_version_3_data_schema_is_migrated_on_connect() {
    let url = database_or_skip!("a_version_3_data_schema_is_migrated_on_connect");
    let scratch = Scratch::new(&url);
    drop(scratch.connect().unwrap());
    let schema = scratch.schema("data");
    let owner = subject_row();
    let hold = HoldId::random().unwrap();
    {
        // What that build's migrations did: the schema, its version table, migrations 001 to
        // 003 and their version rows, in one transaction.
        let mut sql = scratch.sql();
        let mut tx = sql.transaction().unwrap();
        tx.batch_execute(&format!(
            "DROP SCHEMA \"{schema}\" CASCADE;
             CREATE SCHEMA \"{schema}\";
             CREATE TABLE \"{schema}\".schema_version (
                 version    INTEGER     NOT NULL PRIMARY KEY CHECK (version >= 1),
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             );
             SET LOCAL search_path TO \"{schema}\";"
        ))
        .unwrap();
        tx.batch_execute(include_str!("../../migrations/data/001_initial.sql"))
            .unwrap();
        tx.batch_execute(include_str!(
            "../../migrations/data/002_consent_keys_policies.sql"
        ))
        .unwrap();
        tx.batch_execute(include_str!("../../migrations/data/003_holds.sql"))
            .unwrap();
        tx.batch_execute("INSERT INTO schema_version (version) VALUES (1), (2), (3)")
            .unwrap();
        let (id, lookup, key): (&[u8], &[u8], &[u8]) =
            (owner.id.as_bytes(), &owner.lookup, owner.key.as_bytes());
        tx.execute(
            "INSERT INTO subjects (id, lookup, profile, key, created_at, last_active_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &id,
                &lookup,
                &owner.profile,
                &key,
                &owner.created_at.as_millis(),
                &owner.last_active_at.as_millis(),
            ],
        )
        .unwrap();
        let hold_id: &[u8] = hold.as_bytes();
        tx.execute(
            "INSERT INTO holds (id, subject, reason, created_at) VALUES ($1, $2, 'case', 1)",
            &[&hold_id, &id],
        )
        .unwrap();
        tx.commit().unwrap();
        assert!(!tables_of(&mut sql, &schema).contains(&"media".to_owned()));
    }

    let (data, _keys) = scratch.connect().unwrap();
    assert_eq!(
        version_rows(&mut scratch.sql(), &schema),
        current_versions("data")
    );
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
        created_at: Timestamp::from_millis(2),
        processed_at: None,
        rule: "photo".to_owned(),
        expires_at: Some(Timestamp::from_millis(10)),
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
        data.claim_expired_media(Timestamp::from_millis(20), 10, "t")
            .unwrap()
            .is_empty(),
        "the hold keeps it"
    );
    drop(data);

    // Connected again, it is current and migrates nothing more.
    let (data, _keys) = scratch.connect().unwrap();
    assert_eq!(data.media(media.id).unwrap(), Some(media));
    assert_eq!(
        version_rows(&mut scratch.sql(), &schema),
        current_versions("data")
    );
}

/// A data schema left by the build before data-subject requests (version 4) is brought to the
/// current version by the next connect, keeping what it held; a subject of it can then have
/// requests, disclosures and notifications, which outlive its row.
#[test]
fn a_version_4_data_schema_is_migrated_on_connect() {
    let url = database_or_skip!("a_version_4_data_schema_is_migrated_on_connect");
    let scratch = Scratch::new(&url);
    drop(scratch.connect().unwrap());
    let schema = scratch.schema("data");
    let owner = subject_row();
    let media = MediaId::random().unwrap();
    {
        // What that build's migrations did: the schema, its version table, migrations 001 to
        // 004 and their version rows, in one transaction.
        let mut sql = scratch.sql();
        let mut tx = sql.transaction().unwrap();
        tx.batch_execute(&format!(
            "DROP SCHEMA \"{schema}\" CASCADE;
             CREATE SCHEMA \"{schema}\";
             CREATE TABLE \"{schema}\".schema_version (
                 version    INTEGER     NOT NULL PRIMARY KEY CHECK (version >= 1),
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             );
             SET LOCAL search_path TO \"{schema}\";"
        ))
        .unwrap();
        for migration in [
            include_str!("../../migrations/data/001_initial.sql"),
            include_str!("../../migrations/data/002_consent_keys_policies.sql"),
            include_str!("../../migrations/data/003_holds.sql"),
            include_str!("../../migrations/data/004_media.sql"),
        ] {
            tx.batch_execute(migration).unwrap();
        }
        tx.batch_execute("INSERT INTO schema_version (version) VALUES (1), (2), (3), (4)")
            .unwrap();
        let (id, lookup, key): (&[u8], &[u8], &[u8]) =
            (owner.id.as_bytes(), &owner.lookup, owner.key.as_bytes());
        tx.execute(
            "INSERT INTO subjects (id, lookup, profile, key, created_at, last_active_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &id,
                &lookup,
                &owner.profile,
                &key,
                &owner.created_at.as_millis(),
                &owner.last_active_at.as_millis(),
            ],
        )
        .unwrap();
        let media_id: &[u8] = media.as_bytes();
        tx.execute(
            "INSERT INTO media (id, subject, category, purpose, key, wrapped_key, location, \
             content_type, size, stored_size, state, created_at, rule, statutory) \
             VALUES ($1, $2, 'user.media.photo', 'account', $3, '\\x09', 'objects/a', \
             'image/jpeg', 1, 1, 'stored', 1, 'photo', FALSE)",
            &[&media_id, &id, &key],
        )
        .unwrap();
        tx.commit().unwrap();
        assert!(!tables_of(&mut sql, &schema).contains(&"requests".to_owned()));
    }

    let (data, _keys) = scratch.connect().unwrap();
    assert_eq!(
        version_rows(&mut scratch.sql(), &schema),
        current_versions("data")
    );
    assert_eq!(data.subject(owner.id).unwrap(), Some(owner.clone()));
    assert!(data.media(media).unwrap().is_some());
    let request = request_row(owner.id);
    let disclosure = disclosure_row(owner.id);
    let notice = notification_row(request.id, owner.id);
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

    // Connected again, it is current, migrates nothing more, and kept them past the subject.
    let (data, _keys) = scratch.connect().unwrap();
    assert_eq!(
        version_rows(&mut scratch.sql(), &schema),
        current_versions("data")
    );
    assert_eq!(data.subject(owner.id).unwrap(), None);
    assert_eq!(
        data.requests(&RequestFilter::default()).unwrap(),
        vec![request.clone()]
    );
    assert_eq!(data.disclosures_of(owner.id).unwrap(), [disclosure]);
    assert_eq!(data.notifications_of(request.id).unwrap(), [notice]);
}

#[test]
fn a_pool_of_one_connection_serves_many_threads() {
    let url = database_or_skip!("a_pool_of_one_connection_serves_many_threads");
    let scratch = Scratch::new(&url);
    let options = PoolOptions::default().with_max_connections(1);
    let (data, _keys) =
        PostgresStores::connect_with(&url, &url, &url, &scratch.namespace, options).unwrap();
    let data = Arc::new(data);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let data = data.clone();
            std::thread::spawn(move || {
                for i in 0..10 {
                    let event = AuditEvent::new(EventKind::Decision, i).with_actor(format!("{t}"));
                    data.commit(WriteBatch {
                        mutations: vec![],
                        audit: vec![event],
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let entries = data.audit_entries(1, 100).unwrap();
    assert_eq!(entries.len(), 40);
    custodia_audit::verify(&entries).unwrap();
}

#[test]
fn a_lost_connection_fails_one_call_and_is_replaced() {
    let url = database_or_skip!("a_lost_connection_fails_one_call_and_is_replaced");
    let scratch = Scratch::new(&url);
    // A per-test application name lets the test kill its own connections and no one else's.
    let separator = if url.contains('?') { '&' } else { '?' };
    let tagged = format!("{url}{separator}application_name={}", scratch.namespace);
    let options = PoolOptions::default().with_max_connections(1);
    let (data, _keys) =
        PostgresStores::connect_with(&tagged, &tagged, &tagged, &scratch.namespace, options)
            .unwrap();
    assert_eq!(data.audit_head().unwrap(), None);
    let killed: Vec<bool> = scratch
        .sql()
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&scratch.namespace],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        !killed.is_empty() && killed.iter().all(|k| *k),
        "{killed:?}"
    );
    // The pooled connection is dead: its next use fails as unavailable (never as corrupt or a
    // wrong answer), after which the pool opens a fresh one.
    match data.audit_head() {
        Ok(head) => assert_eq!(head, None),
        Err(err) => assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}"),
    }
    assert_eq!(data.audit_head().unwrap(), None);
    data.commit(WriteBatch {
        mutations: vec![],
        audit: tricky_events(1),
    })
    .unwrap();
}

fn key_meta() -> KeyStoreMeta {
    KeyStoreMeta {
        verifier: vec![0x7E; 40],
        kdf: None,
        created_at: Timestamp::from_millis(1),
    }
}

/// An epoch whose wrapped bytes are `byte` repeated, so its key can be searched for in dumps.
fn epoch_row(id: u32, byte: u8) -> EpochRow {
    EpochRow {
        id,
        wrapped: vec![byte; 48],
        created_at: Timestamp::from_millis(i64::from(id)),
    }
}

/// How `epoch_row(_, byte)`'s key appears in a row's text form (bytea is printed as hex).
fn epoch_hex(byte: u8) -> String {
    format!("{byte:02x}").repeat(48)
}

fn data_key_row(epoch: u32) -> DataKeyRow {
    DataKeyRow {
        id: KeyId::random().unwrap(),
        owner: SubjectId::random().unwrap(),
        kind: DataKeyKind::Subject,
        epoch,
        wrapped: vec![0x5D; 60],
        created_at: Timestamp::from_millis(2),
    }
}

/// The tables of `schema`, by name.
fn tables_of(sql: &mut postgres::Client, schema: &str) -> Vec<String> {
    sql.query(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 \
         ORDER BY 1",
        &[&schema],
    )
    .unwrap()
    .iter()
    .map(|row| row.get(0))
    .collect()
}

/// Every row of every table of `schema` as text: what a data dump of the schema holds.
fn dump_of(sql: &mut postgres::Client, schema: &str) -> String {
    let mut dump = String::new();
    for table in tables_of(sql, schema) {
        for row in sql
            .query(
                &format!("SELECT t::text FROM \"{schema}\".\"{table}\" t"),
                &[],
            )
            .unwrap()
        {
            dump.push_str(row.get::<_, &str>(0));
            dump.push('\n');
        }
    }
    dump
}

/// The `pending` flag of each epoch row, by id.
fn pending_flags(scratch: &Scratch) -> Vec<(i64, bool)> {
    scratch
        .sql()
        .query(
            &format!(
                "SELECT id, pending FROM \"{}\".epochs ORDER BY id",
                scratch.schema("keyring")
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

fn schema_exists(scratch: &Scratch, suffix: &str) -> bool {
    scratch
        .sql()
        .query_one(
            "SELECT to_regnamespace($1) IS NOT NULL",
            &[&scratch.schema(suffix)],
        )
        .unwrap()
        .get(0)
}

#[test]
fn epochs_live_only_in_the_keyring_schema() {
    let url = database_or_skip!("epochs_live_only_in_the_keyring_schema");
    for layout in LAYOUTS {
        let scratch = Scratch::new(&url);
        let (_data, keys) = scratch.connect_as(layout).unwrap();
        keys.initialise(&key_meta(), &epoch_row(1, 0xE1)).unwrap();
        keys.add_epoch(&epoch_row(2, 0xE2)).unwrap();
        keys.insert_data_keys(&[data_key_row(1), data_key_row(2)])
            .unwrap();
        let mut sql = scratch.sql();
        let (keys_schema, ring_schema) = (scratch.schema("keys"), scratch.schema("keyring"));
        assert_eq!(
            tables_of(&mut sql, &keys_schema),
            ["data_keys", "meta", "schema_version"]
        );
        assert_eq!(
            tables_of(&mut sql, &ring_schema),
            ["epochs", "schema_version"]
        );
        let foreign_keys: i64 = sql
            .query_one(
                "SELECT count(*) FROM information_schema.table_constraints \
                 WHERE table_schema = $1 AND constraint_type = 'FOREIGN KEY'",
                &[&keys_schema],
            )
            .unwrap()
            .get(0);
        assert_eq!(foreign_keys, 0, "{layout:?}");
        let keys_dump = dump_of(&mut sql, &keys_schema);
        let ring_dump = dump_of(&mut sql, &ring_schema);
        for byte in [0xE1, 0xE2] {
            assert!(!keys_dump.contains(&epoch_hex(byte)), "{layout:?}");
            assert!(ring_dump.contains(&epoch_hex(byte)), "{layout:?}");
        }
        // Every epoch is live once initialise has returned.
        assert_eq!(
            pending_flags(&scratch),
            [(1, false), (2, false)],
            "{layout:?}"
        );
    }
}

#[test]
fn an_old_key_schema_dump_is_useless_once_its_epoch_is_destroyed() {
    let url = database_or_skip!("an_old_key_schema_dump_is_useless_once_its_epoch_is_destroyed");
    for layout in LAYOUTS {
        let scratch = Scratch::new(&url);
        let (_data, keys) = scratch.connect_as(layout).unwrap();
        keys.initialise(&key_meta(), &epoch_row(1, 0xE1)).unwrap();
        let rows: Vec<DataKeyRow> = (0..3).map(|_| data_key_row(1)).collect();
        keys.insert_data_keys(&rows).unwrap();
        let (keys_schema, backup) = (scratch.schema("keys"), scratch.schema("backup"));
        let mut sql = scratch.sql();
        // The backup: every row of the key schema, taken before the rotation.
        sql.batch_execute(&format!(
            "CREATE SCHEMA \"{backup}\";
             CREATE TABLE \"{backup}\".meta AS TABLE \"{keys_schema}\".meta;
             CREATE TABLE \"{backup}\".data_keys AS TABLE \"{keys_schema}\".data_keys;"
        ))
        .unwrap();
        assert!(!dump_of(&mut sql, &backup).contains(&epoch_hex(0xE1)));

        // Rotate: a new epoch, every data key re-wrapped under it, the old epoch destroyed.
        keys.add_epoch(&epoch_row(2, 0xE2)).unwrap();
        let rewrapped: Vec<DataKeyRow> = keys
            .data_keys_in_epoch(1, None, 100)
            .unwrap()
            .into_iter()
            .map(|row| DataKeyRow {
                epoch: 2,
                wrapped: vec![0x6D; 60],
                ..row
            })
            .collect();
        assert_eq!(rewrapped.len(), rows.len());
        keys.rewrap_data_keys(&rewrapped).unwrap();
        keys.destroy_epoch(1).unwrap();

        // Restore the old dump over the live key schema.
        sql.batch_execute(&format!(
            "DELETE FROM \"{keys_schema}\".data_keys;
             INSERT INTO \"{keys_schema}\".data_keys SELECT * FROM \"{backup}\".data_keys;"
        ))
        .unwrap();
        for row in &rows {
            let restored = keys.data_key(row.id).unwrap().unwrap();
            assert_eq!(restored.epoch, 1, "{layout:?}");
        }
        // Epoch 1 exists nowhere: not in the keyring, and its key in no schema of the
        // deployment, the backup included.
        assert_eq!(keys.epochs().unwrap(), [epoch_row(2, 0xE2)], "{layout:?}");
        for suffix in ["data", "keys", "keyring", "backup"] {
            let dump = dump_of(&mut sql, &scratch.schema(suffix));
            assert!(!dump.contains(&epoch_hex(0xE1)), "{layout:?}: {suffix}");
        }
        // Nor can the store be talked into using it again.
        let err = keys.insert_data_keys(&[data_key_row(1)]).unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
        assert!(err.to_string().contains("epoch 1"), "{err}");
    }
}

#[test]
fn a_key_schema_without_its_keyring_is_refused() {
    let url = database_or_skip!("a_key_schema_without_its_keyring_is_refused");
    for layout in LAYOUTS {
        for how in ["dropped", "emptied"] {
            let scratch = Scratch::new(&url);
            let (_data, keys) = scratch.connect_as(layout).unwrap();
            keys.initialise(&key_meta(), &epoch_row(1, 0xE1)).unwrap();
            keys.insert_data_keys(&[data_key_row(1)]).unwrap();
            drop(keys);
            let ring = scratch.schema("keyring");
            let statement = match how {
                "dropped" => format!("DROP SCHEMA \"{ring}\" CASCADE"),
                _ => format!("DROP TABLE \"{ring}\".epochs, \"{ring}\".schema_version"),
            };
            scratch.sql().batch_execute(&statement).unwrap();
            for _ in 0..2 {
                let err = scratch.connect_as(layout).map(|_| ()).unwrap_err();
                assert!(
                    matches!(err, StoreError::Unavailable(_)),
                    "{layout:?} {how}: {err:?}"
                );
                let message = err.to_string();
                assert!(message.contains(&ring), "{message}");
                assert!(message.contains("restore it"), "{message}");
                assert!(!message.contains("custodia:custodia"), "{message}");
            }
            // Nothing was created in its place.
            assert_eq!(schema_exists(&scratch, "keyring"), how == "emptied");
            assert!(tables_of(&mut scratch.sql(), &ring).is_empty());
        }
    }
}

#[test]
fn a_data_schema_without_its_key_schema_is_refused() {
    let url = database_or_skip!("a_data_schema_without_its_key_schema_is_refused");
    let scratch = Scratch::new(&url);
    drop(scratch.connect().unwrap());
    let keys_schema = scratch.schema("keys");
    scratch
        .sql()
        .batch_execute(&format!("DROP SCHEMA \"{keys_schema}\" CASCADE"))
        .unwrap();
    let err = scratch.connect().map(|_| ()).unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains(&keys_schema), "{err}");
    assert!(!schema_exists(&scratch, "keys"));
}

/// A crash after the keyring committed the first epoch and before the metadata committed
/// leaves a pending epoch without metadata: it is no live key, and the next initialisation
/// replaces it.
#[test]
fn an_initialisation_that_crashed_before_its_metadata_is_redone() {
    let url = database_or_skip!("an_initialisation_that_crashed_before_its_metadata_is_redone");
    for layout in LAYOUTS {
        let scratch = Scratch::new(&url);
        let (_data, keys) = scratch.connect_as(layout).unwrap();
        scratch
            .sql()
            .execute(
                &format!(
                    "INSERT INTO \"{}\".epochs (id, wrapped, created_at, pending) \
                     VALUES (1, $1, 1, TRUE)",
                    scratch.schema("keyring")
                ),
                &[&vec![0xAAu8; 48]],
            )
            .unwrap();
        assert_eq!(keys.meta().unwrap(), None);
        assert_eq!(keys.epochs().unwrap(), [], "{layout:?}");
        // No data key may be wrapped by it: the next initialisation deletes it.
        let err = keys.insert_data_keys(&[data_key_row(1)]).unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
        // Reopening leaves it pending: without metadata it is not the first epoch of anything.
        let (_data, keys) = scratch.connect_as(layout).unwrap();
        assert_eq!(pending_flags(&scratch), [(1, true)]);
        keys.initialise(&key_meta(), &epoch_row(1, 0xE1)).unwrap();
        assert_eq!(keys.epochs().unwrap(), [epoch_row(1, 0xE1)], "{layout:?}");
        assert_eq!(pending_flags(&scratch), [(1, false)]);
        keys.insert_data_keys(&[data_key_row(1)]).unwrap();
    }
}

/// A crash after the metadata committed and before the first epoch was marked live: the epoch
/// is the store's, it is settled at the next open, and from then on it is never replaced.
#[test]
fn an_initialisation_that_crashed_after_its_metadata_is_settled_at_open() {
    let url =
        database_or_skip!("an_initialisation_that_crashed_after_its_metadata_is_settled_at_open");
    for layout in LAYOUTS {
        let scratch = Scratch::new(&url);
        let (_data, keys) = scratch.connect_as(layout).unwrap();
        let (keys_schema, ring) = (scratch.schema("keys"), scratch.schema("keyring"));
        let epoch = epoch_row(1, 0xE1);
        let meta = key_meta();
        let mut sql = scratch.sql();
        sql.execute(
            &format!(
                "INSERT INTO \"{ring}\".epochs (id, wrapped, created_at, pending) \
                 VALUES ($1, $2, $3, TRUE)"
            ),
            &[
                &i64::from(epoch.id),
                &epoch.wrapped,
                &epoch.created_at.as_millis(),
            ],
        )
        .unwrap();
        sql.execute(
            &format!(
                "INSERT INTO \"{keys_schema}\".meta (verifier, kdf, created_at) \
                 VALUES ($1, $2, $3)"
            ),
            &[&meta.verifier, &meta.kdf, &meta.created_at.as_millis()],
        )
        .unwrap();
        // Already the store's epoch for a handle that was open through the crash.
        assert_eq!(
            keys.epochs().unwrap(),
            std::slice::from_ref(&epoch),
            "{layout:?}"
        );
        let err = keys.initialise(&meta, &epoch_row(1, 0xBB)).unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        // The next open marks it live.
        let (_data, keys) = scratch.connect_as(layout).unwrap();
        assert_eq!(pending_flags(&scratch), [(1, false)], "{layout:?}");
        // So losing the metadata now cannot get it replaced.
        sql.batch_execute(&format!("DELETE FROM \"{keys_schema}\".meta"))
            .unwrap();
        let err = keys.initialise(&meta, &epoch_row(1, 0xBB)).unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        assert_eq!(keys.epochs().unwrap(), [epoch], "{layout:?}");
    }
}

/// A lost or emptied key schema beside a live keyring: initialising again is refused, and the
/// epochs that wrap every data key in the key schema's backups are left as they were.
#[test]
fn a_live_keyring_is_never_overwritten_when_the_metadata_is_missing() {
    let url = database_or_skip!("a_live_keyring_is_never_overwritten_when_the_metadata_is_missing");
    for layout in LAYOUTS {
        let scratch = Scratch::new(&url);
        let (_data, keys) = scratch.connect_as(layout).unwrap();
        keys.initialise(&key_meta(), &epoch_row(1, 0xE1)).unwrap();
        keys.add_epoch(&epoch_row(2, 0xE2)).unwrap();
        drop(keys);
        // A lone keyring is what a crash while creating a deployment leaves, so it opens; the
        // data schema goes too, or its missing key schema would be refused first.
        scratch
            .sql()
            .batch_execute(&format!(
                "DROP SCHEMA \"{}\", \"{}\" CASCADE",
                scratch.schema("keys"),
                scratch.schema("data")
            ))
            .unwrap();
        let (_data, keys) = scratch.connect_as(layout).unwrap();
        assert_eq!(keys.meta().unwrap(), None);
        let err = keys
            .initialise(&key_meta(), &epoch_row(3, 0xBB))
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("restore it from backup"), "{message}");
        assert!(message.contains(&scratch.schema("keyring")), "{message}");
        assert_eq!(
            keys.epochs().unwrap(),
            [epoch_row(1, 0xE1), epoch_row(2, 0xE2)],
            "{layout:?}"
        );
        assert_eq!(
            keys.meta().unwrap(),
            None,
            "the failed attempt left nothing"
        );
    }
}

/// Data keys stored under an epoch while it is being destroyed: either the store refuses them
/// or the destruction waits and finds them, never an epoch gone with keys still under it. A
/// race, so several rounds: without the epoch lock one round in a few goes wrong.
#[test]
fn data_keys_never_land_under_an_epoch_being_destroyed() {
    let url = database_or_skip!("data_keys_never_land_under_an_epoch_being_destroyed");
    for layout in LAYOUTS {
        let scratch = Scratch::new(&url);
        let (_data, keys) = scratch.connect_as(layout).unwrap();
        let keys = Arc::new(keys);
        keys.initialise(&key_meta(), &epoch_row(1, 0xE1)).unwrap();
        for old in 1..=4u32 {
            let new = old + 1;
            keys.add_epoch(&epoch_row(new, 0xE0)).unwrap();
            let start = Arc::new(Barrier::new(4));
            let writers: Vec<_> = (0..3)
                .map(|_| {
                    let keys = keys.clone();
                    let start = start.clone();
                    std::thread::spawn(move || {
                        start.wait();
                        for _ in 0..40 {
                            match keys.insert_data_keys(&[data_key_row(old)]) {
                                Ok(()) => {}
                                Err(StoreError::NotFound(_)) => return,
                                Err(other) => panic!("{other:?}"),
                            }
                        }
                    })
                })
                .collect();
            start.wait();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let moved: Vec<DataKeyRow> = keys
                    .data_keys_in_epoch(old, None, 1_000)
                    .unwrap()
                    .into_iter()
                    .map(|row| DataKeyRow { epoch: new, ..row })
                    .collect();
                keys.rewrap_data_keys(&moved).unwrap();
                match keys.destroy_epoch(old) {
                    Ok(()) => break,
                    Err(StoreError::Conflict(_)) => {
                        assert!(Instant::now() < deadline, "{layout:?}: never destroyed");
                    }
                    Err(other) => panic!("{other:?}"),
                }
            }
            for writer in writers {
                writer.join().unwrap();
            }
            assert_eq!(keys.epochs().unwrap(), [epoch_row(new, 0xE0)]);
            assert_eq!(
                keys.data_keys_in_epoch(old, None, 1_000).unwrap(),
                [],
                "{layout:?}: keys left under destroyed epoch {old}"
            );
        }
    }
}

/// Not a timed test: prints the audit append rate for the benchmark to compare against
/// (`cargo test -p custodia-store-postgres --release -- --ignored --nocapture`).
#[test]
#[ignore = "a measurement, not a check; run with --ignored --nocapture"]
fn audit_append_rate() {
    let url = database_or_skip!("audit_append_rate");
    let scratch = Scratch::new(&url);
    let (data, _keys) = PostgresStores::connect(&url, &scratch.namespace).unwrap();
    for batch_size in [1usize, 10, 100, 1_000] {
        let total = if batch_size == 1 { 2_000 } else { 30_000 };
        let started = Instant::now();
        for b in 0..total / batch_size {
            let audit = (0..batch_size)
                .map(|i| {
                    AuditEvent::new(
                        EventKind::RecordRead,
                        i64::try_from(b * batch_size + i).unwrap(),
                    )
                    .with_subject(format!("sub_{i:032x}"))
                    .with_actor("key_benchmark")
                    .with_purpose("ai_transcription")
                    .with_reason("consent.given")
                })
                .collect();
            data.commit(WriteBatch {
                mutations: vec![],
                audit,
            })
            .unwrap();
        }
        let rate = total as f64 / started.elapsed().as_secs_f64();
        eprintln!("batches of {batch_size:>5}: {rate:>10.0} audit events/s");
    }
}
