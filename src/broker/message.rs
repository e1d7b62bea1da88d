//! The frames of Zeek's WebSocket API: the client's subscriptions, the
//! server's ack, data messages both ways, and error frames; and an event as
//! the value of a data message.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::Value as Json;

use super::{serialize_inline, Value};

/// The topic on which `zeek-client` sends requests and expects responses.
pub const CONTROLLER_TOPIC: &str = "zeek/management/controller";

/// `{"type":"ack","endpoint":...,"version":...}`: the server's first text
/// frame.
pub fn ack(endpoint: &str, version: &str) -> String {
    ordered(&[
        ("type", "ack"),
        ("endpoint", endpoint),
        ("version", version),
    ])
}

/// An error frame for a message the server cannot use; the connection
/// stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorFrame {
    pub code: &'static str,
    pub context: &'static str,
}

impl ErrorFrame {
    pub const NOT_AN_ARRAY: ErrorFrame = ErrorFrame {
        code: "deserialization_failed",
        context: "subscriptions not an array",
    };
    pub const NOT_A_STRING: ErrorFrame = ErrorFrame {
        code: "deserialization_failed",
        context: "individual subscription not a string",
    };
    pub const BAD_JSON: ErrorFrame = ErrorFrame {
        code: "deserialization_failed",
        context: "failed to decode JSON object",
    };
    pub const NO_TOPIC: ErrorFrame = ErrorFrame {
        code: "deserialization_failed",
        context: "no topic in top-level JSON object",
    };
    pub const NOT_AN_EVENT: ErrorFrame = ErrorFrame {
        code: "deserialization_failed",
        context: "failed to create Zeek event",
    };
    pub const INVALID_URI: ErrorFrame = ErrorFrame {
        code: "invalid_uri",
        context: "Invalid URI - use /v1/messages/json",
    };
    pub const INVALID_APPLICATION_NAME: ErrorFrame = ErrorFrame {
        code: "invalid_application_name",
        context: "Invalid X-Application-Name",
    };

    /// `{"type":"error","code":...,"context":...}`.
    pub fn to_json(&self) -> String {
        ordered(&[
            ("type", "error"),
            ("code", self.code),
            ("context", self.context),
        ])
    }
}

/// A flat object of strings, keys in the given order.
fn ordered(pairs: &[(&str, &str)]) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Json::from(*k).to_string());
        out.push(':');
        out.push_str(&Json::from(*v).to_string());
    }
    out.push('}');
    out
}

/// The client's first message: the topic prefixes it subscribes to.
pub fn parse_subscriptions(text: &str) -> Result<Vec<String>, ErrorFrame> {
    let json: Json = serde_json::from_str(text).map_err(|_| ErrorFrame::NOT_AN_ARRAY)?;
    let list = json.as_array().ok_or(ErrorFrame::NOT_AN_ARRAY)?;
    list.iter()
        .map(|e| {
            e.as_str()
                .map(str::to_owned)
                .ok_or(ErrorFrame::NOT_A_STRING)
        })
        .collect()
}

/// A data message: a value published on a topic.
#[derive(Debug, Clone, PartialEq)]
pub struct DataMessage {
    pub topic: String,
    pub value: Value,
}

impl DataMessage {
    /// Reads a data message a client sent.
    pub fn parse(text: &str) -> Result<DataMessage, ErrorFrame> {
        let json: Json = serde_json::from_str(text).map_err(|_| ErrorFrame::BAD_JSON)?;
        let obj = json.as_object().ok_or(ErrorFrame::BAD_JSON)?;
        if obj.get("type").and_then(Json::as_str) != Some("data-message") {
            return Err(ErrorFrame::BAD_JSON);
        }
        let topic = obj
            .get("topic")
            .and_then(Json::as_str)
            .ok_or(ErrorFrame::NO_TOPIC)?;
        let kind = obj
            .get("@data-type")
            .and_then(Json::as_str)
            .ok_or(ErrorFrame::BAD_JSON)?;
        let value = Value::from_parts(kind, obj.get("data").unwrap_or(&Json::Null))
            .map_err(|_| ErrorFrame::BAD_JSON)?;
        Ok(DataMessage {
            topic: topic.to_owned(),
            value,
        })
    }

    /// Compact JSON: `type`, `topic`, then the value's two keys.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Serialize for DataMessage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("type", "data-message")?;
        m.serialize_entry("topic", &self.topic)?;
        serialize_inline(&mut m, &self.value)?;
        m.end()
    }
}

/// A Zeek event: its fully qualified name and its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub args: Vec<Value>,
}

