//! The chip: esp-hal, esp-radio WiFi, embassy-net, and the glue to the library's traits.

extern crate alloc;

use core::cell::Cell;
use core::net::Ipv4Addr;

use dese_device::{Device, Instant, Saved, Settings};
use dese_esp32c3::client::{Client, Clock, MqttOptions, Network, Report, Watchdog};
use dese_esp32c3::restart::Restart;
use dese_esp32c3::sntp::{self, WallClock};
use dese_esp32c3::station::{Outputs, Station};
use dese_esp32c3::store::{Blocking, FlashStore, Store};
#[cfg(dese_tls)]
use dese_esp32c3::tls::Tls;
use dese_protocol::{DeviceId, OrgId, TelemetryInterval, Timestamp};
use embassy_executor::Spawner;
use embassy_net::dns::DnsQueryType;
use embassy_net::tcp::TcpSocket;
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{IpAddress, Runner, Stack, StackResources};
use embassy_time::{Duration, Timer, with_timeout};
use esp_backtrace as _;
use esp_bootloader_esp_idf::partitions::{
    self, FlashRegion, NorFlashRegion, PARTITION_TABLE_MAX_LEN,
};
use esp_hal::clock::CpuClock;
use esp_hal::gpio::{Level, Output, OutputConfig};
use esp_hal::peripherals::{FLASH, TIMG0};
use esp_hal::rng::Rng;
use esp_hal::rtc_cntl::SocResetReason;
use esp_hal::timer::timg::{MwdtStage, TimerGroup, Wdt};
use esp_println::println;
use esp_radio::wifi::sta::StationConfig;
use esp_radio::wifi::{
    AuthenticationMethodConfig, Config, ControllerConfig, Interface, WifiController,
};
use esp_storage::FlashStorage;

esp_bootloader_esp_idf::esp_app_desc!();

const SSID: &str = env!("DESE_BUILD_WIFI_SSID");
const WIFI_PASSWORD: &str = env!("DESE_BUILD_WIFI_PASSWORD");
const BROKER_HOST: &str = env!("DESE_BUILD_BROKER");
const BROKER_PORT: &str = env!("DESE_BUILD_BROKER_PORT");
const MQTT_USERNAME: &str = env!("DESE_BUILD_MQTT_USERNAME");
const MQTT_PASSWORD: &str = env!("DESE_BUILD_MQTT_PASSWORD");
const ORG: &str = env!("DESE_BUILD_ORG");
const DEVICE: &str = env!("DESE_BUILD_DEVICE");
const TELEMETRY_INTERVAL_MS: &str = env!("DESE_BUILD_TELEMETRY_INTERVAL_MS");
const NTP_SERVER: &str = env!("DESE_BUILD_NTP_SERVER");
const BUILT_UNIX_SECONDS: &str = env!("DESE_BUILD_UNIX_SECONDS");
/// The CA of `DESE_CA`, in DER, checked by build.rs: built with `mqtts://` only
/// (`cfg(dese_tls)`), and then the broker's certificate must chain to it.
#[cfg(dese_tls)]
static BROKER_CA: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/broker-ca.der"));

/// TCP buffers for the broker connection.
const TCP_BUFFER: usize = 4096;

/// How long the main loop may go unfed before the watchdog resets the chip. The longest turn of
/// the loop is one connection attempt: opening it (SNTP, DNS, TCP, TLS) within the client's
/// 20 s connect timeout, then CONNACK within 10 s.
const WATCHDOG_TIMEOUT_SECS: u64 = 60;
/// How often the loop feeds it.
const WATCHDOG_FEED: core::time::Duration = core::time::Duration::from_secs(5);

/// The label of the data partition (partitions.csv) that holds the reboot-safe state.
const STORE_PARTITION: &str = "dese";

/// The store on the chip: the `dese` partition through esp-storage.
type ChipStore = FlashStore<Blocking<NorFlashRegion<'static, 'static, 'static>>>;

