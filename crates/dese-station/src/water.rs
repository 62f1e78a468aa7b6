//! Simulated pool water, and the probes that read it.

use dese_device::{Instant, Readings};
use dese_protocol::{Battery, SignalStrength};

use crate::controls::PumpStates;

/// How the water behaves. Rates are per minute of the device's clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolModel {
    /// pH at the start.
    pub ph: f64,
    /// Free chlorine at the start, ppm.
    pub chlorine: f64,
    /// Water temperature at the start, °C.
    pub temperature: f64,
    /// How fast the pH rises by itself (aeration, fresh water), per minute.
    pub ph_drift: f64,
    /// How fast chlorine is consumed, ppm per minute.
    pub chlorine_decay: f64,
    /// How fast the acid pump lowers the pH while on, per minute.
    pub acid_rate: f64,
    /// How fast the chlorine pump raises chlorine while on, ppm per minute.
    pub chlorine_rate: f64,
    /// How far the pH probe reads above the truth until calibrated.
    pub ph_probe_bias: f64,
    /// Standard deviation of the pH probe's noise.
    pub ph_noise: f64,
    /// Standard deviation of the chlorine probe's noise, ppm.
    pub chlorine_noise: f64,
}

impl Default for PoolModel {
    /// A pool that needs attention within minutes, so that a short run shows the pumps working.
    fn default() -> Self {
        Self {
            ph: 7.3,
            chlorine: 2.0,
            temperature: 26.0,
            ph_drift: 0.05,
            chlorine_decay: 0.02,
            acid_rate: 0.5,
            chlorine_rate: 0.5,
            ph_probe_bias: 0.08,
            ph_noise: 0.01,
            chlorine_noise: 0.02,
        }
    }
}

/// The water of one pool: its true pH, chlorine, temperature and dissolved solids, moved on by
/// the pumps and time, and read with each probe's noise.
#[derive(Debug, Clone)]
pub struct Water {
    model: PoolModel,
    ph: f64,
    chlorine: f64,
    temperature: f64,
    tds: f64,
    last: Option<Instant>,
    rng: u64,
}

impl Water {
    /// Water behaving as `model`; `seed` makes its noise reproducible (give each pool its own).
    pub fn new(model: PoolModel, seed: u64) -> Self {
        Self {
            model,
            ph: model.ph,
            chlorine: model.chlorine,
            temperature: model.temperature,
            tds: 850.0,
            last: None,
            // xorshift must not start at zero.
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    /// How it behaves.
    pub fn model(&self) -> PoolModel {
        self.model
    }

    /// Changes how it behaves from now on (a storm, a swimmer-heavy afternoon).
    pub fn set_model(&mut self, model: PoolModel) {
        self.model = model;
    }

    /// The true pH (what a perfect probe would read).
    pub fn ph(&self) -> f64 {
        self.ph
    }

    /// The true free chlorine, ppm.
    pub fn chlorine(&self) -> f64 {
        self.chlorine
    }

    /// The true temperature, °C.
    pub fn temperature(&self) -> f64 {
        self.temperature
    }

    /// Moves the water on to `now`, in steps of a second (longer for long gaps), each with the
    /// pumps that `pumps` gives for its start. The first call only sets the clock.
    pub fn advance(&mut self, now: Instant, mut pumps: impl FnMut(Instant) -> PumpStates) {
        let Some(mut t) = self.last.replace(now) else {
            return;
        };
        let gap = now.as_millis().saturating_sub(t.as_millis());
        let step = (gap / 10_000).max(1_000);
        while t < now {
            let dt = step.min(now.as_millis() - t.as_millis());
            self.step(dt as f64 / 60_000.0, pumps(t));
            t = Instant::from_millis(t.as_millis() + dt);
        }
    }

    fn step(&mut self, minutes: f64, pumps: PumpStates) {
        let m = self.model;
        self.ph += m.ph_drift * minutes;
        if pumps.acid {
            self.ph -= m.acid_rate * minutes;
        }
        self.chlorine -= m.chlorine_decay * minutes;
        if pumps.chlorine {
            self.chlorine += m.chlorine_rate * minutes;
        }
        self.ph = self.ph.clamp(5.5, 9.5);
        self.chlorine = self.chlorine.clamp(0.0, 10.0);
        // The temperature and dissolved solids wander slowly.
        let wander = libm::sqrt(minutes);
        self.temperature = (self.temperature + self.gaussian() * 0.05 * wander).clamp(5.0, 40.0);
        self.tds = (self.tds + self.gaussian() * 2.0 * wander).clamp(100.0, 3000.0);
    }

    /// What the probes read now, before calibration: the pH probe's bias, every probe's noise,
    /// ORP from chlorine and pH, a flow meter, full battery and a WiFi signal.
    pub fn read(&mut self) -> Readings {
        let m = self.model;
        let ph = self.ph + m.ph_probe_bias + self.gaussian() * m.ph_noise;
        let chlorine = (self.chlorine + self.gaussian() * m.chlorine_noise).max(0.0);
        let temperature = self.temperature + self.gaussian() * 0.05;
        // ORP rises with chlorine and falls as the pH rises.
        let orp = 650.0 + 120.0 * libm::log10(self.chlorine.max(0.05) / 2.0)
            - 60.0 * (self.ph - 7.2)
            + self.gaussian() * 3.0;
        let flow = 120.0 + self.gaussian() * 1.5;
        let rssi = -55 - i64::from(self.next() % 10);
        Readings {
            ph: ph.clamp(0.0, 14.0),
            chlorine,
            temperature,
            orp: Some(orp),
            tds: Some(self.tds),
            flow_rate: Some(flow.max(0.0)),
            battery: Battery::new(100).ok(),
            signal_strength: SignalStrength::new(rssi).ok(),
        }
    }

    /// Roughly normal noise (the sum of four uniforms), mean 0, standard deviation about 1.
    fn gaussian(&mut self) -> f64 {
        let sum: f64 = (0..4)
            .map(|_| f64::from(self.next()) / f64::from(u32::MAX))
            .sum();
        (sum - 2.0) * 1.732
    }

    /// xorshift64*: the model needs no RNG crate.
    fn next(&mut self) -> u32 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minutes(m: u64) -> Instant {
        Instant::from_millis(m * 60_000)
    }

    #[test]
    fn the_water_answers_to_its_pumps() {
        let mut water = Water::new(PoolModel::default(), 7);
        let off = |_| PumpStates::default();
        water.advance(minutes(0), off);
        water.advance(minutes(10), off);
        assert!((water.ph() - 7.8).abs() < 1e-9, "{}", water.ph());
        let acid = |_| PumpStates {
            acid: true,
            chlorine: false,
        };
        water.advance(minutes(12), acid);
        assert!((water.ph() - 6.9).abs() < 1e-9, "{}", water.ph());
        let reading = water.read();
        assert!(
            (reading.ph - 6.98).abs() < 0.05,
            "biased by +0.08: {}",
            reading.ph
        );
    }
}
