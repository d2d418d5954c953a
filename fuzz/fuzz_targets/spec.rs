//! Fuzz target: any bytes given to the interfaces(5) parser, and the model for whatever
//! parses, must give a result or an input error, never a panic or a hang.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match bondcheck::spec::parse(Path::new("fuzz/interfaces"), text) {
            Ok(spec) => {
                bondcheck::model::predict(&spec, bondcheck::ifenslave::Applier::Netlink);
                bondcheck::model::predict(&spec, bondcheck::ifenslave::Applier::Ifupdown);
            }
            Err(e) => assert_eq!(e.exit_code(), 2, "{e}"),
        }
    }
});