macro_rules! make_static {
    ($t:ty, $val:expr) => {{
        static CELL: static_cell::StaticCell<$t> = static_cell::StaticCell::new();
        CELL.uninit().write($val)
    }};
}

/// Stops the firmware with a message (and the watchdog restarts it a minute later): for
/// settings that build.rs already checked, so only a mismatch between the two could get here.
fn halt(what: &str) -> ! {
    println!("dese: cannot start: {what}");
    loop {
        core::hint::spin_loop();
    }
}

#[esp_hal::main]
async fn main(spawner: Spawner) -> ! {
    let peripherals = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));
    // WiFi takes its buffers from the heap too; the engine's outbox, at most 100 messages of
    // under 1 KiB, from the rest.
    esp_alloc::heap_allocator!(#[esp_hal::ram(reclaimed)] size: 64 * 1024);
    esp_alloc::heap_allocator!(size: 96 * 1024);
    let timg0 = TimerGroup::new(peripherals.TIMG0);
    // From here on a hang, or a panic (its handler spins), resets the chip within a minute.
    let mut watchdog = ChipWatchdog(timg0.wdt);
    watchdog.0.set_timeout(
        MwdtStage::Stage0,
        esp_hal::time::Duration::from_secs(WATCHDOG_TIMEOUT_SECS),
    );
    watchdog.0.enable();
    esp_rtos::start(timg0.timer0, peripherals.FROM_CPU_INTR0);
    let restart = restart_reason();
    println!(
        "dese: firmware {} for {ORG}/{DEVICE}: {restart:?}",
        env!("CARGO_PKG_VERSION")
    );

    let authentication = if WIFI_PASSWORD.is_empty() {
        AuthenticationMethodConfig::Open
    } else {
        AuthenticationMethodConfig::Wpa2Personal(
            WIFI_PASSWORD
                .try_into()
                .unwrap_or_else(|_| halt("WiFi password")),
        )
    };
    let station = StationConfig::default()
        .with_ssid(SSID.try_into().unwrap_or_else(|_| halt("WiFi SSID")))
        .with_authentication(authentication);
    let controller = WifiController::new(
        peripherals.WIFI,
        ControllerConfig::default().with_initial_config(Config::Station(station)),
    )
    .unwrap_or_else(|_| halt("the WiFi controller did not start"));

    let rng = Rng::new();
    let seed = (u64::from(rng.random()) << 32) | u64::from(rng.random());
    let (stack, runner) = embassy_net::new(
        Interface::station(),
        embassy_net::Config::dhcpv4(Default::default()),
        make_static!(StackResources<4>, StackResources::<4>::new()),
        seed,
    );
    spawner.spawn(wifi_task(controller).unwrap_or_else(|_| halt("WiFi task")));
    spawner.spawn(net_task(runner).unwrap_or_else(|_| halt("network task")));

    println!("dese: waiting for WiFi {SSID:?} and DHCP");
    let feed = Duration::from_millis(WATCHDOG_FEED.as_millis() as u64);
    while with_timeout(feed, stack.wait_config_up()).await.is_err() {
        watchdog.feed();
    }
    watchdog.feed();
    if let Some(config) = stack.config_v4() {
        println!("dese: address {}", config.address);
    }

    let built = BUILT_UNIX_SECONDS.parse::<i64>().unwrap_or(0);
    let fallback = Timestamp::from_unix(built, 0).unwrap_or(Timestamp::UNIX_EPOCH);
    let wall = Cell::new(WallClock::unsynchronized(monotonic(), fallback));
    synchronize(stack, &wall).await;
    watchdog.feed();

    let org = OrgId::parse(ORG).unwrap_or_else(|_| halt("DESE_ORG"));
    let device_id = DeviceId::parse(DEVICE).unwrap_or_else(|_| halt("DESE_DEVICE"));
    let mut settings = Settings::new(org, device_id, env!("CARGO_PKG_VERSION"));
    settings.telemetry_interval = TELEMETRY_INTERVAL_MS
        .parse::<i64>()
        .ok()
        .and_then(|ms| TelemetryInterval::new(ms).ok())
        .unwrap_or_else(|| halt("DESE_TELEMETRY_INTERVAL_MS"));
    settings.persist = true;
    let mut store = open_store(peripherals.FLASH, &settings);
    let saved = match store.load().await {
        Ok(saved) => saved,
        Err(error) => {
            // Unreadable even after sequential-storage's repair: start afresh rather than
            // never keeping anything again.
            println!("dese: the saved state cannot be read ({error}): erasing it");
            if let Some(store) = &mut store
                && let Err(error) = store.erase().await
            {
                println!("dese: erasing failed too ({error}): running without a store");
            }
            Saved::default()
        }
    };
    let mut device = Device::new(settings, monotonic());
    device.restore(monotonic(), saved);
    device.raise_alert(&restart.alert(wall.get().utc(monotonic())));

    let relays = Relays {
        acid: Output::new(peripherals.GPIO6, Level::Low, OutputConfig::default()),
        chlorine: Output::new(peripherals.GPIO7, Level::Low, OutputConfig::default()),
    };
    #[cfg(feature = "adc")]
    let probes = adc::probes(
        peripherals.ADC1,
        peripherals.GPIO0,
        peripherals.GPIO1,
        peripherals.GPIO3,
    );
    #[cfg(not(feature = "adc"))]
    let probes = dese_esp32c3::sensors::SimulatedProbes::new(seed);
    let mut station = Station::new(probes, relays);

    let network = Broker {
        stack,
        wall: &wall,
        host: BROKER_HOST,
        port: BROKER_PORT
            .parse()
            .unwrap_or_else(|_| halt("DESE_BROKER port")),
        rx: [0; TCP_BUFFER],
        tx: [0; TCP_BUFFER],
    };
    let mut clock = ChipClock { wall: &wall, rng };
    let options = MqttOptions {
        username: Some(MQTT_USERNAME).filter(|u| !u.is_empty()),
        password: Some(MQTT_PASSWORD).filter(|p| !p.is_empty()),
        ..MqttOptions::default()
    };
    let mut client = Client::with_store(options, store).with_watchdog(&mut watchdog, WATCHDOG_FEED);
    let mut forever = core::future::pending::<()>();
    // mqtts://: TLS 1.3 around the TCP connection; the validity dates are checked once SNTP
    // has set the clock.
    #[cfg(dese_tls)]
    let wall_time = || {
        let clock = wall.get();
        clock.is_synchronized().then(|| clock.utc(monotonic()))
    };
    #[cfg(dese_tls)]
    let mut network = Tls::new(network, BROKER_CA, BROKER_HOST, RadioRng(rng), wall_time);
    #[cfg(not(dese_tls))]
    let mut network = network;
    client
        .run(
            &mut device,
            &mut station,
            &mut network,
            &mut clock,
            &mut forever,
            &mut |report| log(&report),
        )
        .await;
    halt("the MQTT loop ended");
}

