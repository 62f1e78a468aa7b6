//! The PostgreSQL store: a pool of connections, the schema made by embedded migrations, a batch
//! in one transaction with all its readings in one statement, every insert idempotent.

use deadpool_postgres::GenericClient;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use dese_backend::{DeviceKey, Event, Outcome};
use dese_protocol::{Alert, CommandResponse, DeviceState, Status, Telemetry};
use tokio_postgres::NoTls;

use super::{
    COMMANDS_BY_OUTCOME, DROPPED_BY_REASON, PRESENCE_BY_STATE, StoreError, Summary, Written,
    digest, reading_digest,
};

/// The migrations, in order; each runs once, in a transaction, and is recorded in
/// `dese_migrations`. A new schema change is a new entry at the end, never an edit of one that
/// has shipped.
///
/// Readings are keyed by organization, device, time and a digest of their values, which also
/// indexes the usual query (a device's readings over time). For a large fleet, partition
/// `telemetry` by time (docs/scale-out.md): the key holds the time, as partitioning wants.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "
CREATE TABLE telemetry (
    org text COLLATE \"C\" NOT NULL, device text COLLATE \"C\" NOT NULL,
    timestamp timestamptz NOT NULL,
    ph double precision NOT NULL, chlorine double precision NOT NULL,
    temperature double precision NOT NULL,
    orp integer, tds bigint, flow_rate double precision, battery smallint,
    signal_strength smallint, firmware_version text NOT NULL,
    digest bigint NOT NULL,
    PRIMARY KEY (org, device, timestamp, digest)
);
CREATE TABLE status (
    org text NOT NULL, device text NOT NULL, state text NOT NULL, timestamp timestamptz NOT NULL,
    firmware_version text NOT NULL,
    PRIMARY KEY (org, device, timestamp, state)
);
CREATE TABLE presence (
    org text NOT NULL, device text NOT NULL, state text NOT NULL,
    PRIMARY KEY (org, device)
);
CREATE TABLE alerts (
    org text NOT NULL, device text NOT NULL, severity text NOT NULL, message text NOT NULL,
    sensor text, value double precision, threshold double precision,
    timestamp timestamptz NOT NULL, digest bigint NOT NULL,
    PRIMARY KEY (org, device, timestamp, digest)
);
CREATE TABLE commands (
    command_id text PRIMARY KEY, org text NOT NULL, device text NOT NULL, command text,
    outcome text NOT NULL, attempts integer, response jsonb, error text
);
CREATE TABLE dropped (
    reason text PRIMARY KEY, count bigint NOT NULL
);
",
)];

/// Serialises the migrations of instances that start together (an advisory lock's key).
const MIGRATION_LOCK: i64 = 0x0d35_e5c4_e3a5;

/// All the readings of a batch, one array per column, inserted in one statement. Returns, for
/// each reading that was new, its position in the arrays (from 1; the first, when the batch
/// holds it more than once).
const INSERT_READINGS: &str = "
WITH input AS (
    SELECT org, device, ts, ph, chlorine, temperature, orp, tds, flow_rate,
           battery, signal_strength, firmware_version, digest, i
    FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::float8[], $5::float8[], $6::float8[],
                $7::int4[], $8::int8[], $9::float8[], $10::int2[], $11::int2[], $12::text[],
                $13::int8[])
         WITH ORDINALITY AS u(org, device, ts, ph, chlorine, temperature, orp, tds, flow_rate,
                              battery, signal_strength, firmware_version, digest, i)
), inserted AS (
    INSERT INTO telemetry
    SELECT org, device, ts, ph, chlorine, temperature, orp, tds, flow_rate, battery,
           signal_strength, firmware_version, digest
    FROM input
    ON CONFLICT DO NOTHING
    RETURNING org, device, timestamp, digest
)
SELECT min(input.i)
FROM inserted JOIN input
  ON input.org = inserted.org AND input.device = inserted.device
 AND input.ts = inserted.timestamp AND input.digest = inserted.digest
GROUP BY inserted.org, inserted.device, inserted.timestamp, inserted.digest";

/// The server, through a pool of connections.
#[derive(Debug)]
pub(super) struct PgStore {
    pool: Pool,
}

