//! The configuration loader: any text is either a configuration or errors
//! that each name a key; it never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let dir = std::env::temp_dir();
    if let Err(errors) = gatehouse::config::Config::from_toml_str(text, &dir, "fuzz", &[]) {
        for e in errors.0 {
            assert!(!e.message.is_empty());
        }
    }
});