/// The `dese` data partition as a store, or `None` (the state then lives in RAM only) when the
/// partition table has none: an image flashed without partitions.csv.
fn open_store(flash: FLASH<'static>, settings: &Settings) -> Option<ChipStore> {
    let storage = make_static!(FlashStorage<'static>, FlashStorage::new(flash));
    let mut table = [0u8; PARTITION_TABLE_MAX_LEN];
    let partitions = match partitions::read_partition_table(storage, &mut table) {
        Ok(partitions) => partitions,
        Err(error) => {
            println!(
                "dese: cannot read the partition table ({error:?}): nothing survives a reboot"
            );
            return None;
        }
    };
    let Some(entry) = partitions
        .iter()
        .find(|p| p.raw_type() == 1 && p.label_as_str() == STORE_PARTITION)
    else {
        println!(
            "dese: no {STORE_PARTITION:?} data partition (flash with partitions.csv): \
             nothing survives a reboot"
        );
        return None;
    };
    let len = entry.len();
    let region = make_static!(
        FlashRegion<'static, 'static>,
        entry.as_flash_region(storage)
    );
    let nor = match region.as_nor_flash() {
        Ok(nor) => nor,
        Err(error) => {
            println!("dese: the {STORE_PARTITION:?} partition is not writable ({error:?})");
            return None;
        }
    };
    match FlashStore::new(Blocking(nor), 0..len, settings) {
        Ok(store) => Some(store),
        Err(error) => {
            println!("dese: {error}");
            None
        }
    }
}

/// Why the chip started, from its reset reason.
fn restart_reason() -> Restart {
    use SocResetReason as R;
    match esp_hal::system::reset_reason() {
        Some(R::ChipPowerOn) => Restart::PowerOn,
        Some(R::CoreSw | R::Cpu0Sw) => Restart::Asked,
        Some(
            R::CoreMwdt0
            | R::CoreMwdt1
            | R::CoreRtcWdt
            | R::Cpu0Mwdt0
            | R::Cpu0Mwdt1
            | R::Cpu0RtcWdt
            | R::SysRtcWdt
            | R::SysSuperWdt,
        ) => Restart::Watchdog,
        Some(R::SysBrownOut) => Restart::Brownout,
        Some(R::CoreDeepSleep) => Restart::Other("deep sleep"),
        Some(R::SysClkGlitch) => Restart::Other("clock glitch"),
        Some(R::CoreEfuseCrc) => Restart::Other("eFuse CRC error"),
        Some(R::CoreUsbUart) => Restart::Other("USB UART"),
        Some(R::CoreUsbJtag) => Restart::Other("USB JTAG"),
        Some(R::CorePwrGlitch) => Restart::Other("power glitch"),
        None => Restart::Other("unknown"),
    }
}

/// The hardware random number generator as a cryptographic one: on the ESP32-C3 it draws on
/// the RF subsystem's noise, a true random source while WiFi runs (Espressif's technical
/// reference manual, "Random Number Generator"), and TLS connects only once WiFi is up.
#[cfg(dese_tls)]
struct RadioRng(Rng);

#[cfg(dese_tls)]
impl rand_core::RngCore for RadioRng {
    fn next_u32(&mut self) -> u32 {
        rand_core::RngCore::next_u32(&mut self.0)
    }
    fn next_u64(&mut self) -> u64 {
        rand_core::RngCore::next_u64(&mut self.0)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        rand_core::RngCore::fill_bytes(&mut self.0, dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        rand_core::RngCore::try_fill_bytes(&mut self.0, dest)
    }
}

#[cfg(dese_tls)]
impl rand_core::CryptoRng for RadioRng {}

/// The timer group's watchdog, which resets the whole chip.
struct ChipWatchdog(Wdt<TIMG0<'static>>);

impl Watchdog for ChipWatchdog {
    fn feed(&mut self) {
        self.0.feed();
    }
}

fn log(report: &Report) {
    match report {
        Report::Connecting => println!("dese: connecting to {BROKER_HOST}:{BROKER_PORT}"),
        Report::Connected => println!("dese: connected"),
        Report::Disconnected(error) => println!("dese: {error}"),
        Report::SubscriptionRefused { refused } => {
            println!("dese: the broker refused {refused} subscription(s): check its ACL");
        }
        Report::Oversized { topic, len } => {
            println!("dese: discarded a {len}-byte message on {topic}");
        }
        Report::Engine(event) => println!("dese: {event:?}"),
        Report::NotSaved { error } => println!("dese: not saved: {error}"),
        Report::Stopped => println!("dese: stopped"),
    }
}

fn monotonic() -> Instant {
    Instant::from_millis(embassy_time::Instant::now().as_millis())
}

/// One SNTP exchange, three tries; the clock keeps its build-time start if none answers.
async fn synchronize(stack: Stack<'static>, wall: &Cell<WallClock>) {
    let Ok(servers) = stack.dns_query(NTP_SERVER, DnsQueryType::A).await else {
        println!("dese: cannot resolve {NTP_SERVER}: timestamps start at the build time");
        return;
    };
    let Some(server) = servers.first().copied() else {
        return;
    };
    let (mut rx_meta, mut tx_meta) = ([PacketMetadata::EMPTY; 2], [PacketMetadata::EMPTY; 2]);
    let (mut rx, mut tx) = ([0u8; 128], [0u8; 128]);
    let mut socket = UdpSocket::new(stack, &mut rx_meta, &mut rx, &mut tx_meta, &mut tx);
    if socket.bind(0).is_err() {
        return;
    }
    for _ in 0..3 {
        if socket
            .send_to(&sntp::request(), (server, 123))
            .await
            .is_err()
        {
            continue;
        }
        let mut answer = [0u8; 64];
        match with_timeout(Duration::from_secs(3), socket.recv_from(&mut answer)).await {
            Ok(Ok((len, _))) => match sntp::parse(&answer[..len]) {
                Ok(utc) => {
                    let mut clock = wall.get();
                    clock.synchronize(monotonic(), utc);
                    wall.set(clock);
                    println!("dese: clock set from {NTP_SERVER}: {utc}");
                    return;
                }
                Err(error) => println!("dese: {error}"),
            },
            _ => println!("dese: no answer from {NTP_SERVER}"),
        }
    }
}

/// The broker, over embassy-net.
struct Broker<'w> {
    stack: Stack<'static>,
    wall: &'w Cell<WallClock>,
    host: &'static str,
    port: u16,
    rx: [u8; TCP_BUFFER],
    tx: [u8; TCP_BUFFER],
}

/// Why the broker could not be reached.
#[derive(Debug)]
#[allow(dead_code)] // read through Debug in the log
enum ConnectError {
    NoNetwork,
    Dns(embassy_net::dns::Error),
    NoAddress,
    Tcp(embassy_net::tcp::ConnectError),
    TimedOut,
}

impl Network for Broker<'_> {
    type Connection<'a>
        = TcpSocket<'a>
    where
        Self: 'a;
    type Error = ConnectError;

    async fn connect(&mut self) -> Result<TcpSocket<'_>, ConnectError> {
        if !self.stack.is_config_up() {
            return Err(ConnectError::NoNetwork);
        }
        if !self.wall.get().is_synchronized() {
            synchronize(self.stack, self.wall).await;
        }
        let address: IpAddress = match self.host.parse::<Ipv4Addr>() {
            Ok(ip) => ip.into(),
            Err(_) => {
                let found = self
                    .stack
                    .dns_query(self.host, DnsQueryType::A)
                    .await
                    .map_err(ConnectError::Dns)?;
                *found.first().ok_or(ConnectError::NoAddress)?
            }
        };
        let mut socket = TcpSocket::new(self.stack, &mut self.rx, &mut self.tx);
        // Commands answered at once, not after Nagle's delay.
        socket.set_nagle_enabled(false);
        // A broker that stops acknowledging is a lost link, not a stalled write.
        socket.set_timeout(Some(Duration::from_secs(30)));
        match with_timeout(
            Duration::from_secs(10),
            socket.connect((address, self.port)),
        )
        .await
        {
            Ok(Ok(())) => Ok(socket),
            Ok(Err(error)) => Err(ConnectError::Tcp(error)),
            Err(_) => Err(ConnectError::TimedOut),
        }
    }
}