impl PgStore {
    /// Connects and applies the migrations not yet applied.
    pub(super) async fn open(url: &str) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = url.parse()?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        // The batch writer, command records and summaries: a few connections are plenty.
        let pool = Pool::builder(manager)
            .max_size(4)
            .build()
            .map_err(|e| StoreError::Pool(e.to_string()))?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => StoreError::Postgres(e),
            other => StoreError::Pool(other.to_string()),
        })
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS dese_migrations (
                 version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
        let applied: i32 = tx
            .query_one("SELECT coalesce(max(version), 0) FROM dese_migrations", &[])
            .await?
            .get(0);
        let known = MIGRATIONS.last().map_or(0, |(version, _)| *version);
        if applied > known {
            return Err(StoreError::Schema(format!(
                "the database holds schema version {applied}, this backend knows up to {known}: \
                 run a newer backend, or use another database"
            )));
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > applied) {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO dese_migrations (version) VALUES ($1)",
                &[version],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn write(&self, events: &[Event]) -> Result<Written, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let new_readings = insert_readings(&tx, events).await?;
        let mut new = Vec::with_capacity(events.len());
        let mut reading = 0;
        for event in events {
            new.push(match event {
                Event::Telemetry { .. } => {
                    reading += 1;
                    new_readings.contains(&reading)
                }
                other => write_event(&tx, other).await? > 0,
            });
        }
        tx.commit().await?;
        Ok(Written { new })
    }

    pub(super) async fn command_sent(
        &self,
        id: &str,
        device: &DeviceKey,
        name: &str,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO commands (command_id, org, device, command, outcome)
                 VALUES ($1, $2, $3, $4, 'pending')
                 ON CONFLICT (command_id) DO UPDATE SET command = excluded.command",
                &[&id, &device.org.as_str(), &device.device.as_str(), &name],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn outcome_of(&self, id: &str) -> Result<Option<String>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT outcome FROM commands WHERE command_id = $1", &[&id])
            .await?;
        Ok(row.map(|row| row.get(0)))
    }

    pub(super) async fn summary(&self) -> Result<Summary, StoreError> {
        let client = self.client().await?;
        let count = async |table: &str| -> Result<u64, StoreError> {
            let row = client
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await?;
            Ok(row.get::<_, i64>(0).unsigned_abs())
        };
        let grouped = async |sql: &str| -> Result<Vec<(String, u64)>, StoreError> {
            let rows = client.query(sql, &[]).await?;
            Ok(rows
                .iter()
                .map(|row| (row.get(0), row.get::<_, i64>(1).unsigned_abs()))
                .collect())
        };
        Ok(Summary {
            telemetry: count("telemetry").await?,
            statuses: count("status").await?,
            alerts: count("alerts").await?,
            commands: grouped(COMMANDS_BY_OUTCOME).await?,
            dropped: grouped(DROPPED_BY_REASON).await?,
            presence: grouped(PRESENCE_BY_STATE).await?,
        })
    }
}

