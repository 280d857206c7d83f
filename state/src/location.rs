//! Where a state is stored ([`Location`]): what a configuration names and a saved plan records.
//!
//! Only the description of the place and what follows from it alone (each workspace's place, how it
//! is shown); no I/O. Opening, listing and deleting a location's states is the backends' business
//! (`Location::open`, `workspaces` and `delete`, with the `backends` feature).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The workspace a configuration's state belongs to unless another is chosen.
pub const DEFAULT_WORKSPACE: &str = "default";

/// The directory, beside a local state file, of the other workspaces' states.
pub const WORKSPACES_DIR: &str = "vz-workspaces";

/// Where a state is stored: what a configuration names and a saved plan records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "kebab-case")]
pub enum Location {
    /// A local file.
    Local {
        /// The state file.
        path: std::path::PathBuf,
    },
    /// Secrets and a Lease in a namespace of the cluster (see `vz_state::backend::kubernetes`).
    Kubernetes {
        /// The namespace.
        namespace: String,
        /// The workspace: one state per workspace.
        workspace: String,
        /// How long a lock holds without being renewed, in seconds.
        lease_seconds: u64,
    },
    /// Objects of an S3-compatible bucket (see `vz_state::backend::s3`).
    S3 {
        /// The bucket.
        bucket: String,
        /// The default workspace's object key.
        key: String,
        /// The service's URL, when not AWS's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
        /// The region, when not from the environment.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
        /// The workspace: one state per workspace.
        workspace: String,
        /// How long a lock holds without being renewed, in seconds.
        lease_seconds: u64,
    },
}

impl Location {
    /// The bucket place and lease of an s3 location.
    pub fn s3_place(&self) -> Option<(S3Place, Duration)> {
        match self {
            Location::S3 {
                bucket,
                key,
                endpoint,
                region,
                workspace,
                lease_seconds,
            } => Some((
                S3Place {
                    bucket: bucket.clone(),
                    key: key.clone(),
                    endpoint: endpoint.clone(),
                    region: region.clone(),
                    workspace: workspace.clone(),
                },
                Duration::from_secs(*lease_seconds),
            )),
            _ => None,
        }
    }

    /// The same place for `workspace`: each workspace has a state of its own. A local state of
    /// workspace `w` is `vz-workspaces/w/<file>` beside the default one's file; a kubernetes one is
    /// Secret `vz-state-w`.
    pub fn for_workspace(&self, workspace: &str) -> Location {
        match self {
            Location::Local { path } if workspace == DEFAULT_WORKSPACE => {
                Location::Local { path: path.clone() }
            }
            Location::Local { path } => {
                let dir = path.parent().unwrap_or_else(|| std::path::Path::new(""));
                let file = path.file_name().unwrap_or_default();
                Location::Local {
                    path: dir.join(WORKSPACES_DIR).join(workspace).join(file),
                }
            }
            Location::Kubernetes {
                namespace,
                lease_seconds,
                ..
            } => Location::Kubernetes {
                namespace: namespace.clone(),
                workspace: workspace.to_string(),
                lease_seconds: *lease_seconds,
            },
            Location::S3 {
                bucket,
                key,
                endpoint,
                region,
                lease_seconds,
                ..
            } => Location::S3 {
                bucket: bucket.clone(),
                key: key.clone(),
                endpoint: endpoint.clone(),
                region: region.clone(),
                workspace: workspace.to_string(),
                lease_seconds: *lease_seconds,
            },
        }
    }

    /// Whether the state lives in a cluster (opening it needs a connection).
    pub fn needs_cluster(&self) -> bool {
        matches!(self, Location::Kubernetes { .. })
    }

    /// Whether its lock expires unless renewed (a remote one), rather than being stale only when
    /// its holder's process is gone (a local one).
    pub fn lock_expires(&self) -> bool {
        !matches!(self, Location::Local { .. })
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local { path } => write!(f, "{}", path.display()),
            Location::Kubernetes {
                namespace,
                workspace,
                ..
            } => write!(f, "kubernetes {namespace}/vz-state-{workspace}"),
            Location::S3 { .. } => match self.s3_place() {
                Some((place, _)) => write!(f, "s3 {}", place.url()),
                None => Ok(()),
            },
        }
    }
}

/// Where in a bucket a workspace's state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Place {
    /// The bucket.
    pub bucket: String,
    /// The default workspace's object key.
    pub key: String,
    /// The service's URL, when not AWS's.
    pub endpoint: Option<String>,
    /// The region, when not from the environment.
    pub region: Option<String>,
    /// The workspace.
    pub workspace: String,
}

impl S3Place {
    /// The state object's key for this workspace.
    pub fn object_key(&self) -> String {
        if self.workspace == DEFAULT_WORKSPACE {
            return self.key.clone();
        }
        let (dir, file) = split_key(&self.key);
        format!("{dir}{WORKSPACES_DIR}/{}/{file}", self.workspace)
    }

    /// `s3://bucket/object`.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.object_key())
    }
}

/// `dir/` (empty at the bucket's root) and the file name of a key.
pub(crate) fn split_key(key: &str) -> (&str, &str) {
    match key.rfind('/') {
        Some(i) => (&key[..=i], &key[i + 1..]),
        None => ("", key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_workspace_has_its_own_place() {
        let local = Location::Local {
            path: "/cfg/dev.vzstate.json".into(),
        };
        assert_eq!(local.for_workspace(DEFAULT_WORKSPACE), local);
        assert_eq!(
            local.for_workspace("prod"),
            Location::Local {
                path: "/cfg/vz-workspaces/prod/dev.vzstate.json".into()
            }
        );
        let k = Location::Kubernetes {
            namespace: "vz-system".into(),
            workspace: DEFAULT_WORKSPACE.into(),
            lease_seconds: 60,
        };
        assert_eq!(
            k.for_workspace("prod").to_string(),
            "kubernetes vz-system/vz-state-prod"
        );
    }
}
