//! Untrusted bytes from the WebSocket: decode never panics, and whatever
//! decodes re-encodes to a frame that decodes the same.
#![no_main]
use asktable_feishu_gateway::feishu::frame::Frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = Frame::decode(data) {
        assert_eq!(Frame::decode(&f.encode()).as_ref(), Ok(&f));
    }
});