/// The batch's readings in one statement; the positions (from 1, among the readings) of those
/// that were new.
async fn insert_readings(
    tx: &impl GenericClient,
    events: &[Event],
) -> Result<std::collections::HashSet<i64>, StoreError> {
    let readings: Vec<(&DeviceKey, &Telemetry)> = events
        .iter()
        .filter_map(|event| match event {
            Event::Telemetry { device, telemetry } => Some((device, telemetry)),
            _ => None,
        })
        .collect();
    if readings.is_empty() {
        return Ok(std::collections::HashSet::new());
    }
    let column = |f: &dyn Fn(&DeviceKey, &Telemetry) -> String| -> Vec<String> {
        readings.iter().map(|(d, t)| f(d, t)).collect()
    };
    let orgs = column(&|d, _| d.org.as_str().to_string());
    let devices = column(&|d, _| d.device.as_str().to_string());
    let times: Vec<SystemTime> = readings
        .iter()
        .map(|(_, t)| system_time(t.timestamp))
        .collect();
    let firmware = column(&|_, t| t.metadata.firmware_version.clone());
    let f64s = |f: &dyn Fn(&Telemetry) -> f64| -> Vec<f64> {
        readings.iter().map(|(_, t)| f(t)).collect()
    };
    let ph = f64s(&|t| t.sensors.ph.get());
    let chlorine = f64s(&|t| t.sensors.chlorine.get());
    let temperature = f64s(&|t| t.sensors.temperature.get());
    let orp: Vec<Option<i32>> = readings.iter().map(|(_, t)| t.sensors.orp).collect();
    let tds: Vec<Option<i64>> = readings
        .iter()
        .map(|(_, t)| t.sensors.tds.map(i64::from))
        .collect();
    let flow: Vec<Option<f64>> = readings
        .iter()
        .map(|(_, t)| t.sensors.flow_rate.map(|f| f.get()))
        .collect();
    let battery: Vec<Option<i16>> = readings
        .iter()
        .map(|(_, t)| t.metadata.battery.map(|b| i16::from(b.get())))
        .collect();
    let signal: Vec<Option<i16>> = readings
        .iter()
        .map(|(_, t)| t.metadata.signal_strength.map(|r| i16::from(r.get())))
        .collect();
    let digests: Vec<i64> = readings.iter().map(|(_, t)| reading_digest(t)).collect();
    let insert = tx.prepare_cached(INSERT_READINGS).await?;
    let rows = tx
        .query(
            &insert,
            &[
                &orgs,
                &devices,
                &times,
                &ph,
                &chlorine,
                &temperature,
                &orp,
                &tds,
                &flow,
                &battery,
                &signal,
                &firmware,
                &digests,
            ],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// A timestamp as PostgreSQL's client takes it (a `timestamptz`, to the microsecond).
fn system_time(t: dese_protocol::Timestamp) -> SystemTime {
    let nanos = Duration::new(t.unix_seconds().unsigned_abs(), t.subsec_nanos());
    if t.unix_seconds() >= 0 {
        UNIX_EPOCH + nanos
    } else {
        // Before 1970: seconds count back, nanoseconds forward.
        UNIX_EPOCH - Duration::from_secs(t.unix_seconds().unsigned_abs())
            + Duration::from_nanos(u64::from(t.subsec_nanos()))
    }
}

/// Runs a statement, prepared once per connection.
async fn execute_cached(
    tx: &impl GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    let statement = tx.prepare_cached(sql).await?;
    tx.execute(&statement, params).await
}

/// One event other than a reading; the number of rows it added or changed.
async fn write_event(tx: &impl GenericClient, event: &Event) -> Result<u64, StoreError> {
    Ok(match event {
        Event::Status { device, status } => status_row(tx, device, status).await?,
        Event::PresenceChanged { device, to, .. } => presence_row(tx, device, Some(*to)).await?,
        Event::PresenceCleared { device } => presence_row(tx, device, None).await?,
        Event::Alert { device, alert } => alert_row(tx, device, alert).await?,
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
            finish(tx, command_id.as_str(), device, label, attempts, response).await?
        }
        Event::LateResponse { device, response } => {
            finish(
                tx,
                response.command_id.as_str(),
                device,
                "late",
                None,
                Some(response),
            )
            .await?
        }
        // Counted, never stored as data (counted again if delivered again after a crash).
        Event::Dropped { reason, .. } => {
            execute_cached(
                tx,
                "INSERT INTO dropped VALUES ($1, 1)
                 ON CONFLICT (reason) DO UPDATE SET count = dropped.count + 1",
                &[&reason.as_str()],
            )
            .await?
        }
        _ => 0,
    })
}

async fn status_row(
    tx: &impl GenericClient,
    device: &DeviceKey,
    s: &Status,
) -> Result<u64, StoreError> {
    Ok(execute_cached(
        tx,
        "INSERT INTO status VALUES ($1, $2, $3, $4::text::timestamptz, $5)
             ON CONFLICT DO NOTHING",
        &[
            &device.org.as_str(),
            &device.device.as_str(),
            &s.status.as_str(),
            &s.timestamp.to_string(),
            &s.firmware_version,
        ],
    )
    .await?)
}

async fn presence_row(
    tx: &impl GenericClient,
    device: &DeviceKey,
    state: Option<DeviceState>,
) -> Result<u64, StoreError> {
    let (org, id) = (device.org.as_str(), device.device.as_str());
    Ok(match state {
        Some(state) => {
            execute_cached(
                tx,
                "INSERT INTO presence VALUES ($1, $2, $3)
                 ON CONFLICT (org, device) DO UPDATE SET state = excluded.state",
                &[&org, &id, &state.as_str()],
            )
            .await?
        }
        None => {
            execute_cached(
                tx,
                "DELETE FROM presence WHERE org = $1 AND device = $2",
                &[&org, &id],
            )
            .await?
        }
    })
}

async fn alert_row(
    tx: &impl GenericClient,
    device: &DeviceKey,
    a: &Alert,
) -> Result<u64, StoreError> {
    Ok(execute_cached(
        tx,
        "INSERT INTO alerts VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::timestamptz, $9)
             ON CONFLICT DO NOTHING",
        &[
            &device.org.as_str(),
            &device.device.as_str(),
            &a.severity.as_str(),
            &a.message,
            &a.sensor.as_ref().map(|s| s.as_str()),
            &a.value.map(|v| v.get()),
            &a.threshold.map(|v| v.get()),
            &a.timestamp.to_string(),
            &digest(&serde_json::to_vec(a).unwrap_or_default()),
        ],
    )
    .await?)
}

async fn finish(
    tx: &impl GenericClient,
    id: &str,
    device: &DeviceKey,
    outcome: &str,
    attempts: Option<u32>,
    response: Option<&CommandResponse>,
) -> Result<u64, StoreError> {
    let data = response
        .and_then(|r| r.response.clone())
        .map(|d| serde_json::Value::Object(d).to_string());
    let error = response.and_then(|r| r.error.clone());
    let attempts = attempts.map(|a| i32::try_from(a).unwrap_or(i32::MAX));
    Ok(execute_cached(
        tx,
        "INSERT INTO commands (command_id, org, device, outcome, attempts, response, error)
             VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7)
             ON CONFLICT (command_id) DO UPDATE SET outcome = excluded.outcome,
                 attempts = coalesce(excluded.attempts, commands.attempts),
                 response = excluded.response, error = excluded.error",
        &[
            &id,
            &device.org.as_str(),
            &device.device.as_str(),
            &outcome,
            &attempts,
            &data,
            &error,
        ],
    )
    .await?)
}
