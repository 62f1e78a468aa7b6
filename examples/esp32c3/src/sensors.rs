//! The probes: a small trait, the ADC implementation for real analog probe boards, and a
//! simulated pool for a bare board.

use dese_device::{Instant, Readings};
/// Which pumps run now: a simulation uses it, real probes ignore it.
pub use dese_station::PumpStates;
use dese_station::{PoolModel, Water};

/// Raw probe readings, before any calibration.
pub trait Probes {
    /// Reads every probe; `None` when no usable reading can be had now (a disconnected probe,
    /// an ADC error).
    fn read(&mut self, now: Instant, pumps: PumpStates) -> Option<Readings>;
}

/// The analog inputs the probes are wired to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The pH probe's amplifier board.
    Ph,
    /// The thermistor divider.
    Temperature,
    /// The chlorine sensor's amplifier board.
    Chlorine,
}

/// One ADC, read in millivolts.
pub trait AnalogInput {
    /// The voltage on `channel`, in millivolts, averaged as the implementation sees fit;
    /// `None` on an ADC error.
    fn millivolts(&mut self, channel: Channel) -> Option<f64>;
}

/// A pH probe behind an amplifier board, calibrated at two buffer solutions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhProbe {
    /// Output at pH 7, mV.
    pub mv_at_7: f64,
    /// Output at pH 4, mV.
    pub mv_at_4: f64,
}

impl PhProbe {
    /// A typical analog pH board on a 3.3 V supply: 1500 mV at pH 7, 2030 mV at pH 4.
    pub const TYPICAL: Self = Self {
        mv_at_7: 1500.0,
        mv_at_4: 2030.0,
    };

    /// The pH for an output of `mv`.
    pub fn ph(&self, mv: f64) -> f64 {
        7.0 + (mv - self.mv_at_7) * (4.0 - 7.0) / (self.mv_at_4 - self.mv_at_7)
    }
}

/// An NTC thermistor from the ADC input to ground, with a fixed resistor to the supply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thermistor {
    /// Supply voltage of the divider, mV.
    pub supply_mv: f64,
    /// The fixed resistor, ohms.
    pub series_ohms: f64,
    /// The thermistor at 25 °C, ohms.
    pub nominal_ohms: f64,
    /// Its B constant, kelvin.
    pub beta: f64,
}

impl Thermistor {
    /// A 10 kΩ B3950 thermistor with a 10 kΩ resistor to 3.3 V.
    pub const TYPICAL: Self = Self {
        supply_mv: 3300.0,
        series_ohms: 10_000.0,
        nominal_ohms: 10_000.0,
        beta: 3950.0,
    };

    /// The temperature in °C for an input of `mv`; `None` for an open or shorted thermistor.
    pub fn celsius(&self, mv: f64) -> Option<f64> {
        if !(mv > 1.0 && mv < self.supply_mv - 1.0) {
            return None;
        }
        let ohms = self.series_ohms * mv / (self.supply_mv - mv);
        let inverse = 1.0 / 298.15 + libm::log(ohms / self.nominal_ohms) / self.beta;
        Some(1.0 / inverse - 273.15)
    }
}

/// A sensor whose amplifier maps its range linearly onto a voltage span.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearProbe {
    /// Output at the bottom of the range, mV.
    pub mv_at_zero: f64,
    /// Output at `full_scale`, mV.
    pub mv_at_full_scale: f64,
    /// The top of the range, in the sensor's unit.
    pub full_scale: f64,
}

impl LinearProbe {
    /// A free-chlorine sensor board: 0 to 10 ppm on 400 to 2000 mV.
    pub const CHLORINE: Self = Self {
        mv_at_zero: 400.0,
        mv_at_full_scale: 2000.0,
        full_scale: 10.0,
    };

    /// The value for an output of `mv`, never below zero.
    pub fn value(&self, mv: f64) -> f64 {
        ((mv - self.mv_at_zero) / (self.mv_at_full_scale - self.mv_at_zero) * self.full_scale)
            .max(0.0)
    }
}

/// Real probes on an ADC: pH board, thermistor, chlorine board.
#[derive(Debug)]
pub struct AdcProbes<A> {
    input: A,
    /// The pH board.
    pub ph: PhProbe,
    /// The thermistor.
    pub temperature: Thermistor,
    /// The chlorine board.
    pub chlorine: LinearProbe,
}

