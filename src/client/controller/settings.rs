//! zeek-client's own settings, as zeek-client 1.5.0 keeps them (its
//! `config.py`): sections of keys with its defaults, laid over in its order
//! by a config file (`-c`, else `ZEEK_CLIENT_CONFIG_FILE`), the
//! `ZEEK_CLIENT_CONFIG_SETTINGS` environment variable, `--set
//! SECTION.KEY=VAL` and `--controller`; printed by `show-settings` as
//! Python's configparser writes them.

use std::time::Duration;

/// The settings, each section's keys in the order they were first set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    sections: Vec<(String, Vec<(String, String)>)>,
}

impl Default for ClientSettings {
    fn default() -> Self {
        let section = |name: &str, keys: &[(&str, &str)]| {
            (
                name.to_owned(),
                keys.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
        };
        ClientSettings {
            sections: vec![
                section(
                    "client",
                    &[
                        ("request_timeout_secs", "20"),
                        ("peering_attempts", "10"),
                        ("peering_retry_delay_secs", "1.0"),
                        ("rich_logging_format", "False"),
                        ("pretty_json", "True"),
                        ("verbosity", "0"),
                    ],
                ),
                section("controller", &[("host", "127.0.0.1"), ("port", "2149")]),
                section(
                    "ssl",
                    &[
                        ("enable", "False"),
                        ("certificate", ""),
                        ("keyfile", ""),
                        ("cafile", ""),
                        ("capath", ""),
                        ("passphrase", ""),
                    ],
                ),
            ],
        }
    }
}

impl ClientSettings {
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.sections
            .iter()
            .find(|(s, _)| s == section)
            .and_then(|(_, keys)| keys.iter().find(|(k, _)| k == key))
            .map(|(_, v)| v.as_str())
    }

    pub fn set(&mut self, section: &str, key: &str, value: &str) {
        // configparser lowercases keys, not sections.
        let key = key.to_lowercase();
        let keys = match self.sections.iter().position(|(s, _)| s == section) {
            Some(i) => &mut self.sections[i].1,
            None => {
                self.sections.push((section.to_owned(), Vec::new()));
                let last = self.sections.len() - 1;
                &mut self.sections[last].1
            }
        };
        match keys.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value.to_owned(),
            None => keys.push((key, value.to_owned())),
        }
    }

    /// One `SECTION.KEY=VAL`; `Err` (which zeek-client passes over) with
    /// zeek-client's words when it is not of that form.
    pub fn apply(&mut self, item: &str) -> Result<(), String> {
        let invalid = || format!("config item \"{item}\" invalid");
        let (id, value) = item.split_once('=').ok_or_else(invalid)?;
        let (section, key) = id.split_once('.').ok_or_else(invalid)?;
        self.set(section, key, value);
        Ok(())
    }

    /// `ZEEK_CLIENT_CONFIG_SETTINGS`: shell words, each an `apply` (a
    /// text that does not split, as an unterminated quote, sets nothing).
    pub fn apply_env(&mut self, text: &str) {
        for item in crate::client::ini::shell_split(text).unwrap_or_default() {
            let _ = self.apply(&item);
        }
    }

    /// A config file as configparser reads it (`[section]`, `key = value`
    /// or `key: value`, `#`/`;` comments); a file that cannot be read is
    /// passed over, as configparser does.
    pub fn read_file(&mut self, path: &std::path::Path) -> Result<(), String> {
        let Ok(text) = std::fs::read_to_string(path) else {
            return Ok(());
        };
        let mut section: Option<String> = None;
        for (n, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
                continue;
            }
            if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                section = Some(name.to_owned());
                continue;
            }
            let Some(s) = &section else {
                return Err(format!(
                    "File contains no section headers.\nfile: '{}', line: {}\n'{line}'",
                    path.display(),
                    n + 1
                ));
            };
            let split = t.find(['=', ':']).map(|i| (&t[..i], &t[i + 1..]));
            match split {
                Some((k, v)) => self.set(&s.clone(), k.trim(), v.trim()),
                None => self.set(&s.clone(), t, ""),
            }
        }
        Ok(())
    }

    /// `--controller HOST:PORT`, either part left out, as zeek-client
    /// reads it.
    pub fn controller(&mut self, arg: &str) -> Result<(), String> {
        match super::split_controller(arg)? {
            (h, "") => self.set("controller", "host", h),
            ("", p) => self.set("controller", "port", p),
            (h, p) => {
                self.set("controller", "host", h);
                self.set("controller", "port", p);
            }
        }
        Ok(())
    }

    /// `HOST:PORT` of the controller.
    pub fn address(&self) -> String {
        format!(
            "{}:{}",
            self.get("controller", "host").unwrap_or("127.0.0.1"),
            self.get("controller", "port").unwrap_or("2149")
        )
    }

    /// `client.request_timeout_secs`, as configparser's `getint`.
    pub fn request_timeout(&self) -> Result<Duration, String> {
        let v = self.get("client", "request_timeout_secs").unwrap_or("20");
        v.trim()
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("invalid literal for int() with base 10: '{v}'"))
    }

    /// A boolean as configparser's `getboolean` reads it.
    pub fn flag(&self, section: &str, key: &str) -> Result<bool, String> {
        let v = self.get(section, key).unwrap_or("");
        match v.to_lowercase().as_str() {
            "1" | "yes" | "true" | "on" => Ok(true),
            "0" | "no" | "false" | "off" => Ok(false),
            _ => Err(format!("Not a boolean: {v}")),
        }
    }

    /// What `show-settings` prints: configparser's `write`.
    pub fn show(&self) -> String {
        let mut out = String::new();
        for (section, keys) in &self.sections {
            out.push_str(&format!("[{section}]\n"));
            for (k, v) in keys {
                out.push_str(&format!("{k} = {v}\n"));
            }
            out.push('\n');
        }
        out
    }
}