impl Event {
    /// The event a data message's value carries: `[1, 1, [name, [args],
    /// (metadata)]]`.
    pub fn from_value(value: &Value) -> Option<Event> {
        let Value::Vector(outer) = value else {
            return None;
        };
        match outer.as_slice() {
            [Value::Count(1), Value::Count(1), Value::Vector(inner)] => match inner.as_slice() {
                [Value::String(name), Value::Vector(args)]
                | [Value::String(name), Value::Vector(args), _] => Some(Event {
                    name: name.clone(),
                    args: args.clone(),
                }),
                _ => None,
            },
            _ => None,
        }
    }

    /// The value that carries this event (name and arguments, no metadata).
    pub fn into_value(self) -> Value {
        Value::Vector(vec![
            Value::Count(1),
            Value::Count(1),
            Value::Vector(vec![Value::String(self.name), Value::Vector(self.args)]),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `zeek-client get-nodes`' request, byte for byte.
    const GET_NODES: &str = r#"{"@data-type": "vector", "data": [{"@data-type": "count", "data": 1}, {"@data-type": "count", "data": 1}, {"@data-type": "vector", "data": [{"@data-type": "string", "data": "Management::Controller::API::get_nodes_request"}, {"@data-type": "vector", "data": [{"@data-type": "string", "data": "8bd35482-ed8e-11f1-9824-02fc00000001"}]}]}], "topic": "zeek/management/controller", "type": "data-message"}"#;

    #[test]
    fn zeek_clients_request_reads_as_an_event() {
        let m = DataMessage::parse(GET_NODES).expect("parse");
        assert_eq!(m.topic, CONTROLLER_TOPIC);
        let e = Event::from_value(&m.value).expect("event");
        assert_eq!(e.name, "Management::Controller::API::get_nodes_request");
        assert_eq!(
            e.args,
            [Value::string("8bd35482-ed8e-11f1-9824-02fc00000001")]
        );
        // Metadata, when present, is ignored.
        let mut with_meta = m.value.clone();
        if let Value::Vector(outer) = &mut with_meta {
            if let Some(Value::Vector(inner)) = outer.get_mut(2) {
                inner.push(Value::Vector(vec![]));
            }
        }
        assert_eq!(Event::from_value(&with_meta), Some(e));
    }

    #[test]
    fn events_are_written_as_zeek_writes_them() {
        let e = Event {
            name: "Management::Controller::API::get_instances_response".into(),
            args: vec![Value::string("r")],
        };
        let m = DataMessage {
            topic: CONTROLLER_TOPIC.into(),
            value: e.into_value(),
        };
        assert_eq!(
            m.to_json(),
            r#"{"type":"data-message","topic":"zeek/management/controller","@data-type":"vector","data":[{"@data-type":"count","data":1},{"@data-type":"count","data":1},{"@data-type":"vector","data":[{"@data-type":"string","data":"Management::Controller::API::get_instances_response"},{"@data-type":"vector","data":[{"@data-type":"string","data":"r"}]}]}]}"#
        );
        assert_eq!(DataMessage::parse(&m.to_json()), Ok(m));
    }

    #[test]
    fn acks_and_errors_keep_zeeks_key_order() {
        assert_eq!(
            ack("c-websocket-1", "8.2.2"),
            r#"{"type":"ack","endpoint":"c-websocket-1","version":"8.2.2"}"#
        );
        assert_eq!(
            ErrorFrame::INVALID_URI.to_json(),
            r#"{"type":"error","code":"invalid_uri","context":"Invalid URI - use /v1/messages/json"}"#
        );
    }

    #[test]
    fn subscriptions_are_an_array_of_strings() {
        assert_eq!(
            parse_subscriptions(r#"["zeek/management/controller"]"#),
            Ok(vec![CONTROLLER_TOPIC.to_owned()])
        );
        assert_eq!(parse_subscriptions("[]"), Ok(vec![]));
        assert_eq!(
            parse_subscriptions(r#"{"a":1}"#),
            Err(ErrorFrame::NOT_AN_ARRAY)
        );
        assert_eq!(parse_subscriptions("nope"), Err(ErrorFrame::NOT_AN_ARRAY));
        assert_eq!(
            parse_subscriptions(r#"["a", 1]"#),
            Err(ErrorFrame::NOT_A_STRING)
        );
    }

    #[test]
    fn bad_messages_get_zeeks_error_frames() {
        for (text, frame) in [
            ("not json", ErrorFrame::BAD_JSON),
            ("[1]", ErrorFrame::BAD_JSON),
            (
                r#"{"type":"data-message","@data-type":"count","data":1}"#,
                ErrorFrame::NO_TOPIC,
            ),
            (
                r#"{"type":"data-message","topic":"t","@data-type":"count","data":"x"}"#,
                ErrorFrame::BAD_JSON,
            ),
        ] {
            assert_eq!(DataMessage::parse(text), Err(frame), "{text}");
        }
        let not_event = DataMessage::parse(
            r#"{"type":"data-message","topic":"t","@data-type":"count","data":1}"#,
        )
        .expect("a data message");
        assert_eq!(Event::from_value(&not_event.value), None);
    }
}