/// embassy-time, the wall clock and the hardware RNG.
struct ChipClock<'w> {
    wall: &'w Cell<WallClock>,
    rng: Rng,
}

impl Clock for ChipClock<'_> {
    fn now(&self) -> Instant {
        monotonic()
    }
    fn utc(&self) -> Timestamp {
        self.wall.get().utc(monotonic())
    }
    fn random(&mut self) -> u32 {
        self.rng.random()
    }
    async fn sleep_until(&self, at: Instant) {
        Timer::at(embassy_time::Instant::from_millis(at.as_millis())).await;
    }
}

/// The pump relays: GPIO6 acid, GPIO7 chlorine, active high.
struct Relays {
    acid: Output<'static>,
    chlorine: Output<'static>,
}

impl Outputs for Relays {
    fn set_pump(&mut self, pump: u32, on: bool) {
        let level = if on { Level::High } else { Level::Low };
        match pump {
            dese_esp32c3::station::ACID_PUMP => self.acid.set_level(level),
            dese_esp32c3::station::CHLORINE_PUMP => self.chlorine.set_level(level),
            _ => {}
        }
        println!("dese: pump {pump} {}", if on { "on" } else { "off" });
    }

    fn restart(&mut self) {
        println!("dese: restarting");
        esp_hal::system::software_reset();
    }
}

