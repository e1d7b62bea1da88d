//! The kinds of value a setting holds, each with one text syntax shared by
//! flags, environment variables and the TOML file, and the form `--help`
//! and the documentation show its default in.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::ValueParser;

/// A kind of setting value.
pub trait Value: Clone + Send + Sync + 'static {
    /// The placeholder of `--help` (`--stop-grace <DURATION>`).
    const PLACEHOLDER: &'static str;
    /// A switch: the flag alone means `true` (`--port-checks`), and
    /// `--port-checks=false` undoes a file's `true`.
    const SWITCH: bool = false;

    /// The value of a flag, an environment variable or the file's text.
    fn parse(text: &str) -> Result<Self, String>;

    /// The value as the flags would take it; `None` for an unset optional
    /// value.
    fn show(&self) -> Option<String>;

    /// 0 of a number, a duration or a port.
    fn is_zero(&self) -> bool {
        false
    }

    /// How clap reads it.
    fn parser() -> ValueParser {
        ValueParser::new(Self::parse as fn(&str) -> Result<Self, String>)
    }
}

impl Value for Duration {
    const PLACEHOLDER: &'static str = "DURATION";
    fn parse(text: &str) -> Result<Self, String> {
        super::parse_duration(text)
    }
    fn show(&self) -> Option<String> {
        Some(show_duration(*self))
    }
    fn is_zero(&self) -> bool {
        Duration::is_zero(self)
    }
}

/// A duration in the largest unit that writes it whole: `1h`, `2m`, `5s`,
/// `250ms`.
pub fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".to_owned(),
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1000) => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

/// A `u16` setting is a port: `2151` or `2151/tcp`.
impl Value for u16 {
    const PLACEHOLDER: &'static str = "PORT";
    fn parse(text: &str) -> Result<Self, String> {
        super::parse_port(text)
    }
    fn show(&self) -> Option<String> {
        Some(self.to_string())
    }
    fn is_zero(&self) -> bool {
        *self == 0
    }
}

macro_rules! number {
    ($($t:ty),*) => {$(
        impl Value for $t {
            const PLACEHOLDER: &'static str = "N";
            fn parse(text: &str) -> Result<Self, String> {
                text.trim()
                    .parse()
                    .map_err(|_| format!("{text:?} is not a whole number from 0 to {}", <$t>::MAX))
            }
            fn show(&self) -> Option<String> {
                Some(self.to_string())
            }
            fn is_zero(&self) -> bool {
                *self == 0
            }
        }
    )*};
}
number!(u32, u64, usize);

impl Value for f64 {
    const PLACEHOLDER: &'static str = "NUMBER";
    fn parse(text: &str) -> Result<Self, String> {
        match text.trim().parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(n),
            _ => Err(format!("{text:?} is not a number")),
        }
    }
    fn show(&self) -> Option<String> {
        Some(self.to_string())
    }
    fn is_zero(&self) -> bool {
        *self == 0.0
    }
}

impl Value for bool {
    const PLACEHOLDER: &'static str = "BOOL";
    const SWITCH: bool = true;
    fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!("{text:?} is not true or false")),
        }
    }
    fn show(&self) -> Option<String> {
        Some(self.to_string())
    }
}

impl Value for String {
    const PLACEHOLDER: &'static str = "NAME";
    fn parse(text: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }
    fn show(&self) -> Option<String> {
        Some(self.clone())
    }
}

impl Value for PathBuf {
    const PLACEHOLDER: &'static str = "PATH";
    fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("an empty path".to_owned());
        }
        Ok(PathBuf::from(text))
    }
    fn show(&self) -> Option<String> {
        Some(self.display().to_string())
    }
}

impl Value for IpAddr {
    const PLACEHOLDER: &'static str = "ADDR";
    fn parse(text: &str) -> Result<Self, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address"))
    }
    fn show(&self) -> Option<String> {
        Some(self.to_string())
    }
}

impl Value for std::net::SocketAddr {
    const PLACEHOLDER: &'static str = "ADDR:PORT";
    fn parse(text: &str) -> Result<Self, String> {
        text.trim().parse().map_err(|_| {
            format!("{text:?} is not an address and port (127.0.0.1:9101, [::1]:9101; port 0 picks a free one)")
        })
    }
    fn show(&self) -> Option<String> {
        Some(self.to_string())
    }
}

/// An optional value: unset by default, set by any source.
impl<T: Value> Value for Option<T> {
    const PLACEHOLDER: &'static str = T::PLACEHOLDER;
    fn parse(text: &str) -> Result<Self, String> {
        T::parse(text).map(Some)
    }
    fn show(&self) -> Option<String> {
        self.as_ref().and_then(T::show)
    }
}

/// A `clap::ValueEnum` as a setting: its names in every source, its possible
/// values in `--help`.
macro_rules! value_enum_setting {
    ($t:ty, $placeholder:literal) => {
        impl $crate::settings::Value for $t {
            const PLACEHOLDER: &'static str = $placeholder;
            fn parse(text: &str) -> Result<Self, String> {
                <$t as clap::ValueEnum>::from_str(text.trim(), false)
            }
            fn show(&self) -> Option<String> {
                clap::ValueEnum::to_possible_value(self).map(|v| v.get_name().to_owned())
            }
            fn parser() -> clap::builder::ValueParser {
                clap::builder::EnumValueParser::<$t>::new().into()
            }
        }
    };
}
pub(crate) use value_enum_setting;

/// The TOML form: a value in the flags' syntax, or a TOML number or boolean
/// written as such.
pub(crate) mod de {
    use serde::{de::Error, Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Native {
        Bool(bool),
        Int(i64),
        Float(f64),
        Text(String),
    }

    pub fn value<'de, D: Deserializer<'de>, T: super::Value>(d: D) -> Result<Option<T>, D::Error> {
        let text = match Native::deserialize(d)? {
            Native::Bool(b) => b.to_string(),
            Native::Int(i) => i.to_string(),
            Native::Float(f) => f.to_string(),
            Native::Text(t) => t,
        };
        T::parse(&text).map(Some).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_is_shown_in_the_largest_whole_unit_and_parses_back() {
        for (d, text) in [
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(5), "5s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(show_duration(d), text);
            assert_eq!(Duration::parse(text), Ok(d));
        }
    }

    #[test]
    fn each_kind_refuses_what_it_cannot_hold() {
        assert!(u16::parse("65536").is_err());
        assert_eq!(u16::parse("2151/tcp"), Ok(2151));
        assert!(u32::parse("-1").is_err());
        assert!(bool::parse("yes").is_err());
        assert!(f64::parse("NaN").is_err());
        assert!(PathBuf::parse("").is_err());
        assert!(IpAddr::parse("localhost").is_err());
        assert_eq!(
            Option::<PathBuf>::parse("/x"),
            Ok(Some(PathBuf::from("/x")))
        );
        assert_eq!(Option::<PathBuf>::None.show(), None);
    }
}
