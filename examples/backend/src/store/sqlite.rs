//! The SQLite store: one file, written in batches, one transaction each, every insert
//! idempotent. Its calls are synchronous; [`super::Store`] runs them on blocking threads.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use dese_backend::{DeviceKey, Event, Outcome};
use dese_protocol::{Alert, CommandResponse, DeviceState, Status, Telemetry};
use rusqlite::{Connection, OptionalExtension, Statement, Transaction, params};

use super::{
    COMMANDS_BY_OUTCOME, DROPPED_BY_REASON, PRESENCE_BY_STATE, StoreError, Summary, Written,
    digest, reading_digest,
};

/// The schema's version, kept in SQLite's `user_version`.
const VERSION: i64 = 1;

/// A reading, a status and an alert each have a unique key, so that the copy the broker delivers
/// again after a crash or a lost connection is stored once. Two distinct readings that share a
/// timestamp (whole seconds, 100 ms intervals) differ in their digest and are both kept. The
/// key's index also serves the usual query, a device's readings over time.
const SCHEMA: &str = "
CREATE TABLE telemetry (
    org TEXT NOT NULL, device TEXT NOT NULL, timestamp TEXT NOT NULL,
    ph REAL NOT NULL, chlorine REAL NOT NULL, temperature REAL NOT NULL,
    orp INTEGER, tds INTEGER, flow_rate REAL, battery INTEGER, signal_strength INTEGER,
    firmware_version TEXT NOT NULL,
    digest INTEGER NOT NULL,
    UNIQUE (org, device, timestamp, digest)
);
CREATE TABLE status (
    org TEXT NOT NULL, device TEXT NOT NULL, state TEXT NOT NULL, timestamp TEXT NOT NULL,
    firmware_version TEXT NOT NULL,
    UNIQUE (org, device, timestamp, state)
);
CREATE TABLE presence (
    org TEXT NOT NULL, device TEXT NOT NULL, state TEXT NOT NULL,
    PRIMARY KEY (org, device)
);
CREATE TABLE alerts (
    org TEXT NOT NULL, device TEXT NOT NULL, severity TEXT NOT NULL, message TEXT NOT NULL,
    sensor TEXT, value REAL, threshold REAL, timestamp TEXT NOT NULL,
    digest INTEGER NOT NULL,
    UNIQUE (org, device, timestamp, digest)
);
CREATE TABLE commands (
    command_id TEXT PRIMARY KEY, org TEXT NOT NULL, device TEXT NOT NULL, command TEXT,
    outcome TEXT NOT NULL, attempts INTEGER, response TEXT, error TEXT
);
CREATE TABLE dropped (
    reason TEXT PRIMARY KEY, count INTEGER NOT NULL
);
";

