//! What each daemon's settings tests share: the example file, the README's
//! table and the flags agree with the declaration.

use super::Spec;

/// The example file sets or names in a comment every setting, and what it
/// sets is the default (`same_as_default` applies it).
pub fn example_file_agrees(
    path: &str,
    specs: &[Spec],
    same_as_default: impl Fn(&std::path::Path) -> Result<bool, super::ConfigError>,
) {
    let text = std::fs::read_to_string(path).expect("example file");
    assert!(
        same_as_default(std::path::Path::new(path)).expect("parses"),
        "{path} sets a value other than the default"
    );
    for spec in specs {
        let key = spec.key;
        assert!(
            text.lines()
                .any(|l| l.trim_start_matches("# ").starts_with(&format!("{key} ="))),
            "{key} is missing from {path}"
        );
    }
}

/// The README's table under `heading` has a row for every setting, with
/// its variable and its default (the default column starts with it; an
/// unset one says "none").
pub fn readme_table_agrees(heading: &str, specs: &[Spec]) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let text = std::fs::read_to_string(path).expect("README");
    let section: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != heading)
        .skip(1)
        .take_while(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with('|'))
        .collect();
    assert!(!section.is_empty(), "no table under {heading:?}");
    for spec in specs {
        let flag = format!("`{}`", spec.flag());
        let row = section
            .iter()
            .find(|l| l.split('|').nth(1).is_some_and(|c| c.contains(&flag)))
            .unwrap_or_else(|| panic!("{flag} is missing from the table under {heading:?}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let env = spec.env.map(|v| format!("`{v}`")).unwrap_or_default();
        assert_eq!(cells[2], env, "the variable of {flag}");
        let default = cells[3].replace('`', "");
        match &spec.default {
            Some(d) => assert!(
                default.starts_with(d.as_str()),
                "the README gives {flag} the default {default:?}, the declaration {d:?}"
            ),
            None => assert!(
                default.starts_with("none"),
                "{flag} has no default; the README says {default:?}"
            ),
        }
    }
}

/// Each default, given back as a flag, is the default: what `--help` and
/// the documentation show is what the daemon runs with. `is_default` says
/// whether the settings parsed, laid over the defaults, leave them as they
/// are.
pub fn shown_defaults_parse_back<S: clap::Args + clap::FromArgMatches>(
    specs: &[Spec],
    is_default: impl Fn(S) -> bool,
) {
    let mut argv = vec!["daemon".to_owned()];
    for spec in specs.iter().filter(|s| s.literal) {
        if let Some(d) = &spec.default {
            argv.push(format!("{}={d}", spec.flag()));
        }
    }
    assert!(argv.len() > specs.len() / 2, "{argv:?}");
    let matches = S::augment_args(clap::Command::new("daemon"))
        .try_get_matches_from(&argv)
        .expect("the defaults parse");
    let settings = S::from_arg_matches(&matches).expect("settings");
    assert!(
        is_default(settings),
        "{argv:?} is not the default configuration"
    );
}

#[test]
fn the_hint_of_a_refused_zero_names_the_settings_that_take_it() {
    let spec = |key, zero| Spec {
        key,
        doc: String::new(),
        env: None,
        alias: None,
        default: None,
        literal: true,
        zero,
        placeholder: "N",
        switch: false,
    };
    use super::Zero::*;
    assert_eq!(super::zero_hint(&[spec("a", Refused)]), "");
    assert_eq!(
        super::zero_hint(&[spec("a", Off), spec("b", Value), spec("c", Off)]),
        "; only a and c take 0, to mean off"
    );
    let s = spec("x_y", Refused);
    assert_eq!(s.flag(), "--x-y");
    assert_eq!(s.help(), " (more than 0)");
}
