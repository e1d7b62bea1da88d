//! Zeek's Broker JSON values, as its WebSocket API carries them: every value
//! an object `{"@data-type": T, "data": D}`, records as vectors of their
//! fields in declaration order, events as `[1, 1, [name, [args]]]` inside a
//! data message. The controller speaks it to `zeek-client`.
//!
//! - [`Value`]: one typed value, written compactly with its keys in Zeek's
//!   order, read from any JSON;
//! - [`message`]: the frames of the WebSocket session (subscriptions, ack,
//!   data messages, error frames) and events inside data messages;
//! - [`records`]: the Management records and enums in this encoding.

pub mod message;
pub mod records;

use std::fmt;

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value as Json;

/// One Broker value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An unset `&optional` field.
    None,
    Boolean(bool),
    Count(u64),
    Integer(i64),
    Real(f64),
    String(String),
    Address(String),
    Subnet(String),
    /// `2200/tcp`.
    Port(String),
    Timestamp(String),
    Timespan(String),
    /// A fully qualified enum name: `Management::RUNNING`.
    EnumValue(String),
    Vector(Vec<Value>),
    Set(Vec<Value>),
    Table(Vec<(Value, Value)>),
}

/// Why a JSON value is not a Broker value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub String);

fn bad(what: impl fmt::Display) -> ValueError {
    ValueError(what.to_string())
}

impl Value {
    /// The `@data-type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "none",
            Value::Boolean(_) => "boolean",
            Value::Count(_) => "count",
            Value::Integer(_) => "integer",
            Value::Real(_) => "real",
            Value::String(_) => "string",
            Value::Address(_) => "address",
            Value::Subnet(_) => "subnet",
            Value::Port(_) => "port",
            Value::Timestamp(_) => "timestamp",
            Value::Timespan(_) => "timespan",
            Value::EnumValue(_) => "enum-value",
            Value::Vector(_) => "vector",
            Value::Set(_) => "set",
            Value::Table(_) => "table",
        }
    }

    /// A string value.
    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    /// `none` for `None`, else `f` of the value.
    pub fn optional<T>(v: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
        v.map(f).unwrap_or(Value::None)
    }

    /// Reads a typed value from its JSON object.
    pub fn from_json(json: &Json) -> Result<Value, ValueError> {
        let obj = json
            .as_object()
            .ok_or_else(|| bad("a value must be an object"))?;
        let kind = obj
            .get("@data-type")
            .and_then(Json::as_str)
            .ok_or_else(|| bad("a value needs a \"@data-type\" string"))?;
        let data = obj.get("data");
        Value::from_parts(kind, data.unwrap_or(&Json::Null))
    }

    /// Reads a value from its `@data-type` and `data`.
    pub fn from_parts(kind: &str, data: &Json) -> Result<Value, ValueError> {
        let text = || {
            data.as_str()
                .map(str::to_owned)
                .ok_or_else(|| bad(format!("a {kind} needs a string")))
        };
        let list = || {
            data.as_array()
                .ok_or_else(|| bad(format!("a {kind} needs an array")))
        };
        Ok(match kind {
            "none" => Value::None,
            "boolean" => Value::Boolean(data.as_bool().ok_or_else(|| bad("not a boolean"))?),
            "count" => Value::Count(data.as_u64().ok_or_else(|| bad("not a count"))?),
            "integer" => Value::Integer(data.as_i64().ok_or_else(|| bad("not an integer"))?),
            "real" => Value::Real(data.as_f64().ok_or_else(|| bad("not a real"))?),
            "string" => Value::String(text()?),
            "address" => Value::Address(text()?),
            "subnet" => Value::Subnet(text()?),
            "port" => Value::Port(text()?),
            "timestamp" => Value::Timestamp(text()?),
            "timespan" => Value::Timespan(text()?),
            "enum-value" => Value::EnumValue(text()?),
            "vector" => Value::Vector(
                list()?
                    .iter()
                    .map(Value::from_json)
                    .collect::<Result<_, _>>()?,
            ),
            "set" => Value::Set(
                list()?
                    .iter()
                    .map(Value::from_json)
                    .collect::<Result<_, _>>()?,
            ),
            "table" => Value::Table(
                list()?
                    .iter()
                    .map(|e| {
                        let key = e
                            .get("key")
                            .ok_or_else(|| bad("a table entry needs a key"))?;
                        let value = e
                            .get("value")
                            .ok_or_else(|| bad("a table entry needs a value"))?;
                        Ok((Value::from_json(key)?, Value::from_json(value)?))
                    })
                    .collect::<Result<_, ValueError>>()?,
            ),
            other => return Err(bad(format!("unknown @data-type {other:?}"))),
        })
    }

    /// The elements of a vector or a set.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::Vector(v) | Value::Set(v) => Some(v),
            _ => None,
        }
    }

    /// The text of a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Compact JSON, keys in Zeek's order.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The `data` part of a value, serialized on its own.
