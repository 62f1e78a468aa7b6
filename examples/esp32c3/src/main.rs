//! The DESE reference firmware for the ESP32-C3: WiFi station, DHCP, SNTP, and the dese-device
//! engine over MQTT 3.1.1 to the broker named at build time. See docs/firmware.md.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "dese-esp32c3 is firmware: build it with `cargo build --release` in examples/esp32c3 \
         (target riscv32imc-unknown-none-elf) and flash it with espflash; see docs/firmware.md"
    );
    std::process::exit(2);
}

#[cfg(target_os = "none")]
mod firmware;
