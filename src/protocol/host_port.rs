//! `host:port` as every program writes and reads it: an IPv6 address in
//! brackets (`[::1]:2151`), the port as a number or `2151/tcp`.

use std::fmt;
use std::str::FromStr;

use crate::api::types::Port;

/// An address to dial or to name: a host (name or address, without
/// brackets) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

/// Why a text is not `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostPortError {
    #[error("{0:?} is not host:port")]
    NoPort(String),
    #[error("{0:?} has no host")]
    NoHost(String),
    #[error("{text:?}: an IPv6 address needs brackets, as in [{host}]:PORT")]
    BareIpv6 { text: String, host: String },
    #[error("{0}")]
    BadPort(String),
}

impl HostPort {
    pub fn new(host: impl Into<String>, port: u16) -> HostPort {
        HostPort {
            host: host.into(),
            port,
        }
    }
}

impl FromStr for HostPort {
    type Err = HostPortError;

    fn from_str(text: &str) -> Result<HostPort, HostPortError> {
        let t = text.trim();
        let (host, port) = t
            .rsplit_once(':')
            .ok_or_else(|| HostPortError::NoPort(text.to_owned()))?;
        let bracketed = host.starts_with('[') && host.ends_with(']');
        if host.contains(':') && !bracketed {
            return Err(HostPortError::BareIpv6 {
                text: text.to_owned(),
                host: host.to_owned(),
            });
        }
        let port = port.parse::<Port>().map_err(HostPortError::BadPort)?.number;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(HostPortError::NoHost(text.to_owned()));
        }
        Ok(HostPort::new(host, port))
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_brackets_for_ipv6() {
        for (text, host, port, shown) in [
            ("127.0.0.1:2151", "127.0.0.1", 2151, "127.0.0.1:2151"),
            ("[::1]:2151", "::1", 2151, "[::1]:2151"),
            ("sensor-1:2151/tcp", "sensor-1", 2151, "sensor-1:2151"),
        ] {
            let hp: HostPort = text.parse().expect(text);
            assert_eq!(hp, HostPort::new(host, port));
            assert_eq!(hp.to_string(), shown);
        }
    }

    #[test]
    fn says_what_is_wrong() {
        let err = |t: &str| t.parse::<HostPort>().expect_err(t).to_string();
        assert_eq!(err("nohostport"), "\"nohostport\" is not host:port");
        assert_eq!(err(":80"), "\":80\" has no host");
        assert!(err("::1").contains("needs brackets"));
        assert!(!err("h:65536").is_empty());
        assert!(!err("h:").is_empty());
    }
}