impl<A: AnalogInput> AdcProbes<A> {
    /// Probes with the typical boards' characteristics; adjust the public fields for others.
    pub fn new(input: A) -> Self {
        Self {
            input,
            ph: PhProbe::TYPICAL,
            temperature: Thermistor::TYPICAL,
            chlorine: LinearProbe::CHLORINE,
        }
    }
}

impl<A: AnalogInput> Probes for AdcProbes<A> {
    fn read(&mut self, _now: Instant, _pumps: PumpStates) -> Option<Readings> {
        let ph = self.ph.ph(self.input.millivolts(Channel::Ph)?);
        let temperature = self
            .temperature
            .celsius(self.input.millivolts(Channel::Temperature)?)?;
        let chlorine = self
            .chlorine
            .value(self.input.millivolts(Channel::Chlorine)?);
        Some(Readings {
            ph,
            chlorine,
            temperature,
            ..Readings::default()
        })
    }
}

/// A pool that answers to the pumps, for a board without probes: `dese-station`'s simulated
/// water, the one `dese simulate` runs. The pH rises slowly and falls while the acid pump runs,
/// chlorine decays and rises while the dosing pump runs, readings carry noise and the pH probe
/// reads 0.08 high (so that calibration has something to fix).
#[derive(Debug, Clone)]
pub struct SimulatedProbes {
    water: Water,
}

impl SimulatedProbes {
    /// A pool at pH 7.3, 2.0 ppm chlorine and 26 °C ([`PoolModel::default`]); `seed` drives
    /// the noise.
    pub fn new(seed: u64) -> Self {
        Self {
            water: Water::new(PoolModel::default(), seed),
        }
    }

    /// The true pH of the simulated water.
    pub fn true_ph(&self) -> f64 {
        self.water.ph()
    }
}

impl Probes for SimulatedProbes {
    fn read(&mut self, now: Instant, pumps: PumpStates) -> Option<Readings> {
        self.water.advance(now, |_| pumps);
        Some(self.water.read())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Volts([f64; 3]);
    impl AnalogInput for Volts {
        fn millivolts(&mut self, channel: Channel) -> Option<f64> {
            Some(self.0[channel as usize])
        }
    }

    #[test]
    fn conversions_hit_their_calibration_points() {
        let ph = PhProbe::TYPICAL;
        assert!((ph.ph(1500.0) - 7.0).abs() < 1e-9);
        assert!((ph.ph(2030.0) - 4.0).abs() < 1e-9);
        // Half the supply across equal resistors: the thermistor is at its nominal 25 °C.
        let t = Thermistor::TYPICAL.celsius(1650.0).unwrap();
        assert!((t - 25.0).abs() < 1e-9, "{t}");
        // Warmer water, lower NTC resistance, lower voltage.
        assert!(Thermistor::TYPICAL.celsius(1200.0).unwrap() > 30.0);
        assert_eq!(Thermistor::TYPICAL.celsius(0.0), None, "shorted");
        assert_eq!(Thermistor::TYPICAL.celsius(3300.0), None, "open");
        assert_eq!(LinearProbe::CHLORINE.value(1200.0), 5.0);
        assert_eq!(LinearProbe::CHLORINE.value(100.0), 0.0);
    }

    #[test]
    fn adc_probes_read_all_three_channels() {
        let mut probes = AdcProbes::new(Volts([1500.0, 1650.0, 720.0]));
        let r = probes.read(Instant::ZERO, PumpStates::default()).unwrap();
        assert!((r.ph - 7.0).abs() < 1e-9);
        assert!((r.temperature - 25.0).abs() < 1e-9);
        assert!((r.chlorine - 2.0).abs() < 1e-9);
        let mut open = AdcProbes::new(Volts([1500.0, 3300.0, 720.0]));
        assert_eq!(open.read(Instant::ZERO, PumpStates::default()), None);
    }

    #[test]
    fn the_simulated_probes_follow_the_pumps_they_are_given() {
        let mut pool = SimulatedProbes::new(7);
        let minute = |m: u64| Instant::from_millis(m * 60_000);
        pool.read(minute(0), PumpStates::default());
        pool.read(minute(10), PumpStates::default());
        assert!((pool.true_ph() - 7.8).abs() < 1e-9, "{}", pool.true_ph());
        let acid = PumpStates {
            acid: true,
            chlorine: false,
        };
        pool.read(minute(12), acid).unwrap();
        assert!((pool.true_ph() - 6.9).abs() < 1e-9, "{}", pool.true_ph());
    }
}
