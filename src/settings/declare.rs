//! One declaration per setting, from which a daemon's settings follow: the
//! resolved struct and its defaults, the layer one source gives (flags,
//! environment, file), the flags with `--help`'s text and defaults, the
//! TOML keys, the environment variables, and the refusal of 0 where 0
//! cannot run.

use clap::builder::ValueParser;

/// What 0 means for a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zero {
    /// A value like any other (a count, a port: 0 picks a free one).
    Value,
    /// Refused: a period, timeout or limit of 0 cannot run.
    Refused,
    /// Turns the thing off.
    Off,
}

/// One setting as flags, `--help` and the documentation show it.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The TOML key; the flag is the key with dashes.
    pub key: &'static str,
    /// `--help`'s sentence, from the declaration's doc comment.
    pub doc: String,
    pub env: Option<&'static str>,
    pub alias: Option<&'static str>,
    /// The default as the flags take it (`5s`, `2151`), or as the
    /// declaration words it (`agent-HOSTNAME`); `None`: unset.
    pub default: Option<String>,
    /// The default is the value's own text, which the flag takes back.
    pub literal: bool,
    pub zero: Zero,
    pub placeholder: &'static str,
    pub switch: bool,
}

impl Spec {
    /// `--listen-port`.
    pub fn flag(&self) -> String {
        format!("--{}", self.key.replace('_', "-"))
    }

    /// `--help`'s text: the sentence, what 0 does, the variable and the
    /// default.
    pub fn help(&self) -> String {
        let mut help = self.doc.clone();
        match self.zero {
            Zero::Refused => help.push_str(" (more than 0)"),
            Zero::Off => help.push_str("; 0 turns it off"),
            Zero::Value => {}
        }
        if let Some(env) = self.env {
            help.push_str(&format!(" [env: {env}]"));
        }
        if let Some(default) = &self.default {
            help.push_str(&format!(" [default: {default}]"));
        }
        help
    }

    /// The flag, reading its value with `parser`.
    pub fn arg(&self, parser: ValueParser) -> clap::Arg {
        let mut arg = clap::Arg::new(self.key)
            .long(self.flag()[2..].to_owned())
            .help(self.help())
            .value_parser(parser)
            .action(clap::ArgAction::Set)
            .value_name(self.placeholder);
        if self.switch {
            arg = arg
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("true");
        }
        if let Some(alias) = self.alias {
            arg = arg.alias(alias);
        }
        arg
    }
}

