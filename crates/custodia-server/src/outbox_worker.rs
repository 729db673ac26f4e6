//! Webhook delivery of the outbox (design invariant 4): [`Deliverer`] claims the notifications due
//! now ([`Vault::claim_due_notifications`]), POSTs each as JSON to the webhook configured for its
//! recipient, and records how it went ([`Vault::record_delivery`]: failures retry with backoff,
//! and give up after ten attempts); [`spawn_deliverer`] runs it on a schedule
//! ([`WebhookConfig::interval`]) until [`DelivererHandle::stop`], like the retention sweeper.
//!
//! Where messages go: a recipient's policy name (`Tencent Bugly SDK`) maps to its endpoint in
//! [`WebhookConfig::recipients`]; messages to the subject themself (recipient `subject`: identity
//! verification codes) go to [`WebhookConfig::subject_url`], the operator's SMS or e-mail
//! sender. A recipient without an endpoint fails as `webhook.not_configured` (and is retried:
//! configuring it in time is enough).
//!
//! The request: `POST` with `Content-Type: application/json`, the body of
//! [`OutgoingNotification::body`] (`id`, `kind`, `request`, `subject`, `recipient`, `attempt`,
//! `created_at`, `payload`), and the headers
//! - `Custodia-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`, the MAC under the shared
//!   signing secret of the bytes `<t>.<body>` (see [`sign`]; receivers check it with [`verify`]
//!   or the same three lines in their language, and refuse a `t` far from their clock to stop
//!   replays);
//! - `Custodia-Notification: <id>` and `Custodia-Attempt: <n>` (a retry of a message whose
//!   answer was lost arrives again with the same id: receivers should treat it idempotently).
//!
//! Any 2xx answer is a delivery; another status is `webhook.status_<code>`, no answer within the
//! timeout `webhook.timeout`, no connection `webhook.connect`. Redirects are not followed. Logs
//! carry counts, notification ids, recipients' policy names and codes, never a URL (it may hold
//! a token), the secret or a payload.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use custodia_vault::outbox::SUBJECT_CHANNEL;
use custodia_vault::{DeliveryOutcome, OutgoingNotification, Vault};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use zeroize::Zeroizing;

use crate::ServerState;
use crate::error::{ApiError, blocking};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "Custodia-Signature";
/// The header naming the notification.
pub const NOTIFICATION_HEADER: &str = "Custodia-Notification";
/// The header numbering the attempt.
pub const ATTEMPT_HEADER: &str = "Custodia-Attempt";
/// How often `custodia serve` delivers unless configured otherwise.
pub const DEFAULT_DELIVERY_INTERVAL: Duration = Duration::from_secs(30);
/// How long a webhook may take to answer unless configured otherwise.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Notifications claimed (and sent concurrently) at a time.
pub const DELIVERY_BATCH: usize = 32;
/// The shortest signing secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;
/// The actor recorded on delivery audit entries.
pub const DELIVERY_ACTOR: &str = "outbox";
/// Batches per run at most, so one run ends even if messages keep falling due.
const MAX_BATCHES_PER_RUN: usize = 64;

