//! Where the reference backend keeps what it learns: SQLite (one file, the embedded default) or
//! PostgreSQL (a server, for several instances and more devices). One interface, [`Store`], with
//! the same schema and the same guarantees on both: a batch is one transaction, every insert is
//! idempotent (the copy the broker delivers again is stored once, whichever instance it reaches),
//! and nothing is confirmed to the broker before the commit.

mod postgres;
mod sqlite;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dese_backend::{DeviceKey, Event};
use dese_protocol::Telemetry;

use postgres::PgStore;
use sqlite::SqliteStore;

/// Which database: a SQLite file, or a PostgreSQL server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file, created when missing.
    Sqlite(PathBuf),
    /// A PostgreSQL server: `postgres://user[:password]@host[:port]/database`.
    Postgres(String),
}

impl Database {
    /// `postgres://...` or `postgresql://...` is a server; anything else a SQLite path.
    pub fn parse(text: &str) -> Self {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Self::Postgres(text.to_string())
        } else {
            Self::Sqlite(PathBuf::from(text))
        }
    }
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "{}", path.display()),
            // Without the password, if the URL has one.
            Self::Postgres(url) => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
                match rest.split_once('@') {
                    Some((userinfo, host)) if userinfo.contains(':') => {
                        let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
                        write!(f, "{scheme}://{user}:***@{host}")
                    }
                    _ => f.write_str(url),
                }
            }
        }
    }
}

impl From<PathBuf> for Database {
    fn from(path: PathBuf) -> Self {
        Self::Sqlite(path)
    }
}

impl From<&PathBuf> for Database {
    fn from(path: &PathBuf) -> Self {
        Self::Sqlite(path.clone())
    }
}

impl From<&Path> for Database {
    fn from(path: &Path) -> Self {
        Self::Sqlite(path.to_path_buf())
    }
}

/// Why the database could not be opened, written or read.
///
/// Each says what failed in full, the database's own words included; there is no `source()`
/// to print them a second time.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite refused.
    #[error("SQLite: {0}")]
    Sqlite(rusqlite::Error),
    /// PostgreSQL refused, or the connection failed.
    #[error("PostgreSQL: {}", postgres_text(.0))]
    Postgres(tokio_postgres::Error),
    /// No connection could be had from the pool.
    #[error("no PostgreSQL connection: {0}")]
    Pool(String),
    /// The database holds a schema of another version.
    #[error("{0}")]
    Schema(String),
    /// The thread that writes to SQLite stopped.
    #[error("the SQLite writer stopped")]
    Stopped,
}

/// tokio-postgres says "db error" and keeps the server's message in its source: that message.
fn postgres_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Postgres(e)
    }
}

/// What the database holds, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Telemetry rows.
    pub telemetry: u64,
    /// Status rows (every status received, last wills included).
    pub statuses: u64,
    /// Alert rows.
    pub alerts: u64,
    /// Commands by outcome: `completed`, `failed`, `timed_out`, `late`.
    pub commands: Vec<(String, u64)>,
    /// Messages refused, by reason.
    pub dropped: Vec<(String, u64)>,
    /// Devices by presence state.
    pub presence: Vec<(String, u64)>,
}

/// What one batch stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// For each event of the batch, in order: whether it added something new (false for a
    /// copy already stored, and for events that store nothing).
    pub new: Vec<bool>,
}

/// The database: SQLite or PostgreSQL behind one interface.
#[derive(Debug)]
pub struct Store(Inner);

#[derive(Debug)]
enum Inner {
    /// Its calls run on a blocking thread each.
    Sqlite(Arc<SqliteStore>),
    Postgres(PgStore),
}

