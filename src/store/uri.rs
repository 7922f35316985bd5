//! Where snapshots go: `s3://bucket/prefix`, `file:///path`, or a plain path. Parsing is
//! strict so that a typo is an error that names the problem, not a backup that silently
//! lands somewhere else.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::error::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    S3 { bucket: String, prefix: String },
    Local { path: PathBuf },
}

impl Destination {
    /// The cluster's base folder under this destination: `<prefix>/<cluster-name>`.
    pub fn base_prefix(&self, cluster_name: &str) -> String {
        match self {
            Destination::S3 { prefix, .. } if !prefix.is_empty() => {
                format!("{prefix}/{cluster_name}")
            }
            _ => cluster_name.to_string(),
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Destination::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Destination::Local { path } => write!(f, "{}", path.display()),
        }
    }
}

fn invalid(uri: &str, reason: impl Into<String>) -> StoreError {
    StoreError::InvalidUri {
        uri: uri.to_string(),
        reason: reason.into(),
    }
}

/// S3's bucket naming rules (the ones that catch typos): 3 to 63 characters of lower-case
/// letters, digits, dots and hyphens, starting and ending with a letter or digit.
fn check_bucket(uri: &str, bucket: &str) -> Result<(), StoreError> {
    if bucket.is_empty() {
        return Err(invalid(
            uri,
            "no bucket name; write s3://<bucket>[/<prefix>]",
        ));
    }
    let valid_chars = bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    let valid_ends = bucket
        .chars()
        .next()
        .zip(bucket.chars().last())
        .is_some_and(|(a, b)| a.is_ascii_alphanumeric() && b.is_ascii_alphanumeric());
    if !(3..=63).contains(&bucket.len()) || !valid_chars || !valid_ends {
        return Err(invalid(
            uri,
            format!(
                "{bucket:?} is not a valid bucket name (3-63 characters: lower-case letters, \
                 digits, '.' and '-', starting and ending with a letter or digit)"
            ),
        ));
    }
    Ok(())
}

impl FromStr for Destination {
    type Err = StoreError;

    fn from_str(uri: &str) -> Result<Self, Self::Err> {
        let trimmed = uri.trim();
        if trimmed.is_empty() {
            return Err(invalid(
                uri,
                "empty destination; give s3://<bucket>[/<prefix>], file:///<path> or a path",
            ));
        }
        if let Some(rest) = trimmed.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            check_bucket(uri, bucket)?;
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
                return Err(invalid(uri, "the prefix has an empty, '.' or '..' part"));
            }
            return Ok(Destination::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        if let Some(rest) = trimmed.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(invalid(
                    uri,
                    "a file:// URI takes an absolute path (file:///var/backups); \
                     write a plain path for a relative one",
                ));
            }
            return Ok(Destination::Local {
                path: PathBuf::from(rest),
            });
        }
        if let Some((scheme, _)) = trimmed.split_once("://") {
            return Err(invalid(
                uri,
                format!(
                    "unknown scheme {scheme:?}; use s3://<bucket>[/<prefix>], file:///<path> \
                     or a plain path"
                ),
            ));
        }
        Ok(Destination::Local {
            path: PathBuf::from(trimmed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(uri: &str) -> String {
        match uri.parse::<Destination>() {
            Err(StoreError::InvalidUri { reason, .. }) => reason,
            other => panic!("{uri}: expected an invalid-URI error, got {other:?}"),
        }
    }

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(
            "s3://my-bucket-name".parse::<Destination>().unwrap(),
            Destination::S3 {
                bucket: "my-bucket-name".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            "s3://b-1/a/b/".parse::<Destination>().unwrap(),
            Destination::S3 {
                bucket: "b-1".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            "file:///var/backups".parse::<Destination>().unwrap(),
            Destination::Local {
                path: "/var/backups".into()
            }
        );
        assert_eq!(
            "backups/here".parse::<Destination>().unwrap(),
            Destination::Local {
                path: "backups/here".into()
            }
        );
    }

    #[test]
    fn bad_uris_say_what_is_wrong() {
        assert!(reason("").contains("empty"));
        assert!(reason("s3://").contains("no bucket"));
        assert!(reason("s3:///prefix").contains("no bucket"));
        assert!(reason("s3://My_Bucket").contains("not a valid bucket name"));
        assert!(reason("gs://bucket").contains("unknown scheme \"gs\""));
        assert!(reason("file://relative").contains("absolute path"));
        assert!(reason("s3://bucket/a/../b").contains("'..'"));
    }

    #[test]
    fn base_prefix_appends_the_cluster() {
        let d: Destination = "s3://b-1/team".parse().unwrap();
        assert_eq!(d.base_prefix("prod"), "team/prod");
        let d: Destination = "s3://b-1".parse().unwrap();
        assert_eq!(d.base_prefix("prod"), "prod");
    }
}
