//! What every daemon's settings share: one declaration per setting
//! ([`declare_settings`]), the syntax of each kind of value in flags,
//! environment and TOML file alike ([`Value`]), environment variables laid
//! under the command line, the TOML file, and the errors of all three.

use std::path::PathBuf;
use std::time::Duration;

use crate::api::types::Port;

mod declare;
mod value;

pub(crate) use declare::{declare_settings, literal, opt, shown, zero};
pub use declare::{doc, zero_hint, Spec, Zero};
pub(crate) use value::{de, value_enum_setting};
pub use value::{show_duration, Value};

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{var}: {message}")]
    Env { var: &'static str, message: String },
    #[error("{0}")]
    Usage(&'static str),
    #[error("{key} (--{}) must be more than 0{hint}", key.replace('_', "-"))]
    Zero { key: &'static str, hint: String },
}

/// `PREFIX-<hostname>`, or `PREFIX` alone when the host name cannot be
/// read: the default name of a daemon.
pub fn host_name_or(prefix: &str) -> String {
    match sysinfo::System::host_name().ok().filter(|h| !h.is_empty()) {
        Some(host) => format!("{prefix}-{host}"),
        None => prefix.to_owned(),
    }
}

/// A duration: a number with a unit (`500ms`, `1.5s`, `2m`, `1h`) or a
/// bare number of seconds (`10`, `0.25`). The one syntax of every duration
/// in flags, environment, the TOML file and the client.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        _ => f64::NAN,
    };
    match number.parse::<f64>().map(|n| n * scale) {
        Ok(secs) if secs.is_finite() && (0.0..=1.0e9).contains(&secs) => {
            Ok(Duration::from_secs_f64(secs))
        }
        _ => Err(format!(
            "{text:?} is not a duration (for example 500ms, 1.5s, 2m, or 10 for seconds)"
        )),
    }
}

/// A port, `2151` or `2151/tcp`.
pub fn parse_port(text: &str) -> Result<u16, String> {
    text.trim().parse::<Port>().map(|p| p.number)
}

/// The environment's settings as flags (`ZEEK_AGENT_PORT=2151` becomes
/// `--listen-port 2151`) for the settings `A` declares, each of `specs`
/// with a variable. Each value is checked here, so that an invalid one is
/// named by its variable, not by the flag.
pub fn env_args<A: clap::Args>(
    specs: &[Spec],
    lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Vec<std::ffi::OsString>, ConfigError> {
    let mut args = Vec::new();
    for spec in specs {
        let Some(var) = spec.env else { continue };
        let Some(value) = lookup(var) else { continue };
        let pair = if spec.switch {
            let mut f = std::ffi::OsString::from(format!("{}=", spec.flag()));
            f.push(&value);
            vec![f]
        } else {
            vec![std::ffi::OsString::from(spec.flag()), value.clone()]
        };
        let cmd = A::augment_args(clap::Command::new("env").no_binary_name(true));
        if let Err(e) = cmd.try_get_matches_from(&pair) {
            let reason = std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_else(|| e.kind().to_string());
            return Err(ConfigError::Env {
                var,
                message: format!("invalid value {value:?}: {reason}"),
            });
        }
        args.extend(pair);
    }
    Ok(args)
}

/// Reads a TOML settings file whose keys are the flags' names, with
/// underscores.
pub fn from_file<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Parses the process's command line with the environment's settings
/// (`env`, as flags from [`env_args`]) laid under it, so that flags beat
/// them.
pub fn parse_command_line<C: clap::Parser>(env: Vec<std::ffi::OsString>) -> C {
    let mut args = std::env::args_os();
    let mut argv: Vec<std::ffi::OsString> = args.next().into_iter().collect();
    argv.extend(env);
    argv.extend(args);
    C::parse_from(argv)
}

#[cfg(test)]
pub(crate) mod tests;