struct Data<'a>(&'a Value);

impl Serialize for Data<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::None => s.serialize_map(Some(0))?.end(),
            Value::Boolean(b) => s.serialize_bool(*b),
            Value::Count(n) => s.serialize_u64(*n),
            Value::Integer(n) => s.serialize_i64(*n),
            Value::Real(x) => s.serialize_f64(*x),
            Value::String(t)
            | Value::Address(t)
            | Value::Subnet(t)
            | Value::Port(t)
            | Value::Timestamp(t)
            | Value::Timespan(t)
            | Value::EnumValue(t) => s.serialize_str(t),
            Value::Vector(v) | Value::Set(v) => {
                let mut seq = s.serialize_seq(Some(v.len()))?;
                for e in v {
                    seq.serialize_element(e)?;
                }
                seq.end()
            }
            Value::Table(t) => {
                let mut seq = s.serialize_seq(Some(t.len()))?;
                for (k, v) in t {
                    seq.serialize_element(&Entry(k, v))?;
                }
                seq.end()
            }
        }
    }
}

struct Entry<'a>(&'a Value, &'a Value);

impl Serialize for Entry<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("key", self.0)?;
        m.serialize_entry("value", self.1)?;
        m.end()
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("@data-type", self.type_name())?;
        m.serialize_entry("data", &Data(self))?;
        m.end()
    }
}

/// Writes the two keys of `value` into a map being serialized (a data
/// message carries its value's keys at its own top level).
pub(crate) fn serialize_inline<M: SerializeMap>(m: &mut M, value: &Value) -> Result<(), M::Error> {
    m.serialize_entry("@data-type", value.type_name())?;
    m.serialize_entry("data", &Data(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_compactly_with_the_type_first() {
        let v = Value::Vector(vec![
            Value::None,
            Value::Boolean(true),
            Value::Count(1),
            Value::Integer(-3),
            Value::string("a\"b\n\u{1b}"),
            Value::Port("2200/tcp".into()),
            Value::EnumValue("Management::RUNNING".into()),
            Value::Table(vec![(Value::string("K"), Value::string("V"))]),
            Value::Set(vec![]),
        ]);
        assert_eq!(
            v.to_json(),
            r#"{"@data-type":"vector","data":[{"@data-type":"none","data":{}},{"@data-type":"boolean","data":true},{"@data-type":"count","data":1},{"@data-type":"integer","data":-3},{"@data-type":"string","data":"a\"b\n\u001b"},{"@data-type":"port","data":"2200/tcp"},{"@data-type":"enum-value","data":"Management::RUNNING"},{"@data-type":"table","data":[{"key":{"@data-type":"string","data":"K"},"value":{"@data-type":"string","data":"V"}}]},{"@data-type":"set","data":[]}]}"#
        );
    }

    #[test]
    fn values_read_back_what_they_wrote() {
        let v = Value::Vector(vec![
            Value::None,
            Value::Real(1.5),
            Value::Address("::1".into()),
            Value::Subnet("10.0.0.0/8".into()),
            Value::Timestamp("2026-12-01T13:40:00.000".into()),
            Value::Timespan("10s".into()),
            Value::Table(vec![(Value::Count(1), Value::Set(vec![Value::Integer(2)]))]),
        ]);
        let json: Json = serde_json::from_str(&v.to_json()).expect("json");
        assert_eq!(Value::from_json(&json), Ok(v));
    }

    #[test]
    fn malformed_values_say_what_is_wrong() {
        for (text, why) in [
            ("1", "must be an object"),
            (r#"{"data":1}"#, "@data-type"),
            (r#"{"@data-type":"count","data":-1}"#, "not a count"),
            (r#"{"@data-type":"count","data":1.5}"#, "not a count"),
            (r#"{"@data-type":"string","data":1}"#, "needs a string"),
            (r#"{"@data-type":"vector","data":{}}"#, "needs an array"),
            (
                r#"{"@data-type":"table","data":[{"key":{"@data-type":"none"}}]}"#,
                "needs a value",
            ),
            (r#"{"@data-type":"bogus","data":1}"#, "unknown @data-type"),
        ] {
            let json: Json = serde_json::from_str(text).expect("json");
            let e = Value::from_json(&json).expect_err(text);
            assert!(e.0.contains(why), "{text}: {e}");
        }
        // `none` ignores its data.
        let json: Json = serde_json::from_str(r#"{"@data-type":"none"}"#).expect("json");
        assert_eq!(Value::from_json(&json), Ok(Value::None));
    }
}
