#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| guildhall_fuzz::targets::webhook_json(data));