/// The database file.
#[derive(Debug)]
pub(super) struct SqliteStore {
    db: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`. A file made by another version of this
    /// schema is refused, naming the versions.
    pub(super) fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        // In WAL mode, NORMAL survives a crash of the process (what is committed stays); only a
        // power loss may lose the last transactions, which the broker then delivers again.
        db.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = db.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        let tables: i64 = db.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |row| row.get(0),
        )?;
        match (version, tables) {
            (VERSION, _) => {}
            (0, 0) => {
                db.execute_batch(SCHEMA)?;
                db.pragma_update(None, "user_version", VERSION)?;
            }
            (found, _) => {
                return Err(StoreError::Schema(format!(
                    "{} holds schema version {found}, this backend writes version {VERSION}: \
                     move the file away or use another --db",
                    path.display()
                )));
            }
        }
        Ok(Self { db: Mutex::new(db) })
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores a batch of events in one transaction: every row or none. Telemetry, statuses,
    /// presence, alerts, command outcomes and refusals; other events store nothing.
    pub(super) fn write(&self, events: &[Event]) -> rusqlite::Result<Written> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let mut new = Vec::with_capacity(events.len());
        {
            // Prepared once a batch: most events are readings.
            let mut readings = tx.prepare(INSERT_READING)?;
            for event in events {
                new.push(write_event(&tx, &mut readings, event)?);
            }
        }
        tx.commit()?;
        Ok(Written { new })
    }

    /// A command's name, when this backend sent it.
    pub(super) fn command_sent(
        &self,
        id: &str,
        device: &DeviceKey,
        name: &str,
    ) -> rusqlite::Result<()> {
        self.db().execute(
            "INSERT INTO commands (command_id, org, device, command, outcome) VALUES (?1, ?2, ?3, ?4, 'pending')
             ON CONFLICT (command_id) DO UPDATE SET command = excluded.command",
            params![id, device.org.as_str(), device.device.as_str(), name],
        )?;
        Ok(())
    }

    /// The outcome recorded for a command, if any.
    pub(super) fn outcome_of(&self, id: &str) -> rusqlite::Result<Option<String>> {
        self.db()
            .query_row(
                "SELECT outcome FROM commands WHERE command_id = ?1",
                params![id],
                |row| row.get(0),
            )
            .optional()
    }

    /// Everything, counted.
    pub(super) fn summary(&self) -> rusqlite::Result<Summary> {
        let db = self.db();
        let count = |table: &str| -> rusqlite::Result<u64> {
            db.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                row.get(0)
            })
        };
        let grouped = |sql: &str| -> rusqlite::Result<Vec<(String, u64)>> {
            let mut statement = db.prepare(sql)?;
            let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect()
        };
        Ok(Summary {
            telemetry: count("telemetry")?,
            statuses: count("status")?,
            alerts: count("alerts")?,
            commands: grouped(COMMANDS_BY_OUTCOME)?,
            dropped: grouped(DROPPED_BY_REASON)?,
            presence: grouped(PRESENCE_BY_STATE)?,
        })
    }
}

const INSERT_READING: &str = "INSERT OR IGNORE INTO telemetry VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";

/// One event's rows; true when it added something not stored before.
fn write_event(
    tx: &Transaction<'_>,
    readings: &mut Statement<'_>,
    event: &Event,
) -> rusqlite::Result<bool> {
    Ok(match event {
        Event::Telemetry { device, telemetry } => telemetry_row(readings, device, telemetry)? > 0,
        Event::Status { device, status } => status_row(tx, device, status)? > 0,
        Event::PresenceChanged { device, to, .. } => presence_row(tx, device, Some(*to))? > 0,
        Event::PresenceCleared { device } => presence_row(tx, device, None)? > 0,
        Event::Alert { device, alert } => alert_row(tx, device, alert)? > 0,
        Event::Command {
            device,
            command_id,
            outcome,
        } => {
            let (label, attempts, response) = match outcome {
                Outcome::Completed(r) => ("completed", None, Some(r)),
                Outcome::Failed(r) => ("failed", None, Some(r)),
                Outcome::TimedOut { attempts } => ("timed_out", Some(*attempts), None),
            };
            finish(tx, command_id.as_str(), device, label, attempts, response)? > 0
        }
        Event::LateResponse { device, response } => {
            finish(tx, response.command_id.as_str(), device, "late", None, Some(response))? > 0
        }
        // Counted, never stored as data. A refused message the broker delivers again (it was
        // not yet acknowledged when the backend stopped) is counted again.
        Event::Dropped { reason, .. } => {
            tx.execute(
                "INSERT INTO dropped VALUES (?1, 1) ON CONFLICT (reason) DO UPDATE SET count = count + 1",
                params![reason.as_str()],
            )? > 0
        }
        _ => false,
    })
}

fn telemetry_row(
    readings: &mut Statement<'_>,
    device: &DeviceKey,
    t: &Telemetry,
) -> rusqlite::Result<usize> {
    let s = &t.sensors;
    readings.execute(params![
        device.org.as_str(),
        device.device.as_str(),
        t.timestamp.to_string(),
        s.ph.get(),
        s.chlorine.get(),
        s.temperature.get(),
        s.orp,
        s.tds,
        s.flow_rate.map(|f| f.get()),
        t.metadata.battery.map(|b| b.get()),
        t.metadata.signal_strength.map(|r| r.get()),
        t.metadata.firmware_version,
        reading_digest(t),
    ])
}

fn status_row(tx: &Transaction<'_>, device: &DeviceKey, s: &Status) -> rusqlite::Result<usize> {
    tx.prepare_cached("INSERT OR IGNORE INTO status VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![
            device.org.as_str(),
            device.device.as_str(),
            s.status.as_str(),
            s.timestamp.to_string(),
            s.firmware_version
        ])
}

fn presence_row(
    tx: &Transaction<'_>,
    device: &DeviceKey,
    state: Option<DeviceState>,
) -> rusqlite::Result<usize> {
    match state {
        Some(state) => tx
            .prepare_cached(
                "INSERT INTO presence VALUES (?1, ?2, ?3)
                 ON CONFLICT (org, device) DO UPDATE SET state = excluded.state",
            )?
            .execute(params![
                device.org.as_str(),
                device.device.as_str(),
                state.as_str()
            ]),
        None => tx
            .prepare_cached("DELETE FROM presence WHERE org = ?1 AND device = ?2")?
            .execute(params![device.org.as_str(), device.device.as_str()]),
    }
}

fn alert_row(tx: &Transaction<'_>, device: &DeviceKey, a: &Alert) -> rusqlite::Result<usize> {
    tx.prepare_cached("INSERT OR IGNORE INTO alerts VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")?
        .execute(params![
            device.org.as_str(),
            device.device.as_str(),
            a.severity.as_str(),
            a.message,
            a.sensor.as_ref().map(|s| s.as_str().to_string()),
            a.value.map(|v| v.get()),
            a.threshold.map(|v| v.get()),
            a.timestamp.to_string(),
            digest(&serde_json::to_vec(a).unwrap_or_default()),
        ])
}

fn finish(
    tx: &Transaction<'_>,
    id: &str,
    device: &DeviceKey,
    outcome: &str,
    attempts: Option<u32>,
    response: Option<&CommandResponse>,
) -> rusqlite::Result<usize> {
    let data = response
        .and_then(|r| r.response.clone())
        .map(|d| serde_json::Value::Object(d).to_string());
    let error = response.and_then(|r| r.error.clone());
    tx.prepare_cached(
        "INSERT INTO commands (command_id, org, device, outcome, attempts, response, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (command_id) DO UPDATE SET outcome = excluded.outcome,
             attempts = coalesce(excluded.attempts, attempts),
             response = excluded.response, error = excluded.error",
    )?
    .execute(params![
        id,
        device.org.as_str(),
        device.device.as_str(),
        outcome,
        attempts,
        data,
        error
    ])
}
