#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| shale_fuzz::user_token(data));
