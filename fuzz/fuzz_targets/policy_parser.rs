//! Fuzzes the policy parser and, for documents that load, one evaluation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(loaded) = toolgate_policy::load_str(text) {
        let args = serde_json::json!({"amount": 5, "currency": "usd"});
        for tool in loaded.policy.tools.keys().take(4) {
            let call = toolgate_policy::Call { tool, args: &args, grant: "g", identity: "i", session: "s", server: "v" };
            let _ = toolgate_policy::evaluate(&call, &loaded.policy, &toolgate_policy::Facts::default(), 0);
        }
        let _ = toolgate_policy::testing::run_tests(&loaded.policy);
    }
});
