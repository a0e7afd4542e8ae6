//! The allowlist entry parser (each imported line): whatever it accepts is a
//! network in canonical form, which it accepts again unchanged.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else { return };
    if let Ok(net) = gatehouse::service::allowlist::normalise_cidr(line) {
        let again = gatehouse::service::allowlist::normalise_cidr(&net.to_string())
            .expect("the canonical form parses again");
        assert_eq!(again, net);
        assert_eq!(net, net.trunc(), "host bits are zero");
    }
});
