//! Label selectors as `kubectl -l` takes them: `a=b`, `a==b`, `a!=b`, `a`, `!a`,
//! `a in (x,y)`, `a notin (x,y)`, joined by commas.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed label selector; every requirement must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{selector:?} is not a label selector ({reason}); write it as kubectl does, e.g. \
     `app=web,tier!=cache` or `env in (prod,staging)`"
)]
pub struct SelectorError {
    pub selector: String,
    pub reason: String,
}

impl std::str::FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = |reason: &str| SelectorError {
            selector: s.to_string(),
            reason: reason.to_string(),
        };
        // Split on commas outside parentheses.
        let mut parts = Vec::new();
        let (mut depth, mut start) = (0i32, 0usize);
        for (i, c) in s.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
            if depth < 0 {
                return Err(error("unbalanced parentheses"));
            }
        }
        if depth != 0 {
            return Err(error("unbalanced parentheses"));
        }
        parts.push(&s[start..]);
        let mut requirements = Vec::new();
        for part in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
            let set = |rest: &str| -> Result<Vec<String>, SelectorError> {
                let rest = rest.trim();
                let inner = rest
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| error("a set must be in parentheses"))?;
                Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
            };
            let requirement = if let Some((key, rest)) = part.split_once(" notin ") {
                Requirement::NotIn(key.trim().to_string(), set(rest)?)
            } else if let Some((key, rest)) = part.split_once(" in ") {
                Requirement::In(key.trim().to_string(), set(rest)?)
            } else if let Some((key, value)) = part.split_once("!=") {
                Requirement::NotEquals(key.trim().to_string(), value.trim().to_string())
            } else if let Some((key, value)) = part.split_once("==") {
                Requirement::Equals(key.trim().to_string(), value.trim().to_string())
            } else if let Some((key, value)) = part.split_once('=') {
                Requirement::Equals(key.trim().to_string(), value.trim().to_string())
            } else if let Some(key) = part.strip_prefix('!') {
                Requirement::NotExists(key.trim().to_string())
            } else {
                Requirement::Exists(part.to_string())
            };
            let key = match &requirement {
                Requirement::Equals(k, _)
                | Requirement::NotEquals(k, _)
                | Requirement::Exists(k)
                | Requirement::NotExists(k)
                | Requirement::In(k, _)
                | Requirement::NotIn(k, _) => k,
            };
            if let Err(why) = check_key(key) {
                return Err(error(&format!("key {key:?}: {why}")));
            }
            let values: &[String] = match &requirement {
                Requirement::Equals(_, v) | Requirement::NotEquals(_, v) => std::slice::from_ref(v),
                Requirement::In(_, vs) | Requirement::NotIn(_, vs) => {
                    if vs.iter().all(String::is_empty) {
                        return Err(error(&format!("the set of {key:?} is empty")));
                    }
                    vs
                }
                Requirement::Exists(_) | Requirement::NotExists(_) => &[],
            };
            for value in values {
                if let Err(why) = check_value(value) {
                    return Err(error(&format!("value {value:?}: {why}")));
                }
            }
            requirements.push(requirement);
        }
        if requirements.is_empty() {
            return Err(error("it is empty"));
        }
        Ok(Selector(requirements))
    }
}

/// A label name: at most 63 characters, alphanumerics with `-`, `_` or `.` between them
/// (`IsQualifiedName`'s name part, and a label value when not empty).
fn check_name(name: &str) -> Result<(), &'static str> {
    let inner = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.len() > 63 {
        return Err("longer than 63 characters");
    }
    let edges_ok = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !edges_ok || !name.chars().all(inner) {
        return Err(
            "must be alphanumeric characters, '-', '_' or '.', starting and ending with an \
             alphanumeric character",
        );
    }
    Ok(())
}

/// A label key: `[prefix/]name`, the prefix a DNS subdomain (`IsQualifiedName`).
fn check_key(key: &str) -> Result<(), &'static str> {
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            let label_ok = |l: &str| {
                !l.is_empty()
                    && l.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && l.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && l.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            };
            if prefix.len() > 253 || !prefix.split('.').all(label_ok) {
                return Err("its prefix must be a DNS subdomain, e.g. example.com");
            }
            name
        }
        None => key,
    };
    if name.is_empty() {
        return Err("it has no name");
    }
    check_name(name)
}

/// A label value: empty, or a label name.
fn check_value(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        Ok(())
    } else {
        check_name(value)
    }
}

impl Selector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kubectl_selectors_match_as_kubectl_does() {
        let s: Selector = "app=web,tier!=cache,env in (prod, staging),!legacy"
            .parse()
            .unwrap();
        assert!(s.matches(&labels(&[("app", "web"), ("env", "prod")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("env", "dev")])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("env", "prod"),
            ("tier", "cache")
        ])));
        assert!(!s.matches(&labels(&[("app", "web"), ("env", "prod"), ("legacy", "")])));
        let exists: Selector = "team".parse().unwrap();
        assert!(exists.matches(&labels(&[("team", "a")])));
        assert!(!exists.matches(&labels(&[])));
        assert!("".parse::<Selector>().is_err());
        assert!("env in (a".parse::<Selector>().is_err());
        let qualified: Selector = "app.kubernetes.io/name=web,example.com/tier in (a-1, b.2),x="
            .parse()
            .unwrap();
        assert!(qualified.matches(&labels(&[
            ("app.kubernetes.io/name", "web"),
            ("example.com/tier", "b.2"),
            ("x", "")
        ])));
        // Keys and values as the API server checks them (IsQualifiedName, IsValidLabelValue).
        for bad in [
            "-a=b",
            "a/b/c=d",
            "a=b=c",
            "k in ()",
            "Example.com/a=b",
            "a=-b",
            "a b=c",
            "app:web",
        ] {
            assert!(bad.parse::<Selector>().is_err(), "{bad} was accepted");
        }
        let long = format!("a={}", "v".repeat(64));
        assert!(long.parse::<Selector>().is_err());
    }
}
