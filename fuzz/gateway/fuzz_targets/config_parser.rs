//! Fuzzes `toolgate.toml` parsing and validation: any text gives a config or errors with
//! their paths, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dir = std::env::temp_dir();
    if let Err(e) = toolgate_gateway::Config::parse(text, &dir.join("fuzz.toml"), &dir) {
        assert!(!e.errors.is_empty());
    }
});