/// Where and how to deliver.
#[derive(Clone)]
pub struct WebhookConfig {
    /// Each recipient's endpoint, by the recipient's name in the policy.
    pub recipients: BTreeMap<String, reqwest::Url>,
    /// The endpoint for messages to the subject (verification codes): the operator's SMS or
    /// e-mail sender.
    pub subject_url: Option<reqwest::Url>,
    /// The signing secret shared with the receivers.
    pub secret: Arc<Zeroizing<Vec<u8>>>,
    /// How often the scheduled deliverer runs (the first run is at start); zero: never.
    pub interval: Duration,
    /// How long one webhook may take to answer.
    pub timeout: Duration,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URLs may carry tokens and the secret is a secret: names and counts only.
        f.debug_struct("WebhookConfig")
            .field("recipients", &self.recipients.keys().collect::<Vec<_>>())
            .field("subject_url", &self.subject_url.is_some())
            .field("secret", &"redacted")
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A webhook setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfigError(pub String);

impl std::fmt::Display for WebhookConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WebhookConfigError {}

/// Parses an endpoint: an absolute `http` or `https` URL. The error never repeats the URL.
pub fn parse_endpoint(what: &str, text: &str) -> Result<reqwest::Url, WebhookConfigError> {
    let url = reqwest::Url::parse(text.trim())
        .map_err(|_| WebhookConfigError(format!("{what} is not an absolute URL")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(WebhookConfigError(format!(
            "{what} must be an http or https URL with a host"
        )));
    }
    Ok(url)
}

impl WebhookConfig {
    /// A configuration with the default interval and timeout; the secret must have at least
    /// [`MIN_SECRET_BYTES`] bytes.
    pub fn new(
        recipients: BTreeMap<String, reqwest::Url>,
        subject_url: Option<reqwest::Url>,
        secret: Zeroizing<Vec<u8>>,
    ) -> Result<Self, WebhookConfigError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(WebhookConfigError(format!(
                "the webhook signing secret must have at least {MIN_SECRET_BYTES} bytes"
            )));
        }
        Ok(Self {
            recipients,
            subject_url,
            secret: Arc::new(secret),
            interval: DEFAULT_DELIVERY_INTERVAL,
            timeout: DEFAULT_WEBHOOK_TIMEOUT,
        })
    }

    /// The endpoint of a recipient (`subject` for the subject's channel).
    pub fn endpoint(&self, recipient: &str) -> Option<&reqwest::Url> {
        if recipient == SUBJECT_CHANNEL {
            self.subject_url.as_ref()
        } else {
            self.recipients.get(recipient)
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        for nibble in [byte >> 4, byte & 0x0f] {
            out.push(char::from(
                DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
    out
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut context = hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    context.sign()
}

/// The `Custodia-Signature` value of `body` sent at `timestamp` (Unix seconds):
/// `t=<timestamp>,v1=<hex HMAC-SHA256 under secret of "<timestamp>.<body>">`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex(mac(secret, timestamp, body).as_ref())
    )
}

/// Checks a `Custodia-Signature` value as a receiver would: well formed, `t` within `tolerance`
/// seconds of `now` (Unix seconds), and a `v1` MAC of `<t>.<body>` under `secret` (compared in
/// constant time).
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance: i64) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.push(value),
            _ => {}
        }
    }
    let Some(timestamp) = timestamp else {
        return false;
    };
    if now.abs_diff(timestamp) > tolerance.unsigned_abs() {
        return false;
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut message = Vec::with_capacity(body.len() + 24);
    message.extend_from_slice(timestamp.to_string().as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    signatures.into_iter().any(|signature| {
        unhex(signature).is_some_and(|tag| hmac::verify(&key, &message, &tag).is_ok())
    })
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let digits = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(digits, 16).ok()
        })
        .collect()
}

/// What one delivery run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Notifications claimed and attempted.
    pub attempted: usize,
    /// Delivered (a 2xx answer).
    pub delivered: usize,
    /// Failed this time (retried later, or given up).
    pub failed: usize,
}

/// Delivers the outbox: claims due notifications and POSTs them, signed.
#[derive(Debug, Clone)]
pub struct Deliverer {
    vault: Arc<Vault>,
    config: Arc<WebhookConfig>,
    client: reqwest::Client,
}

impl Deliverer {
    /// A deliverer for `vault` with `config`. Fails if the HTTP client cannot be built (no TLS
    /// roots, for example).
    pub fn new(vault: Arc<Vault>, config: Arc<WebhookConfig>) -> Result<Self, WebhookConfigError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("custodia/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| WebhookConfigError("the webhook HTTP client cannot be built".into()))?;
        Ok(Self {
            vault,
            config,
            client,
        })
    }

