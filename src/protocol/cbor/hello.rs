//! The hello, the first frame of each side.

use serde::Serialize;

/// The first frame of each side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Hello {
    pub version: u64,
    pub endpoint: String,
    pub role: String,
    #[serde(default)]
    pub heartbeat: u64,
    /// The protocol extensions the sender implements (`restart`,
    /// `node_dispatch`, `metrics_port`, …); absent means none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

impl Hello {
    /// The hello of this API version: who speaks (`endpoint`), as what
    /// (`agent`, `controller` or `client`), and the heartbeat it announces
    /// in whole seconds (0: none).
    pub fn new(endpoint: impl Into<String>, role: impl Into<String>, heartbeat: u64) -> Hello {
        Hello {
            version: crate::api::events::API_VERSION,
            endpoint: endpoint.into(),
            role: role.into(),
            heartbeat,
            features: Vec::new(),
        }
    }

    /// The same hello, announcing `features`.
    pub fn with_features(mut self, features: &[&str]) -> Hello {
        self.features = features.iter().map(|f| (*f).to_owned()).collect();
        self
    }

    /// Whether the sender announced `feature`.
    pub fn has_feature(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }
}
