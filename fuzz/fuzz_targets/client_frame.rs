//! The controller's reading of WebSocket client frames, on arbitrary text:
//! subscriptions, data messages, events and requests. Nothing may panic;
//! a data message that reads writes out and reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zeek_mgmt_agent::broker::message::{parse_subscriptions, DataMessage, Event};
use zeek_mgmt_agent::controller::requests;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_subscriptions(text);
    let Ok(message) = DataMessage::parse(text) else {
        return;
    };
    let again = DataMessage::parse(&message.to_json()).expect("a written message reads back");
    // Reals may not survive JSON's decimal form bit for bit; everything
    // else does.
    if !message.to_json().contains("\"real\"") {
        assert_eq!(again, message);
    }
    if let Some(event) = Event::from_value(&message.value) {
        let _ = requests::read(&event);
    }
});
