//! `spawn_app()`: the real server on port 0 over a fresh database (a SQLite temporary directory,
//! or a fresh PostgreSQL namespace when `CUSTODIA_TEST_DATABASE_URL` is set), under the test
//! policy, with a manual clock and an admin key. Each case runs once per backend through
//! [`each_backend`].

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use custodia_core::{ManualClock, Timestamp};
use custodia_store::{DataStore, KeyStore};
use custodia_vault::{RootKeySource, Vault};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::http::{Response, send};

const ROOT_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const URL_VAR: &str = "CUSTODIA_TEST_DATABASE_URL";

/// Which database a case runs on.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    Postgres(String),
}

/// SQLite always; PostgreSQL too when the variable names a server.
pub fn backends() -> Vec<Backend> {
    let mut backends = vec![Backend::Sqlite];
    if let Some(url) = std::env::var(URL_VAR).ok().filter(|url| !url.is_empty()) {
        backends.push(Backend::Postgres(url));
    }
    backends
}

/// Runs `case` against a fresh server on each backend.
pub fn each_backend(case: impl Fn(&TestApp)) {
    for backend in backends() {
        let app = spawn_app(&backend);
        case(&app);
    }
}

/// The test policy's source.
pub fn policy_source() -> String {
    std::fs::read_to_string(policy_path()).unwrap()
}

fn policy_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/server/policy.toml")
}

/// When every test starts.
pub fn start() -> Timestamp {
    Timestamp::parse("2026-02-10T09:00:00Z").unwrap()
}

/// A running server and what tests need around it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub clock: ManualClock,
    pub vault: Arc<Vault>,
    pub data: Arc<dyn DataStore>,
    /// An admin key's bearer token.
    pub admin: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<std::thread::JoinHandle<()>>,
    scratch: Scratch,
    setup: Setup,
}

/// What a server runs with besides its database: options, policy file, media object store.
#[derive(Clone)]
pub struct Setup {
    pub options: custodia_server::ServerOptions,
    pub policy: std::path::PathBuf,
    pub objects: Option<Arc<dyn custodia_objects::ObjectStore>>,
}

impl Setup {
    /// The default options under the test policy, without media.
    pub fn new(options: custodia_server::ServerOptions) -> Self {
        Self {
            options,
            policy: policy_path(),
            objects: None,
        }
    }
}

/// Where the stores live, to open them again and to clean up after the server stops.
enum Scratch {
    Dir(tempfile::TempDir),
    Namespace { url: String, namespace: String },
}

impl Scratch {
    fn fresh(backend: &Backend) -> Self {
        match backend {
            Backend::Sqlite => Self::Dir(tempfile::tempdir().unwrap()),
            Backend::Postgres(url) => Self::Namespace {
                url: url.clone(),
                namespace: format!("t_{}", random_hex()),
            },
        }
    }