#[cfg(feature = "adc")]
mod adc {
    //! Probe boards on ADC1: GPIO0 pH, GPIO1 thermistor, GPIO3 chlorine.

    use dese_esp32c3::sensors::{AdcProbes, AnalogInput, Channel};
    use esp_hal::analog::adc::{Adc, AdcCalCurve, AdcConfig, AdcPin, Attenuation};
    use esp_hal::peripherals::{ADC1, GPIO0, GPIO1, GPIO3};

    type Pin<P> = AdcPin<P, ADC1<'static>, AdcCalCurve<ADC1<'static>>>;

    /// Samples averaged per reading.
    const OVERSAMPLING: u32 = 16;

    pub(super) struct Inputs {
        adc: Adc<'static, ADC1<'static>, esp_hal::Blocking>,
        ph: Pin<GPIO0<'static>>,
        temperature: Pin<GPIO1<'static>>,
        chlorine: Pin<GPIO3<'static>>,
    }

    pub(super) fn probes(
        adc: ADC1<'static>,
        ph: GPIO0<'static>,
        temperature: GPIO1<'static>,
        chlorine: GPIO3<'static>,
    ) -> AdcProbes<Inputs> {
        let mut config = AdcConfig::new();
        let ph = config.enable_pin_with_cal(ph, Attenuation::_11dB);
        let temperature = config.enable_pin_with_cal(temperature, Attenuation::_11dB);
        let chlorine = config.enable_pin_with_cal(chlorine, Attenuation::_11dB);
        AdcProbes::new(Inputs {
            adc: Adc::new(adc, config),
            ph,
            temperature,
            chlorine,
        })
    }