impl Store {
    /// Opens the database and brings its schema up to date (SQLite: creates the file; a file of
    /// another schema version is refused. PostgreSQL: the embedded migrations not yet applied
    /// run, one instance at a time).
    pub async fn open(db: &Database) -> Result<Self, StoreError> {
        Ok(Self(match db {
            Database::Sqlite(path) => {
                let path = path.clone();
                let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path))
                    .await
                    .map_err(|_| StoreError::Stopped)??;
                Inner::Sqlite(Arc::new(store))
            }
            Database::Postgres(url) => Inner::Postgres(PgStore::open(url).await?),
        }))
    }

    /// Stores a batch of events in one transaction: every row or none. Telemetry, statuses,
    /// presence, alerts, command outcomes and refusals; other events store nothing.
    pub async fn write(&self, events: Arc<Vec<Event>>) -> Result<Written, StoreError> {
        match &self.0 {
            Inner::Sqlite(store) => {
                let store = Arc::clone(store);
                blocking(move || store.write(&events)).await
            }
            Inner::Postgres(store) => store.write(&events).await,
        }
    }

    /// A command's name, when this backend sent it.
    pub async fn command_sent(
        &self,
        id: &str,
        device: &DeviceKey,
        name: &str,
    ) -> Result<(), StoreError> {
        match &self.0 {
            Inner::Sqlite(store) => {
                let (store, id, device, name) = (
                    Arc::clone(store),
                    id.to_string(),
                    device.clone(),
                    name.to_string(),
                );
                blocking(move || store.command_sent(&id, &device, &name)).await
            }
            Inner::Postgres(store) => store.command_sent(id, device, name).await,
        }
    }

    /// The outcome recorded for a command, if any.
    pub async fn outcome_of(&self, id: &str) -> Result<Option<String>, StoreError> {
        match &self.0 {
            Inner::Sqlite(store) => {
                let (store, id) = (Arc::clone(store), id.to_string());
                blocking(move || store.outcome_of(&id)).await
            }
            Inner::Postgres(store) => store.outcome_of(id).await,
        }
    }

    /// Everything, counted.
    pub async fn summary(&self) -> Result<Summary, StoreError> {
        match &self.0 {
            Inner::Sqlite(store) => {
                let store = Arc::clone(store);
                blocking(move || store.summary()).await
            }
            Inner::Postgres(store) => store.summary().await,
        }
    }
}

/// Runs a SQLite call on a blocking thread.
async fn blocking<R: Send + 'static>(
    call: impl FnOnce() -> rusqlite::Result<R> + Send + 'static,
) -> Result<R, StoreError> {
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => result.map_err(StoreError::Sqlite),
        Err(_) => Err(StoreError::Stopped),
    }
}

/// The summary's grouped counts, the same SQL on both databases.
const COMMANDS_BY_OUTCOME: &str =
    "SELECT outcome, count(*) FROM commands GROUP BY outcome ORDER BY outcome";
const DROPPED_BY_REASON: &str = "SELECT reason, count FROM dropped ORDER BY reason";
const PRESENCE_BY_STATE: &str =
    "SELECT state, count(*) FROM presence GROUP BY state ORDER BY state";

/// FNV-1a over a reading's values (not its JSON): the same reading gives the same digest
/// whatever JSON it arrived as, in this process and the next, on both databases (it is stored).
fn reading_digest(t: &Telemetry) -> i64 {
    let (s, m) = (&t.sensors, &t.metadata);
    let mut hash = Fnv::default();
    for value in [
        Some(s.ph.get()),
        Some(s.chlorine.get()),
        Some(s.temperature.get()),
        s.flow_rate.map(|f| f.get()),
    ] {
        hash.option(value.map(f64::to_bits));
    }
    hash.option(s.orp.map(|v| i64::from(v) as u64));
    hash.option(s.tds.map(u64::from));
    hash.option(m.battery.map(|b| u64::from(b.get())));
    hash.option(m.signal_strength.map(|r| i64::from(r.get()) as u64));
    hash.bytes(m.firmware_version.as_bytes());
    hash.signed()
}

/// FNV-1a over the canonical encoding of an alert (what the SDK would send for it).
fn digest(bytes: &[u8]) -> i64 {
    let mut hash = Fnv::default();
    hash.bytes(bytes);
    hash.signed()
}

/// 64-bit FNV-1a: small, and the same in every process (the digests are stored).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn bytes(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// A value that may be absent: absent and zero differ.
    fn option(&mut self, value: Option<u64>) {
        match value {
            Some(v) => {
                self.bytes(&[1]);
                self.bytes(&v.to_le_bytes());
            }
            None => self.bytes(&[0]),
        }
    }

    /// The databases' integers are signed: the same 64 bits.
    fn signed(&self) -> i64 {
        self.0 as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_is_shown_without_its_password() {
        let show = |text: &str| Database::parse(text).to_string();
        assert_eq!(show("postgres://dese@db/dese"), "postgres://dese@db/dese");
        assert_eq!(
            show("postgresql://dese:s3cret@db:5433/dese"),
            "postgresql://dese:***@db:5433/dese"
        );
        assert_eq!(show("data/dese.sqlite"), "data/dese.sqlite");
        assert_eq!(
            Database::parse("postgres.sqlite"),
            Database::Sqlite(PathBuf::from("postgres.sqlite"))
        );
    }
}
