//! `gate_http`: gate decisions over HTTP on loopback against the same server's `/healthz`, under
//! the same load generator and concurrency, with p50 and p99 latency for both. The server runs
//! in this process on a real socket (a fresh SQLite vault under the DeepPiano policy, one subject
//! with consents); the load generator is a minimal HTTP/1.1 keep-alive client, one thread per
//! connection, so both sides pay the same client costs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use custodia_core::ManualClock;
use custodia_policy::{CheckedPolicy, Source};
use custodia_store::ConsentEventKind;
use custodia_store_sqlite::SqliteStores;
use custodia_vault::{NewConsent, NewSubject, RootKeySource, Vault};

use crate::{BenchError, Figure};

/// The largest operator policy, as for the in-process figure.
const POLICY: &str = include_str!("../../../examples/deeppiano.toml");

/// The design's target: decisions at 70% of `/healthz`'s rate.
const TARGET: f64 = 0.7;

/// Measured phases of each endpoint, alternated.
const ROUNDS: usize = 4;

/// One load run's outcome.
#[derive(Debug, Clone)]
pub struct Load {
    /// Requests per second, all connections together.
    pub rate: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th-percentile latency.
    pub p99: Duration,
}

fn other(message: impl Into<String>) -> BenchError {
    BenchError::Other(message.into())
}

/// One keep-alive connection sending the same request over and over.
struct Connection {
    reader: BufReader<TcpStream>,
    request: Vec<u8>,
}

impl Connection {
    fn open(addr: SocketAddr, request: Vec<u8>) -> Result<Self, BenchError> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Self {
            reader: BufReader::new(stream),
            request,
        })
    }

    /// Sends the request and reads the whole response; returns its status.
    fn round_trip(&mut self) -> Result<u16, BenchError> {
        self.reader.get_mut().write_all(&self.request)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| other("the server sent no status line"))?;
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value
                    .trim()
                    .parse()
                    .map_err(|_| other("bad content-length"))?;
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok(status)
    }
}