    fn sample<P: esp_hal::analog::adc::AdcChannel>(
        adc: &mut Adc<'static, ADC1<'static>, esp_hal::Blocking>,
        pin: &mut Pin<P>,
    ) -> Option<f64> {
        let mut total = 0u32;
        for _ in 0..OVERSAMPLING {
            let millivolts = loop {
                match adc.read_oneshot(pin) {
                    Ok(value) => break value,
                    Err(nb::Error::WouldBlock) => continue,
                    Err(nb::Error::Other(())) => return None,
                }
            };
            total += u32::from(millivolts);
        }
        Some(f64::from(total) / f64::from(OVERSAMPLING))
    }

    impl AnalogInput for Inputs {
        fn millivolts(&mut self, channel: Channel) -> Option<f64> {
            match channel {
                Channel::Ph => sample(&mut self.adc, &mut self.ph),
                Channel::Temperature => sample(&mut self.adc, &mut self.temperature),
                Channel::Chlorine => sample(&mut self.adc, &mut self.chlorine),
            }
        }
    }
}

#[embassy_executor::task]
async fn wifi_task(mut controller: WifiController<'static>) {
    loop {
        match controller.connect_async().await {
            Ok(_) => {
                println!("dese: WiFi connected");
                let _ = controller.wait_for_disconnect_async().await;
                println!("dese: WiFi lost");
            }
            Err(error) => println!("dese: WiFi connection failed: {error:?}"),
        }
        Timer::after(Duration::from_secs(5)).await;
    }
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Interface>) {
    runner.run().await
}