    /// The deliverer of a server's state, if webhooks are configured.
    pub fn for_state(state: &ServerState) -> Option<Result<Self, WebhookConfigError>> {
        let config = state.webhooks()?.clone();
        Some(Self::new(state.vault().clone(), config))
    }

    /// How long a claim lasts: long enough for the slowest answer, so no other instance sends
    /// the same message meanwhile; a deliverer that dies lets it lapse.
    fn lease(&self) -> Duration {
        self.config
            .timeout
            .saturating_mul(2)
            .saturating_add(Duration::from_secs(30))
    }

    /// Delivers everything due now, a batch at a time, and records each outcome. Errors from
    /// the store end the run (the next one carries on); a webhook's failure is an outcome, not
    /// an error.
    pub async fn run_once(&self) -> Result<DeliveryReport, ApiError> {
        let started = Instant::now();
        let mut report = DeliveryReport::default();
        for _ in 0..MAX_BATCHES_PER_RUN {
            let vault = self.vault.clone();
            let lease = self.lease();
            let claimed =
                blocking(move || Ok(vault.claim_due_notifications(DELIVERY_BATCH, lease)?)).await?;
            let count = claimed.len();
            if count == 0 {
                break;
            }
            let timestamp = self.vault.now().as_millis().div_euclid(1000);
            let mut sends = JoinSet::new();
            for notification in claimed {
                let client = self.client.clone();
                let config = self.config.clone();
                sends.spawn(async move {
                    let outcome = send(&client, &config, timestamp, &notification).await;
                    (notification.id, notification.recipient.clone(), outcome)
                });
            }
            let mut outcomes = Vec::with_capacity(count);
            while let Some(joined) = sends.join_next().await {
                if let Ok(outcome) = joined {
                    outcomes.push(outcome);
                }
            }
            for (id, recipient, outcome) in &outcomes {
                match outcome {
                    DeliveryOutcome::Delivered => report.delivered += 1,
                    DeliveryOutcome::Failed { code } => {
                        report.failed += 1;
                        tracing::warn!(
                            target: "custodia::outbox",
                            notification = %id,
                            recipient = recipient.as_str(),
                            code = code.as_str(),
                            "webhook delivery failed; it is retried with backoff"
                        );
                    }
                }
            }
            report.attempted += count;
            let vault = self.vault.clone();
            blocking(move || {
                for (id, _, outcome) in outcomes {
                    vault.record_delivery(id, &outcome, DELIVERY_ACTOR)?;
                }
                Ok(())
            })
            .await?;
            if count < DELIVERY_BATCH {
                break;
            }
        }
        if report.attempted > 0 {
            tracing::info!(
                target: "custodia::outbox",
                attempted = report.attempted,
                delivered = report.delivered,
                failed = report.failed,
                took_ms = started.elapsed().as_secs_f64() * 1000.0,
                "outbox delivery finished"
            );
        }
        Ok(report)
    }
}

/// Sends one notification and says how it went.
async fn send(
    client: &reqwest::Client,
    config: &WebhookConfig,
    timestamp: i64,
    notification: &OutgoingNotification,
) -> DeliveryOutcome {
    let failed = |code: String| DeliveryOutcome::Failed { code };
    let Some(url) = config.endpoint(&notification.recipient) else {
        return failed("webhook.not_configured".into());
    };
    let body = notification.body();
    let signature = sign(&config.secret, timestamp, &body);
    let answer = client
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .header(NOTIFICATION_HEADER, notification.id.to_string())
        .header(ATTEMPT_HEADER, notification.attempt.to_string())
        .body(body.to_vec())
        .send()
        .await;
    match answer {
        Ok(response) if response.status().is_success() => DeliveryOutcome::Delivered,
        Ok(response) => failed(format!("webhook.status_{}", response.status().as_u16())),
        Err(err) if err.is_timeout() => failed("webhook.timeout".into()),
        Err(err) if err.is_connect() => failed("webhook.connect".into()),
        Err(_) => failed("webhook.request".into()),
    }
}