/// Drives `connections` connections for `duration` with `request`; every response must be 200.
pub fn drive(
    addr: SocketAddr,
    request: &[u8],
    connections: usize,
    duration: Duration,
) -> Result<Load, BenchError> {
    let start = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let request = request.to_vec();
            std::thread::spawn(move || -> Result<Vec<Duration>, BenchError> {
                let mut connection = Connection::open(addr, request)?;
                let mut latencies = Vec::new();
                let begin = Instant::now();
                while begin.elapsed() < duration {
                    let sent = Instant::now();
                    let status = connection.round_trip()?;
                    if status != 200 {
                        return Err(other(format!("the server answered {status}")));
                    }
                    latencies.push(sent.elapsed());
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        let done = worker
            .join()
            .map_err(|_| other("a load-generator thread panicked"))??;
        latencies.extend(done);
    }
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    latencies.sort_unstable();
    let pick = |q: f64| {
        let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(index).copied().unwrap_or_default()
    };
    Ok(Load {
        rate: latencies.len() as f64 / elapsed,
        p50: pick(0.50),
        p99: pick(0.99),
    })
}

fn request(method: &str, path: &str, token: Option<&str>, body: &str) -> Vec<u8> {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: bench\r\n");
    if let Some(token) = token {
        text.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if !body.is_empty() {
        text.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    text.push_str("\r\n");
    text.push_str(body);
    text.into_bytes()
}

/// Measures decisions over HTTP against `/healthz`.
///
/// # Errors
/// [`BenchError`] if the server cannot start or a request fails.
pub fn run(
    work: &Path,
    quick: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Figure>, BenchError> {
    let checked = CheckedPolicy::from_source(Source::new("deeppiano.toml", POLICY))
        .map_err(|e| other(format!("gate bench policy: {e}")))?;
    let (data, keys) = SqliteStores::open(&work.join("http"))?;
    let clock = ManualClock::new(
        custodia_core::Timestamp::parse("2026-02-10T09:00:00Z")
            .map_err(|e| other(e.to_string()))?,
    );
    let vault = Arc::new(Vault::open(
        Arc::new(data),
        Arc::new(keys),
        checked,
        Arc::new(clock),
        &RootKeySource::KeyFile(work.join("http.key")),
    )?);
    let subject = vault.create_subject(
        &NewSubject {
            external_id: "bench-user".into(),
            jurisdiction: "CN".into(),
            birth_date: Some("1990-01-01".into()),
            age_band: None,
            guardian: None,
        },
        "bench",
    )?;
    let policy = vault.policy();
    let purpose = policy
        .purposes
        .iter()
        .find(|p| p.separate_consent)
        .ok_or_else(|| other("the DeepPiano policy has no separate-consent purpose"))?;
    let purpose_key = purpose.key.get_ref().clone();
    let category = purpose
        .categories
        .first()
        .map(|c| c.get_ref().clone())
        .ok_or_else(|| other("purpose without categories"))?;
    vault.record_consent(
        subject.id,
        &NewConsent {
            purposes: vec![purpose_key.clone()],
            kind: ConsentEventKind::Given,
            guardian: None,
            guardian_verified: false,
            policy_version: None,
            method: "bench".into(),
            expires_at: None,
        },
        "bench",
    )?;
    let token = vault.create_api_key("bench", true, &[], "bench")?.token;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let state = custodia_server::ServerState::new(vault, custodia_server::ServerOptions::default());
    let server = runtime.spawn(custodia_server::run(listener, state, async move {
        let _ = stopped.await;
    }));

    let connections = 16;
    let phase = Duration::from_millis(if quick { 250 } else { 2_000 });
    let health = request("GET", "/healthz", None, "");
    let body = format!(
        r#"{{"subject":"{}","purpose":"{purpose_key}","categories":["{category}"]}}"#,
        subject.id
    );
    let decide = request("POST", "/v1/decisions", Some(&token), &body);
    progress(&format!(
        "gate_http: {connections} connections, {ROUNDS} rounds of /healthz and /v1/decisions, {} ms each",
        phase.as_millis()
    ));
    // Warm up both paths, then alternate in ABBA order (health, decisions, decisions, health,
    // ...): this machine's speed drifts over seconds, and the order spreads the drift over both.
    drive(addr, &health, connections, phase / 2)?;
    drive(addr, &decide, connections, phase / 2)?;
    let mut healths = Vec::with_capacity(ROUNDS);
    let mut decisions = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            healths.push(drive(addr, &health, connections, phase)?);
            decisions.push(drive(addr, &decide, connections, phase)?);
        } else {
            decisions.push(drive(addr, &decide, connections, phase)?);
            healths.push(drive(addr, &health, connections, phase)?);
        }
    }
    let _ = stop.send(());
    runtime
        .block_on(server)
        .map_err(|_| other("the server task failed"))??;

    let mean_rate =
        |loads: &[Load]| loads.iter().map(|l| l.rate).sum::<f64>() / loads.len().max(1) as f64;
    let worst = |loads: &[Load], pick: fn(&Load) -> Duration| {
        loads.iter().map(pick).max().unwrap_or_default()
    };
    let health_rate = mean_rate(&healths);
    let decide_rate = mean_rate(&decisions);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let ratio = decide_rate / health_rate;
    // Each round's own ratio, so one report shows how far the machine moved during the run.
    let rounds = healths
        .iter()
        .zip(&decisions)
        .map(|(health, decide)| format!("{:.2}", decide.rate / health.rate.max(1e-9)))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(vec![Figure {
        name: "gate_http".to_owned(),
        unit: "requests/s".to_owned(),
        rate: decide_rate,
        baseline: format!(
            "GET /healthz on the same server, same load generator, {connections} keep-alive connections on loopback; \
             decisions p50 {:.2} ms p99 {:.2} ms, healthz p50 {:.2} ms p99 {:.2} ms (the worst phase of each); \
             ratio by round {rounds}",
            ms(worst(&decisions, |l| l.p50)),
            ms(worst(&decisions, |l| l.p99)),
            ms(worst(&healths, |l| l.p50)),
            ms(worst(&healths, |l| l.p99)),
        ),
        baseline_rate: health_rate,
        ratio,
        target: format!("ratio >= {TARGET}"),
        meets_target: ratio >= TARGET,
    }])
}
