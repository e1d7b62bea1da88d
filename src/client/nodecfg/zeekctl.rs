//! ZeekControl's `zeekctl.cfg` beside a `node.cfg`: the settings that have
//! a counterpart here are carried (the global `env_vars`, `ZeekPort`) or
//! named with the agent setting to use; the rest are named as not carried,
//! never dropped in silence.

use std::collections::BTreeMap;

/// What `zeekctl.cfg` says that the conversion uses or tells.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ZeekctlSettings {
    /// `env_vars`, for every node (a node's own win).
    pub env_vars: BTreeMap<String, String>,
    /// `ZeekPort`: the first port of the nodes.
    pub zeek_port: Option<u16>,
    /// One line per setting: carried, to set on the agent, or not carried.
    pub notes: Vec<String>,
}

/// How each setting with a counterpart maps: the agent's flag, and how
/// the value is written there.
fn agent_flag(key: &str, value: &str) -> Option<String> {
    let v = value.trim();
    Some(match key {
        "logrotationinterval" => format!("zeek-mgmt-agent --log-rotation-interval {v}s"),
        "logexpireinterval" => format!("zeek-mgmt-agent --archive-expire-days {}", days(v)?),
        "mindiskspace" => format!("zeek-mgmt-agent --min-disk-space {v}"),
        "logdir" => format!("zeek-mgmt-agent --archive-dir {v}"),
        "spooldir" => format!("zeek-mgmt-agent --cluster-dir {v}"),
        "stoptimeout" => format!("zeek-mgmt-agent --stop-grace {v}s"),
        "compresslogs" => "the agent's archive always compresses (gzip)".to_owned(),
        "sitepolicyscripts" => {
            format!("load them from local.zeek, or give each node `scripts = {v}`")
        }
        "zeekargs" => format!("give each node `options` (NAME=VALUE) for: {v}"),
        _ => return None,
    })
}

/// ZeekControl's interval (`30 day`, `12 hr`, `0`, bare days) in whole
/// days; `None` when it is not whole days.
fn days(v: &str) -> Option<u64> {
    if let Ok(d) = v.parse::<u64>() {
        return Some(d);
    }
    let (n, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = n.parse().ok()?;
    match unit.trim().trim_end_matches('s') {
        "day" => Some(n),
        "hr" if n.is_multiple_of(24) => Some(n / 24),
        "min" if n.is_multiple_of(1440) => Some(n / 1440),
        _ => None,
    }
}

/// Reads `zeekctl.cfg` (`KEY = VALUE` lines; keys not case-sensitive).
pub fn read(text: &str) -> Result<ZeekctlSettings, String> {
    let mut out = ZeekctlSettings::default();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("zeekctl config syntax error: {line}"));
        };
        let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
        let shown = format!("{} = {value}", key);
        if key == "env_vars" {
            for item in value.split(',').filter(|i| !i.trim().is_empty()) {
                let Some((k, v)) = item.split_once('=') else {
                    return Err(format!(
                        "zeekctl config: missing '=' in env_vars option value: {item}"
                    ));
                };
                out.env_vars
                    .insert(k.trim().to_owned(), v.trim().to_owned());
            }
            out.notes
                .push(format!("{shown}: carried, every node's env"));
        } else if key == "zeekport" {
            let port = value.parse().map_err(|_| {
                format!("zeekctl option 'zeekport' has invalid value '{value}' for type int")
            })?;
            out.zeek_port = Some(port);
            out.notes
                .push(format!("{shown}: carried, the nodes' ports from it"));
        } else if let Some(flag) = agent_flag(&key, value) {
            out.notes.push(format!("{shown}: {flag}"));
        } else {
            out.notes
                .push(format!("{shown}: not carried (no counterpart here)"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_setting_is_carried_mapped_or_named_as_not_carried() {
        let s = read(
            "# ZeekControl\nMailTo = root@localhost\nLogRotationInterval = 3600\n\
             LogExpireInterval = 30 day\nMinDiskSpace = 10\nenv_vars = TZ=UTC, LANG=C\n\
             ZeekPort = 47760\nCompressLogs = 1\nLogDir = /nsm/zeek/logs\n",
        )
        .expect("reads");
        assert_eq!(s.zeek_port, Some(47760));
        assert_eq!(s.env_vars.get("LANG").map(String::as_str), Some("C"));
        assert_eq!(
            s.notes,
            [
                "mailto = root@localhost: not carried (no counterpart here)",
                "logrotationinterval = 3600: zeek-mgmt-agent --log-rotation-interval 3600s",
                "logexpireinterval = 30 day: zeek-mgmt-agent --archive-expire-days 30",
                "mindiskspace = 10: zeek-mgmt-agent --min-disk-space 10",
                "env_vars = TZ=UTC, LANG=C: carried, every node's env",
                "zeekport = 47760: carried, the nodes' ports from it",
                "compresslogs = 1: the agent's archive always compresses (gzip)",
                "logdir = /nsm/zeek/logs: zeek-mgmt-agent --archive-dir /nsm/zeek/logs",
            ]
        );
        assert_eq!(days("12 hr"), None);
        assert_eq!(days("48 hrs"), Some(2));
        assert!(read("no equals here").is_err());
    }
}
