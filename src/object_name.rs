//! How an object is named in messages, listings and keys of the seen-objects cache:
//! `namespace/name`, or `name` for a cluster-scoped object. One place, so that every output
//! spells it the same way.

use std::fmt;

/// An object's name with its namespace, if it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectName<'a> {
    pub namespace: Option<&'a str>,
    pub name: &'a str,
}

impl<'a> ObjectName<'a> {
    pub fn new(namespace: Option<&'a str>, name: &'a str) -> Self {
        Self { namespace, name }
    }
}

impl fmt::Display for ObjectName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ObjectName;

    #[test]
    fn namespaced_and_cluster_scoped() {
        assert_eq!(ObjectName::new(Some("ns"), "a").to_string(), "ns/a");
        assert_eq!(ObjectName::new(None, "a").to_string(), "a");
    }
}