/// Python's `json.dumps(v, sort_keys=True)` without an indent (zeek-client
/// with `client.pretty_json` off): `", "` and `": "` between items.
pub fn compact(v: &serde_json::Value) -> String {
    use serde_json::Value as J;
    match v {
        J::Array(items) => format!(
            "[{}]",
            items.iter().map(compact).collect::<Vec<_>>().join(", ")
        ),
        J::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", compact(&J::String(k.clone())), compact(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        // Scalars as the pretty form writes them (non-ASCII escaped).
        other => super::render(other).trim_end().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_laid_over_in_zeek_clients_order_and_shown_as_it_shows_them() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("zc.ini");
        std::fs::write(
            &file,
            "[client]\nRequest_Timeout_Secs = 3\n[extra]\nfoo: bar\n",
        )
        .expect("write");
        let mut s = ClientSettings::default();
        s.read_file(&file).expect("read");
        s.apply_env("controller.port=1234 'client.pretty_json=false' bogus");
        assert!(s.apply("controller.host=10.0.0.1").is_ok());
        assert!(s.apply("bad").is_err());
        s.controller(":9999").expect("controller");
        assert_eq!(s.request_timeout(), Ok(Duration::from_secs(3)));
        assert_eq!(s.flag("client", "pretty_json"), Ok(false));
        assert_eq!(s.address(), "10.0.0.1:9999");
        let shown = s.show();
        assert!(
            shown.starts_with("[client]\nrequest_timeout_secs = 3\n"),
            "{shown}"
        );
        assert!(shown.ends_with("[extra]\nfoo = bar\n\n"), "{shown}");
        assert!(
            shown.contains("[ssl]\nenable = False\ncertificate = \n"),
            "{shown}"
        );
    }

    #[test]
    fn compact_json_is_pythons() {
        let v = serde_json::json!({"b": [1, "x"], "a": {"c": null, "d": true}, "é": 1.5});
        assert_eq!(
            compact(&v),
            r#"{"a": {"c": null, "d": true}, "b": [1, "x"], "\u00e9": 1.5}"#
        );
    }
}
