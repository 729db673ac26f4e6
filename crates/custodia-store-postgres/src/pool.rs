//! A small blocking connection pool with a per-connection statement cache.
//!
//! The stores are shared by many request threads, and a `postgres::Client` serves one caller at
//! a time, so each store keeps up to `max_connections` clients: a caller takes an idle one,
//! opens a new one while under the limit, or waits (bounded) for one to come back. A client
//! whose connection broke, or whose call failed as unavailable, is dropped instead of returned,
//! and the next caller opens a fresh one.
//!
//! Each connection caches its prepared statements by SQL text. Preparing costs a round trip, and
//! protocol-level prepared statements outlive the transactions they were prepared in, so a
//! statement prepared once serves every later call on that connection.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use custodia_store::StoreError;
use postgres::config::Host;
use postgres::types::ToSql;
use postgres::{Client, Config, GenericClient, NoTls, Row, Statement};

use crate::error::connect_error;

/// One pooled connection.
pub(crate) struct Conn {
    /// The driver's client.
    pub(crate) client: Client,
    /// Prepared statements by SQL text.
    pub(crate) statements: StatementCache,
    /// When it was last returned to the pool.
    idle_since: Instant,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("closed", &self.client.is_closed())
            .field("statements", &self.statements.0.len())
            .finish()
    }
}

/// Prepared statements of one connection, by SQL text.
#[derive(Debug, Default)]
pub(crate) struct StatementCache(HashMap<String, Statement>);

impl StatementCache {
    /// The statement for `sql`, prepared on `client` (the connection or a transaction on it) the
    /// first time.
    pub(crate) fn get(
        &mut self,
        client: &mut impl GenericClient,
        sql: &str,
    ) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.0.get(sql) {
            return Ok(statement.clone());
        }
        let statement = client.prepare(sql)?;
        self.0.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Executes `sql` with `params` on `client`; returns the rows affected.
    pub(crate) fn execute(
        &mut self,
        client: &mut impl GenericClient,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        let statement = self.get(client, sql)?;
        client.execute(&statement, params)
    }

    /// Runs query `sql` with `params` on `client`.
    pub(crate) fn query(
        &mut self,
        client: &mut impl GenericClient,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.get(client, sql)?;
        client.query(&statement, params)
    }

    /// Runs query `sql`, which returns at most one row.
    pub(crate) fn query_opt(
        &mut self,
        client: &mut impl GenericClient,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error> {
        let statement = self.get(client, sql)?;
        client.query_opt(&statement, params)
    }
}

/// A connection idle for this long is pinged before it is lent out again.
const PING_AFTER_IDLE: Duration = Duration::from_secs(30);
/// How long that ping may take before the connection is given up.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

struct State {
    idle: Vec<Conn>,
    /// Connections in existence: idle plus lent out plus being opened.
    open: usize,
}

/// A bounded pool of connections to one database.
pub(crate) struct Pool {
    config: Config,
    target: String,
    max: usize,
    acquire_timeout: Duration,
    state: Mutex<State>,
    returned: Condvar,
}

impl std::fmt::Debug for Pool {
    // The config holds the password: print where the pool points, never how it logs in.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("target", &self.target)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool over `config`, opening connections on demand; `max` is at least 1.
    pub(crate) fn new(config: Config, max: usize, acquire_timeout: Duration) -> Self {
        let target = describe_target(&config);
        Self {
            config,
            target,
            max: max.max(1),
            acquire_timeout,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            returned: Condvar::new(),
        }
    }

    /// Where the pool connects, as `host:port/database`, for messages.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// Runs `f` on a pooled connection and returns the connection to the pool afterwards.
    pub(crate) fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut slot = self.acquire()?;
        let result = match slot.conn.as_mut() {
            Some(conn) => f(conn),
            None => Err(StoreError::Backend(
                "pool slot without a connection".to_owned(),
            )),
        };
        if matches!(result, Err(StoreError::Unavailable(_))) {
            // The server said it is closing this session (a terminated backend's FATAL reply),
            // or the socket broke: the driver may not have seen the close yet, and lending the
            // connection out again would fail the next caller too.
            slot.conn = None;
        }
        result
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a list and a counter, consistent after every statement: a panic while
        // holding the lock cannot leave it half-updated, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn acquire(&self) -> Result<Slot<'_>, StoreError> {
        let deadline = Instant::now() + self.acquire_timeout;
        loop {
            let mut state = self.lock();
            if let Some(conn) = state.idle.pop() {
                drop(state);
                let slot = Slot {
                    pool: self,
                    conn: Some(conn),
                };
                if let Some(slot) = slot.checked() {
                    return Ok(slot);
                }
                continue;
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                // The slot is counted before connecting so that concurrent callers cannot
                // overshoot the limit; dropping it gives the count back if connecting fails.
                let mut slot = Slot {
                    pool: self,
                    conn: None,
                };
                slot.conn = Some(self.open()?);
                return Ok(slot);
            }
            let Some(left) = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            else {
                return Err(StoreError::Unavailable(format!(
                    "all {} connections to PostgreSQL at {} are busy; none came free within {} ms",
                    self.max,
                    self.target,
                    self.acquire_timeout.as_millis()
                )));
            };
            // Woken by a returned connection or a freed slot; the loop re-checks either way.
            drop(
                self.returned
                    .wait_timeout(state, left)
                    .unwrap_or_else(PoisonError::into_inner),
            );
        }
    }

    /// Opens a new connection.
    pub(crate) fn open(&self) -> Result<Conn, StoreError> {
        let client = self.config.connect(NoTls).map_err(|e| {
            connect_error(
                &e,
                &self.target,
                self.config.get_user(),
                self.config.get_password(),
            )
        })?;
        Ok(Conn {
            client,
            statements: StatementCache::default(),
            idle_since: Instant::now(),
        })
    }
}

/// A connection lent out, counted in `open` while it exists. Dropping the slot returns a live
/// connection to the pool, or gives the count back for a broken or missing one (connecting
/// failed), so a caller that fails or panics never leaks capacity.
struct Slot<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
}

impl Slot<'_> {
    /// The slot if its connection is still usable, else `None` (and the slot is given back).
    ///
    /// The driver only notices a closed socket when it next uses it, so a connection that sat
    /// idle (through a server restart, or an idle timeout in a proxy or firewall) would fail
    /// its caller's first statement. One that has been idle for a while is pinged first.
    fn checked(mut self) -> Option<Self> {
        let usable = self.conn.as_mut().is_some_and(|conn| {
            !conn.client.is_closed()
                && (conn.idle_since.elapsed() < PING_AFTER_IDLE
                    || conn.client.is_valid(PING_TIMEOUT).is_ok())
        });
        if usable {
            Some(self)
        } else {
            // Closing it here makes the drop give its count back instead of pooling it again.
            self.conn = None;
            None
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut state = self.pool.lock();
        match self.conn.take() {
            Some(mut conn) if !conn.client.is_closed() => {
                conn.idle_since = Instant::now();
                state.idle.push(conn);
            }
            _ => state.open = state.open.saturating_sub(1),
        }
        drop(state);
        self.pool.returned.notify_one();
    }
}

/// `host:port/database` of a config, for messages: no user, no password.
fn describe_target(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let port = config
                .get_ports()
                .get(index)
                .or_else(|| config.get_ports().first())
                .copied()
                .unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost".to_owned()
    } else {
        hosts.join(",")
    };
    format!(
        "{hosts}/{}",
        config.get_dbname().unwrap_or("(default database)")
    )
}