    fn stores(&self) -> (Arc<dyn DataStore>, Arc<dyn KeyStore>) {
        match self {
            Self::Dir(temp) => {
                let (data, keys) =
                    custodia_store_sqlite::SqliteStores::open(&temp.path().join("data")).unwrap();
                (Arc::new(data), Arc::new(keys))
            }
            Self::Namespace { url, namespace } => {
                let (data, keys) =
                    custodia_store_postgres::PostgresStores::connect(url, namespace).unwrap();
                (Arc::new(data), Arc::new(keys))
            }
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
        if let Scratch::Namespace { url, namespace } = &self.scratch {
            // Best effort: a schema left behind is harmless on a scratch server.
            if let Ok(mut client) = postgres::Client::connect(url, postgres::NoTls) {
                for suffix in ["data", "keys", "keyring"] {
                    let _ = client.batch_execute(&format!(
                        "DROP SCHEMA IF EXISTS {namespace}_{suffix} CASCADE"
                    ));
                }
            }
        }
    }
}

fn random_hex() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Boots the server on `backend` with the default options.
pub fn spawn_app(backend: &Backend) -> TestApp {
    spawn_app_with(backend, custodia_server::ServerOptions::default())
}

fn open_vault(
    scratch: &Scratch,
    clock: &ManualClock,
    setup: &Setup,
) -> (Arc<Vault>, Arc<dyn DataStore>) {
    let (data, keys) = scratch.stores();
    let policy = custodia_policy::load(&setup.policy).unwrap();
    assert!(policy.is_clean(), "{:#?}", policy.findings);
    let vault = Vault::open(
        data.clone(),
        keys,
        policy,
        Arc::new(clock.clone()),
        &RootKeySource::Hex(Zeroizing::new(ROOT_HEX.to_owned())),
    )
    .unwrap();
    let vault = match &setup.objects {
        Some(objects) => vault.with_media_store(objects.clone()),
        None => vault,
    };
    (Arc::new(vault), data)
}

/// Boots the server on `backend`.
pub fn spawn_app_with(backend: &Backend, options: custodia_server::ServerOptions) -> TestApp {
    spawn_app_setup(backend, Setup::new(options))
}

/// Boots the server on `backend` as `setup` says.
pub fn spawn_app_setup(backend: &Backend, setup: Setup) -> TestApp {
    spawn_app_logged(backend, setup, None)
}

/// Boots the server on `backend` as `setup` says, its runtime's threads (workers and blocking
/// pool) logging to `logs` when given, whatever the process-wide subscriber.
pub fn spawn_app_logged(
    backend: &Backend,
    setup: Setup,
    logs: Option<tracing::Dispatch>,
) -> TestApp {
    let options = setup.options;
    let scratch = Scratch::fresh(backend);
    let clock = ManualClock::new(start());
    let (vault, data) = open_vault(&scratch, &clock, &setup);
    let admin = vault
        .create_api_key("test-admin", true, &[], "test")
        .unwrap()
        .token
        .to_string();
    let state = custodia_server::ServerState::new(vault.clone(), options);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        let _guard = logs.map(|logs| {
            let guard = tracing::dispatcher::set_default(&logs);
            // Each runtime thread keeps the subscriber as its default for its whole life.
            builder.on_thread_start(move || {
                std::mem::forget(tracing::dispatcher::set_default(&logs));
            });
            guard
        });
        let runtime = builder.worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            custodia_server::run(listener, state, async {
                let _ = stop.await;
            })
            .await
            .unwrap();
        });
    });
    TestApp {
        addr,
        clock,
        vault,
        data,
        admin,
        shutdown: Some(shutdown),
        server: Some(server),
        scratch,
        setup,
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

impl TestApp {
    /// Another vault on the same stores: a second instance of the deployment.
    pub fn another_vault(&self) -> Arc<Vault> {
        open_vault(&self.scratch, &self.clock, &self.setup).0
    }

    /// The SQLite data directory; `None` on PostgreSQL.
    pub fn data_dir(&self) -> Option<std::path::PathBuf> {
        match &self.scratch {
            Scratch::Dir(temp) => Some(temp.path().join("data")),
            Scratch::Namespace { .. } => None,
        }
    }

    /// A request with a bearer token and raw headers and body.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Response {
        let auth = token.map(bearer);
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(auth) = &auth {
            all.push(("Authorization", auth));
        }
        send(self.addr, method, path, &all, body)
    }

    /// A GET.
    pub fn get(&self, path: &str, token: &str) -> Response {
        self.raw("GET", path, Some(token), &[], None)
    }

    /// A request with a JSON body.
    pub fn json(&self, method: &str, path: &str, token: &str, body: &Value) -> Response {
        let bytes = serde_json::to_vec(body).unwrap();
        self.raw(
            method,
            path,
            Some(token),
            &[("Content-Type", "application/json")],
            Some(&bytes),
        )
    }

    /// A service key bound to `purposes`.
    pub fn service_key(&self, purposes: &[&str]) -> String {
        let purposes: Vec<String> = purposes.iter().map(|p| (*p).to_owned()).collect();
        self.vault
            .create_api_key("test-service", false, &purposes, "test")
            .unwrap()
            .token
            .to_string()
    }

    /// Registers a subject with this profile (fields merged over an adult in CN).
    pub fn subject_with(&self, extra: Value) -> String {
        let mut body = json!({
            "external_id": format!("user-{}", random_hex()),
            "jurisdiction": "CN",
            "birth_date": "1990-04-01",
        });
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        let response = self.json("POST", "/v1/subjects", &self.admin, &body);
        response.expect(201).json()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Registers an adult subject.
    pub fn subject(&self) -> String {
        self.subject_with(json!({}))
    }

    /// Records a consent event for `purposes`.
    pub fn consent(&self, subject: &str, kind: &str, purposes: &[&str]) -> Response {
        self.consent_with(subject, json!({ "kind": kind, "purposes": purposes }))
    }

    /// Records a consent event from a full body (`method` added when absent).
    pub fn consent_with(&self, subject: &str, mut body: Value) -> Response {
        if body.get("method").is_none() {
            body["method"] = json!("app_dialog");
        }
        self.json(
            "POST",
            &format!("/v1/subjects/{subject}/consents"),
            &self.admin,
            &body,
        )
    }

    /// Writes a text value.
    pub fn write(
        &self,
        token: &str,
        subject: &str,
        category: &str,
        purpose: &str,
        value: &str,
    ) -> Response {
        self.json(
            "PUT",
            &format!("/v1/subjects/{subject}/records/{category}"),
            token,
            &json!({ "purpose": purpose, "value": value }),
        )
    }

    /// Reads a category for a purpose.
    pub fn read(&self, token: &str, subject: &str, category: &str, purpose: &str) -> Response {
        self.get(
            &format!("/v1/subjects/{subject}/records/{category}?purpose={purpose}"),
            token,
        )
    }

    /// Asks the gate one question.
    pub fn decide(&self, token: &str, subject: &str, purpose: &str, categories: &[&str]) -> Value {
        let response = self.json(
            "POST",
            "/v1/decisions",
            token,
            &json!({ "subject": subject, "purpose": purpose, "categories": categories }),
        );
        response.expect(200).json()["decisions"][0].clone()
    }

    /// The audit chain's length, once the gate-decision entries handed to the group-commit
    /// writer are durable.
    pub fn audit_len(&self) -> u64 {
        self.vault.flush_audit().unwrap();
        self.data
            .audit_head()
            .unwrap()
            .map_or(0, |anchor| anchor.seq)
    }

    /// How many records the store holds.
    pub fn record_count(&self) -> u64 {
        self.data.count_records().unwrap()
    }
}

/// The reason codes of a decision or a `gate.denied` body's details.
pub fn reasons(value: &Value) -> Vec<String> {
    value["reasons"]
        .as_array()
        .unwrap_or_else(|| panic!("no reasons in {value}"))
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}
