//! Aligned tables of outcomes, for people.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Outcome;

/// An aligned table of a `get-nodes` outcome; `drops` adds each node's
/// packet drop rate (from `netstats`) where it has one.
pub fn nodes_table(outcome: &Outcome, drops: &BTreeMap<String, f64>) -> String {
    let mut rows = vec![[
        "instance", "node", "role", "mgmt", "state", "by", "joined", "pid", "port", "rss", "cpu%",
        "pinned", "queued", "drop%",
    ]
    .map(String::from)];
    if let Some(results) = outcome.json["results"].as_object() {
        for (inst, nodes) in results {
            for (node, s) in nodes.as_object().into_iter().flatten() {
                let text = |k: &str| match &s[k] {
                    Value::Null => "-".to_owned(),
                    Value::String(v) => v.clone(),
                    v => v.to_string(),
                };
                let rss = s["rss_bytes"]
                    .as_u64()
                    .map(|b| format!("{:.1}M", b as f64 / 1048576.0))
                    .unwrap_or_else(|| "-".into());
                let cpu = s["cpu_percent"]
                    .as_f64()
                    .map(|c| format!("{c:.1}"))
                    .unwrap_or_else(|| "-".into());
                let joined = match s["joined"] {
                    Value::Bool(true) => "yes",
                    Value::Bool(false) => "NO",
                    _ => "-",
                };
                rows.push([
                    inst.clone(),
                    node.clone(),
                    text("cluster_role"),
                    text("mgmt_role"),
                    text("state"),
                    text("running_by"),
                    joined.to_owned(),
                    text("pid"),
                    text("port"),
                    rss,
                    cpu,
                    text("cpu_affinity"),
                    s["archive"]["waiting"]
                        .as_u64()
                        .map_or_else(|| "-".to_owned(), |w| w.to_string()),
                    drops
                        .get(node)
                        .map_or_else(|| "-".to_owned(), |p| format!("{p:.2}")),
                ]);
            }
        }
    }
    aligned(&rows, &outcome.json["errors"])
}

/// Rows in columns two spaces apart, then one line per error.
pub(crate) fn aligned<const N: usize>(rows: &[[String; N]], errors: &Value) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    for e in errors.as_array().into_iter().flatten() {
        out.push_str(&format!(
            "error from {}: {}\n",
            e["source"].as_str().unwrap_or("?"),
            e["error"].as_str().unwrap_or("?")
        ));
    }
    out
}
