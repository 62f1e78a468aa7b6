//! Where the reference backend keeps what it learns: one SQLite file.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use dese_backend::{DeviceKey, Outcome};
use dese_protocol::{Alert, CommandResponse, DeviceState, Status, Telemetry};
use rusqlite::{Connection, OptionalExtension, params};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS telemetry (
    org TEXT NOT NULL, device TEXT NOT NULL, timestamp TEXT NOT NULL,
    ph REAL NOT NULL, chlorine REAL NOT NULL, temperature REAL NOT NULL,
    orp INTEGER, tds INTEGER, flow_rate REAL, battery INTEGER, signal_strength INTEGER,
    firmware_version TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS telemetry_device ON telemetry (org, device, timestamp);
CREATE TABLE IF NOT EXISTS status (
    org TEXT NOT NULL, device TEXT NOT NULL, state TEXT NOT NULL, timestamp TEXT NOT NULL,
    firmware_version TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS presence (
    org TEXT NOT NULL, device TEXT NOT NULL, state TEXT NOT NULL,
    PRIMARY KEY (org, device)
);
CREATE TABLE IF NOT EXISTS alerts (
    org TEXT NOT NULL, device TEXT NOT NULL, severity TEXT NOT NULL, message TEXT NOT NULL,
    sensor TEXT, value REAL, threshold REAL, timestamp TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS commands (
    command_id TEXT PRIMARY KEY, org TEXT NOT NULL, device TEXT NOT NULL, command TEXT,
    outcome TEXT NOT NULL, attempts INTEGER, response TEXT, error TEXT
);
CREATE TABLE IF NOT EXISTS dropped (
    reason TEXT PRIMARY KEY, count INTEGER NOT NULL
);
";

/// The database. Every method is one short statement; callers on an async runtime may call
/// them directly.
#[derive(Debug)]
pub struct Store {
    db: Mutex<Connection>,
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

impl Store {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.execute_batch(SCHEMA)?;
        Ok(Self { db: Mutex::new(db) })
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One telemetry message.
    pub fn telemetry(&self, device: &DeviceKey, t: &Telemetry) -> rusqlite::Result<()> {
        let s = &t.sensors;
        self.db().execute(
            "INSERT INTO telemetry VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
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
            ],
        )?;
        Ok(())
    }

    /// One status message, last wills included.
    pub fn status(&self, device: &DeviceKey, s: &Status) -> rusqlite::Result<()> {
        self.db().execute(
            "INSERT INTO status VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                device.org.as_str(),
                device.device.as_str(),
                s.status.as_str(),
                s.timestamp.to_string(),
                s.firmware_version
            ],
        )?;
        Ok(())
    }

    /// A device's presence now.
    pub fn presence(&self, device: &DeviceKey, state: Option<DeviceState>) -> rusqlite::Result<()> {
        let db = self.db();
        match state {
            Some(state) => db.execute(
                "INSERT INTO presence VALUES (?1, ?2, ?3)
                 ON CONFLICT (org, device) DO UPDATE SET state = excluded.state",
                params![device.org.as_str(), device.device.as_str(), state.as_str()],
            )?,
            None => db.execute(
                "DELETE FROM presence WHERE org = ?1 AND device = ?2",
                params![device.org.as_str(), device.device.as_str()],
            )?,
        };
        Ok(())
    }

    /// One alert.
    pub fn alert(&self, device: &DeviceKey, a: &Alert) -> rusqlite::Result<()> {
        self.db().execute(
            "INSERT INTO alerts VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                device.org.as_str(),
                device.device.as_str(),
                a.severity.as_str(),
                a.message,
                a.sensor.as_ref().map(|s| s.as_str().to_string()),
                a.value.map(|v| v.get()),
                a.threshold.map(|v| v.get()),
                a.timestamp.to_string()
            ],
        )?;
        Ok(())
    }

    /// A command's name, when this backend sent it.
    pub fn command_sent(&self, id: &str, device: &DeviceKey, name: &str) -> rusqlite::Result<()> {
        self.db().execute(
            "INSERT INTO commands (command_id, org, device, command, outcome) VALUES (?1, ?2, ?3, ?4, 'pending')
             ON CONFLICT (command_id) DO UPDATE SET command = excluded.command",
            params![id, device.org.as_str(), device.device.as_str(), name],
        )?;
        Ok(())
    }

    /// How a command ended.
    pub fn command_outcome(
        &self,
        id: &str,
        device: &DeviceKey,
        outcome: &Outcome,
    ) -> rusqlite::Result<()> {
        let (label, attempts, response) = match outcome {
            Outcome::Completed(r) => ("completed", None, Some(r)),
            Outcome::Failed(r) => ("failed", None, Some(r)),
            Outcome::TimedOut { attempts } => ("timed_out", Some(*attempts), None),
        };
        self.finish(id, device, label, attempts, response)
    }

    /// A response that came after its command timed out: the device did run it.
    pub fn late_response(&self, device: &DeviceKey, r: &CommandResponse) -> rusqlite::Result<()> {
        self.finish(r.command_id.as_str(), device, "late", None, Some(r))
    }

    fn finish(
        &self,
        id: &str,
        device: &DeviceKey,
        outcome: &str,
        attempts: Option<u32>,
        response: Option<&CommandResponse>,
    ) -> rusqlite::Result<()> {
        let data = response
            .and_then(|r| r.response.clone())
            .map(|d| serde_json::Value::Object(d).to_string());
        let error = response.and_then(|r| r.error.clone());
        self.db().execute(
            "INSERT INTO commands (command_id, org, device, outcome, attempts, response, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (command_id) DO UPDATE SET outcome = excluded.outcome,
                 attempts = coalesce(excluded.attempts, attempts),
                 response = excluded.response, error = excluded.error",
            params![
                id,
                device.org.as_str(),
                device.device.as_str(),
                outcome,
                attempts,
                data,
                error
            ],
        )?;
        Ok(())
    }

    /// One message refused, counted by reason (never stored as data).
    pub fn dropped(&self, reason: &str) -> rusqlite::Result<()> {
        self.db().execute(
            "INSERT INTO dropped VALUES (?1, 1) ON CONFLICT (reason) DO UPDATE SET count = count + 1",
            params![reason],
        )?;
        Ok(())
    }

    /// The outcome recorded for a command, if any.
    pub fn outcome_of(&self, id: &str) -> rusqlite::Result<Option<String>> {
        self.db()
            .query_row(
                "SELECT outcome FROM commands WHERE command_id = ?1",
                params![id],
                |row| row.get(0),
            )
            .optional()
    }

    /// Everything, counted.
    pub fn summary(&self) -> rusqlite::Result<Summary> {
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
            commands: grouped(
                "SELECT outcome, count(*) FROM commands GROUP BY outcome ORDER BY outcome",
            )?,
            dropped: grouped("SELECT reason, count FROM dropped ORDER BY reason")?,
            presence: grouped(
                "SELECT state, count(*) FROM presence GROUP BY state ORDER BY state",
            )?,
        })
    }
}
