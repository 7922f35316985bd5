//! Who changed an object last, as the API server recorded it in `metadata.managedFields`:
//! what a point's changes name beside each new or changed object. It reads the object as
//! listed, before the rules clean it (they drop `managedFields` by default), and never
//! changes it.

use chrono::{DateTime, FixedOffset};
use serde_json::Value;

/// The field manager that changed `object` last: the entry of `metadata.managedFields` with
/// the newest `time` (the last such entry on a tie, and the last entry when none has a
/// time). Entries of a subresource (`status`, `scale`) count only when there is no other:
/// a controller writes status after every change of the spec, and would otherwise be named
/// for a change a person made. `None` when the object has no managed fields.
pub(crate) fn last_manager(object: &Value) -> Option<String> {
    let entries = object.get("metadata")?.get("managedFields")?.as_array()?;
    let is_main = |entry: &&Value| {
        entry
            .get("subresource")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    };
    let newest = |main_only: bool| {
        entries
            .iter()
            .filter(|entry| !main_only || is_main(entry))
            .filter(|entry| entry.get("manager").and_then(Value::as_str).is_some())
            .max_by_key(|entry| time_of(entry))
    };
    let entry = newest(true).or_else(|| newest(false))?;
    entry
        .get("manager")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// An entry's `time`; `None` (older than any time) when absent or not RFC 3339.
fn time_of(entry: &Value) -> Option<DateTime<FixedOffset>> {
    entry
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(fields: Value) -> Value {
        json!({ "metadata": { "name": "a", "managedFields": fields } })
    }

    #[test]
    fn the_manager_with_the_newest_time_changed_the_object_last() {
        let fields = json!([
            { "manager": "kubectl-client-side-apply", "operation": "Update",
              "time": "2026-12-03T10:00:00Z" },
            { "manager": "helm", "operation": "Update", "time": "2026-12-03T10:05:00Z" },
            { "manager": "kubectl-edit", "operation": "Update", "time": "2026-12-03T10:02:00Z" },
        ]);
        assert_eq!(last_manager(&object(fields)).as_deref(), Some("helm"));
    }

    #[test]
    fn a_status_writer_is_named_only_when_nobody_else_is() {
        let fields = json!([
            { "manager": "kubectl", "operation": "Update", "time": "2026-12-03T10:00:00Z" },
            { "manager": "kube-controller-manager", "operation": "Update",
              "subresource": "status", "time": "2026-12-03T10:00:05Z" },
        ]);
        assert_eq!(last_manager(&object(fields)).as_deref(), Some("kubectl"));
        let status_only = json!([
            { "manager": "kubelet", "operation": "Update", "subresource": "status",
              "time": "2026-12-03T10:00:05Z" },
        ]);
        assert_eq!(
            last_manager(&object(status_only)).as_deref(),
            Some("kubelet")
        );
    }

    #[test]
    fn without_times_the_last_entry_is_taken_and_without_entries_nobody() {
        let fields = json!([{ "manager": "first" }, { "manager": "second" }]);
        assert_eq!(last_manager(&object(fields)).as_deref(), Some("second"));
        let tie = json!([
            { "manager": "first", "time": "2026-12-03T10:00:00Z" },
            { "manager": "second", "time": "2026-12-03T11:00:00+01:00" },
        ]);
        assert_eq!(last_manager(&object(tie)).as_deref(), Some("second"));
        assert_eq!(last_manager(&object(json!([]))), None);
        assert_eq!(last_manager(&json!({ "metadata": { "name": "a" } })), None);
    }
}