/// A doc comment's lines as one sentence.
pub fn doc(lines: &[&str]) -> String {
    lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The hint of a refused 0: which settings take it.
pub fn zero_hint(specs: &[Spec]) -> String {
    let off: Vec<&str> = specs
        .iter()
        .filter(|s| s.zero == Zero::Off)
        .map(|s| s.key)
        .collect();
    match off.as_slice() {
        [] => String::new(),
        [one] => format!("; only {one} takes 0, to mean off"),
        [rest @ .., last] => format!("; only {} and {last} take 0, to mean off", rest.join(", ")),
    }
}

macro_rules! opt {
    () => {
        None
    };
    ($x:expr) => {
        Some($x)
    };
}

macro_rules! zero {
    () => {
        $crate::settings::Zero::Value
    };
    ($rule:ident) => {
        $crate::settings::Zero::$rule
    };
}

macro_rules! literal {
    () => {
        true
    };
    ($shown:literal) => {
        false
    };
}

macro_rules! shown {
    ($value:expr) => {
        $crate::settings::Value::show(&$value)
    };
    ($value:expr, $shown:literal) => {
        Some($shown.to_owned())
    };
}

/// Declares a daemon's settings, one entry each:
///
/// ```text
/// /// --help's sentence
/// key: Type = default [, shown "TEXT"] [, env "VAR"] [, alias "flag"] [, zero Refused|Off];
/// ```
///
/// and generates `Config` (the resolved settings, with `Default`),
/// `Settings` (what one source gives: serde for the file, clap for flags),
/// `Settings::specs`, `Settings::apply`, `Config::check_zero`; the
/// `tables` block adds tables of the file (not flags) to `Settings`, the
/// `extra` block plain fields to `Config`, which no source sets.
macro_rules! declare_settings {
    (
        $(#[$cmeta:meta])*
        pub struct $Config:ident;
        $(#[$smeta:meta])*
        pub struct $Settings:ident;
        $(
            $(#[doc = $doc:literal])*
            $name:ident : $ty:ty = $default:expr
                $(, shown $shown:literal)?
                $(, env $env:literal)?
                $(, alias $alias:literal)?
                $(, zero $zero:ident)? ;
        )*
        $(
            @tables {
                $( $(#[$tmeta:meta])* $tname:ident : $tty:ty ; )*
            }
        )?
        $(
            @extra {
                $( $(#[$emeta:meta])* $ename:ident : $ety:ty = $edefault:expr ; )*
            }
        )?
    ) => {
        $(#[$cmeta])*
        #[derive(Debug, Clone)]
        pub struct $Config {
            $( $(#[doc = $doc])* pub $name: $ty, )*
            $($( $(#[$emeta])* pub $ename: $ety, )*)?
        }

        impl Default for $Config {
            fn default() -> Self {
                $Config {
                    $( $name: $default, )*
                    $($( $ename: $edefault, )*)?
                }
            }
        }

        $(#[$smeta])*
        #[derive(Debug, Clone, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $Settings {
            $(
                #[serde(default, deserialize_with = "crate::settings::de::value")]
                pub $name: Option<$ty>,
            )*
            $($(
                $(#[$tmeta])*
                #[serde(default)]
                pub $tname: Option<$tty>,
            )*)?
        }

        impl $Settings {
            /// Every setting as flags, `--help` and the documentation show it.
            pub fn specs() -> Vec<$crate::settings::Spec> {
                let d = $Config::default();
                vec![$(
                    $crate::settings::Spec {
                        key: stringify!($name),
                        doc: $crate::settings::doc(&[$($doc),*]),
                        env: $crate::settings::opt!($($env)?),
                        alias: $crate::settings::opt!($($alias)?),
                        default: $crate::settings::shown!(d.$name $(, $shown)?),
                        literal: $crate::settings::literal!($($shown)?),
                        zero: $crate::settings::zero!($($zero)?),
                        placeholder: <$ty as $crate::settings::Value>::PLACEHOLDER,
                        switch: <$ty as $crate::settings::Value>::SWITCH,
                    },
                )*]
            }

            /// Reads a TOML file whose keys are the flags' names, with
            /// underscores.
            pub fn from_file(path: &std::path::Path) -> Result<$Settings, $crate::settings::ConfigError> {
                $crate::settings::from_file(path)
            }

            /// Lays these settings over `config`.
            pub fn apply(self, config: &mut $Config) {
                $( if let Some(v) = self.$name { config.$name = v; } )*
            }

            /// The environment's settings as flags, to be laid under the
            /// command line's; an invalid value is named by its variable.
            pub fn env_args(
                lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
            ) -> Result<Vec<std::ffi::OsString>, $crate::settings::ConfigError> {
                $crate::settings::env_args::<$Settings>(&Self::specs(), lookup)
            }
        }

        #[cfg(test)]
        impl $Settings {
            /// Whether these settings, laid over the defaults, leave them
            /// as they are.
            pub fn keeps_defaults(self) -> bool {
                let mut c = $Config::default();
                self.apply(&mut c);
                format!("{c:?}") == format!("{:?}", $Config::default())
            }
        }

        impl $Config {
            /// Refuses 0 where the declaration says it cannot run.
            pub fn check_zero(&self) -> Result<(), $crate::settings::ConfigError> {
                $(
                    if $crate::settings::zero!($($zero)?) == $crate::settings::Zero::Refused
                        && $crate::settings::Value::is_zero(&self.$name)
                    {
                        return Err($crate::settings::ConfigError::Zero {
                            key: stringify!($name),
                            hint: $crate::settings::zero_hint(&$Settings::specs()),
                        });
                    }
                )*
                Ok(())
            }
        }

        impl clap::FromArgMatches for $Settings {
            fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
                let mut s = Self::default();
                s.update_from_arg_matches(m)?;
                Ok(s)
            }

            fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
                $(
                    match m.try_get_one::<$ty>(stringify!($name)) {
                        Ok(Some(v)) => self.$name = Some(v.clone()),
                        Ok(None) => {}
                        Err(e) => return Err(clap::Error::raw(clap::error::ErrorKind::InvalidValue, e)),
                    }
                )*
                Ok(())
            }
        }

        impl clap::Args for $Settings {
            fn augment_args(cmd: clap::Command) -> clap::Command {
                let parsers = [$( <$ty as $crate::settings::Value>::parser() ),*];
                Self::specs()
                    .into_iter()
                    .zip(parsers)
                    .fold(cmd, |cmd, (spec, parser)| cmd.arg(spec.arg(parser)))
            }

            fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
                Self::augment_args(cmd)
            }
        }
    };
}

pub(crate) use {declare_settings, literal, opt, shown, zero};
