//! Fuzzes the JSON-RPC envelope view.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = toolgate_protocol::Envelope::parse(data) {
        let _ = env.arguments_value();
        let _ = env.era();
        let _ = env.id_text();
    }
});