/// The scheduled deliverer, running.
#[derive(Debug)]
pub struct DelivererHandle {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl DelivererHandle {
    /// Stops the schedule: no run starts after this, and one under way is let finish (its
    /// requests are bounded by the timeout) before this returns.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Starts the scheduled deliverer: a run at once, then one every [`WebhookConfig::interval`].
/// Returns `None` when no webhooks are configured, the interval is zero, or the HTTP client
/// cannot be built (logged). Must be called inside a Tokio runtime.
pub fn spawn_deliverer(state: &ServerState) -> Option<DelivererHandle> {
    let every = state.webhooks()?.interval;
    if every.is_zero() {
        return None;
    }
    let deliverer = match Deliverer::for_state(state)? {
        Ok(deliverer) => deliverer,
        Err(err) => {
            tracing::error!(target: "custodia::outbox", error = %err, "webhook delivery is off");
            return None;
        }
    };
    tracing::info!(
        target: "custodia::outbox",
        interval_seconds = every.as_secs_f64(),
        recipients = deliverer.config.recipients.len(),
        subject_channel = deliverer.config.subject_url.is_some(),
        "outbox deliverer scheduled"
    );
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                _ = ticker.tick() => {}
            }
            if let Err(err) = deliverer.run_once().await {
                tracing::warn!(
                    target: "custodia::outbox",
                    code = err.code(),
                    "outbox delivery failed; the next run carries on"
                );
            }
        }
    });
    Some(DelivererHandle {
        stop: Some(stop),
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_the_same_secret_body_and_a_fresh_time() {
        let secret = b"0123456789abcdef-secret";
        let body = br#"{"id":"ntf_1"}"#;
        let header = sign(secret, 1_770_714_000, body);
        assert!(header.starts_with("t=1770714000,v1="));
        assert_eq!(header.len(), "t=1770714000,v1=".len() + 64);
        assert!(verify(secret, &header, body, 1_770_714_000, 300));
        assert!(verify(secret, &header, body, 1_770_714_299, 300));
        assert!(!verify(secret, &header, body, 1_770_714_301, 300), "stale");
        assert!(!verify(
            b"another secret, 16+",
            &header,
            body,
            1_770_714_000,
            300
        ));
        assert!(!verify(secret, &header, b"{}", 1_770_714_000, 300));
        let moved = header.replace("t=1770714000", "t=1770714001");
        assert!(!verify(secret, &moved, body, 1_770_714_000, 300));
        assert!(!verify(secret, "v1=00", body, 0, 300));
        assert!(!verify(secret, "t=0,v1=zz", body, 0, 300));
    }

    #[test]
    fn endpoints_are_absolute_http_urls_and_errors_do_not_repeat_them() {
        assert!(parse_endpoint("x", "https://hooks.example.com/custodia?token=abc").is_ok());
        assert!(parse_endpoint("x", "http://127.0.0.1:9000/").is_ok());
        for bad in ["ftp://example.com/", "/relative", "https://", "not a url"] {
            let err = parse_endpoint("the endpoint", bad).unwrap_err();
            assert!(!err.0.contains(bad), "{err}");
        }
        let short = WebhookConfig::new(BTreeMap::new(), None, Zeroizing::new(b"short".to_vec()));
        assert!(short.is_err());
        let config = WebhookConfig::new(
            BTreeMap::from([(
                "Tencent Bugly SDK".to_owned(),
                parse_endpoint("x", "https://bugly.example.com/erase").unwrap(),
            )]),
            Some(parse_endpoint("x", "https://sms.example.com/send?key=SECRET").unwrap()),
            Zeroizing::new(vec![7; 32]),
        )
        .unwrap();
        assert!(config.endpoint("subject").is_some());
        assert!(config.endpoint("Tencent Bugly SDK").is_some());
        assert!(config.endpoint("Alipay SDK").is_none());
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("SECRET") && !shown.contains("example.com"),
            "{shown}"
        );
    }
}
