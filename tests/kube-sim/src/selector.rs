//! Label and field selectors of list requests, parsed the way the API server parses them.
//!
//! Label selectors support every operator of the real grammar: `a=b`, `a==b`, `a!=b`,
//! `a in (x,y)`, `a notin (x,y)`, `a` (exists) and `!a` (does not exist). Field selectors
//! (`=`, `==`, `!=`) work on any field path of the object.

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LabelSelector {
    reqs: Vec<Requirement>,
}

impl LabelSelector {
    pub(crate) fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    pub(crate) fn parse(text: &str) -> Result<LabelSelector, String> {
        let mut reqs = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            reqs.push(parse_requirement(part)?);
        }
        Ok(LabelSelector { reqs })
    }

    pub(crate) fn matches<'a, I>(&self, labels: I) -> bool
    where
        I: Fn(&str) -> Option<&'a str>,
    {
        self.reqs.iter().all(|r| {
            let value = labels(&r.key);
            match &r.op {
                Op::Eq(v) => value == Some(v.as_str()),
                Op::NotEq(v) => value != Some(v.as_str()),
                Op::In(vs) => value.is_some_and(|x| vs.iter().any(|v| v == x)),
                Op::NotIn(vs) => !value.is_some_and(|x| vs.iter().any(|v| v == x)),
                Op::Exists => value.is_some(),
                Op::NotExists => value.is_none(),
            }
        })
    }
}

/// Splits at commas that are not inside a parenthesised value set.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 317
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(value: &str) -> bool {
    value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    let bad = |why: &str| format!("unable to parse requirement: {why}: {part:?}");
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        if !valid_key(key) {
            return Err(bad("invalid label key"));
        }
        return Ok(Requirement {
            key: key.to_string(),
            op: Op::NotExists,
        });
    }
    for (token, ctor) in [("!=", 0), ("==", 1), ("=", 1)] {
        if let Some((k, v)) = part.split_once(token) {
            let (k, v) = (k.trim(), v.trim());
            if !valid_key(k) {
                return Err(bad("invalid label key"));
            }
            if !valid_value(v) {
                return Err(bad("invalid label value"));
            }
            let op = if ctor == 0 {
                Op::NotEq(v.to_string())
            } else {
                Op::Eq(v.to_string())
            };
            return Ok(Requirement {
                key: k.to_string(),
                op,
            });
        }
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if words.len() == 2 {
        let key = words[0].trim();
        let rest = words[1].trim();
        let (notin, set) = if let Some(s) = rest.strip_prefix("notin") {
            (true, s)
        } else if let Some(s) = rest.strip_prefix("in") {
            (false, s)
        } else {
            return Err(bad("unknown operator"));
        };
        let set = set.trim();
        let inner = set
            .strip_prefix('(')
            .and_then(|s| s.strip_suffix(')'))
            .ok_or_else(|| bad("expected a parenthesised set of values"))?;
        if !valid_key(key) {
            return Err(bad("invalid label key"));
        }
        let values: Vec<String> = inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        if values.iter().any(|v| !valid_value(v)) {
            return Err(bad("invalid label value"));
        }
        if values.is_empty() {
            return Err(bad(
                "for 'in', 'notin' operators, values set can't be empty",
            ));
        }
        return Ok(Requirement {
            key: key.to_string(),
            op: if notin {
                Op::NotIn(values)
            } else {
                Op::In(values)
            },
        });
    }
    if !valid_key(part) {
        return Err(bad("invalid label key"));
    }
    Ok(Requirement {
        key: part.to_string(),
        op: Op::Exists,
    })
}

/// A field selector: `path=value`, `path==value` or `path!=value` terms, all of which must
/// hold. `metadata.name` and `metadata.namespace` are answered from the index; any other
/// dotted path (e.g. `spec.nodeName`, `involvedObject.name`, `type`) is looked up in the
/// object, a missing field comparing as the empty string, as the server's field sets do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

impl FieldSelector {
    pub(crate) fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether it narrows a list to one name (`metadata.name=<name>`).
    pub(crate) fn names_one(&self) -> bool {
        self.terms
            .iter()
            .any(|(path, eq, _)| path == "metadata.name" && *eq)
    }

    pub(crate) fn parse(text: &str) -> Result<FieldSelector, String> {
        let mut out = FieldSelector::default();
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (key, eq, value) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{text}'; can't understand '{part}'"
                ));
            };
            out.terms
                .push((key.trim().to_string(), eq, value.trim().to_string()));
        }
        Ok(out)
    }

    /// Whether an object matches; `item` is its JSON, parsed only if a term needs it.
    pub(crate) fn matches(&self, namespace: Option<&str>, name: &str, item: &[u8]) -> bool {
        let mut parsed: Option<serde_json::Value> = None;
        self.terms.iter().all(|(path, eq, want)| {
            let actual: String = match path.as_str() {
                "metadata.name" => name.to_string(),
                "metadata.namespace" => namespace.unwrap_or_default().to_string(),
                _ => {
                    let v = parsed.get_or_insert_with(|| {
                        serde_json::from_slice(item).unwrap_or(serde_json::Value::Null)
                    });
                    let mut cur = &*v;
                    for p in path.split('.') {
                        cur = cur.get(p).unwrap_or(&serde_json::Value::Null);
                    }
                    match cur {
                        serde_json::Value::Null => String::new(),
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    }
                }
            };
            (actual == *want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |k| pairs.iter().find(|(a, _)| *a == k).map(|(_, v)| *v)
    }

    #[test]
    fn operators() {
        let l = [("app", "web"), ("tier", "front")];
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(labels(&l));
        assert!(m("app=web"));
        assert!(m("app==web"));
        assert!(!m("app=db"));
        assert!(m("app!=db"));
        assert!(m("app"));
        assert!(!m("!app"));
        assert!(m("!missing"));
        assert!(m("tier in (front, back)"));
        assert!(!m("tier notin (front,back)"));
        assert!(m("app=web,tier in (front,back),!missing"));
        assert!(m(""));
        assert!(LabelSelector::parse("app in ()").is_err());
        assert!(LabelSelector::parse("a b c").is_err());
    }

    #[test]
    fn fields() {
        let item = br#"{"spec": {"nodeName": "n1", "replicas": 2}, "type": "Normal"}"#;
        let f = FieldSelector::parse("metadata.name=x,spec.nodeName=n1").unwrap();
        assert!(f.matches(Some("ns"), "x", item));
        assert!(!f.matches(Some("ns"), "y", item));
        let f = FieldSelector::parse("metadata.namespace!=kube-system").unwrap();
        assert!(f.matches(Some("default"), "x", item));
        assert!(!f.matches(Some("kube-system"), "x", item));
        let f = FieldSelector::parse("spec.replicas=2,type!=Warning,status.phase=").unwrap();
        assert!(f.matches(None, "x", item));
        let f = FieldSelector::parse("spec.nodeName=n2").unwrap();
        assert!(!f.matches(None, "x", item));
    }
}
