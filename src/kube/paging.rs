//! Where a chunked list is: the continue token of its next page, its page size, and how often
//! it started again because a token expired. Every list that reads a resource page by page
//! (the snapshot's, the checkpoint's, the watches' relists) walks with one, so that they all
//! answer an expired token the same way. It builds paths and decides; it sends nothing.
//!
//! A continue token expires when the API server compacts etcd past the revision the list
//! began at (410 Gone, reason Expired). The server offers a fresh token to go on with, but the
//! rest of such a list is from a later revision than its start: objects may show up twice or
//! not at all. The consistent answer is to start the list again from its first page, with
//! bigger pages so that it is done in fewer round trips before the next compaction.

use super::{ApiError, ResourceType};

/// How big a page may grow after restarts.
const MAX_RESTART_PAGE_SIZE: u32 = 10_000;

/// One list of one resource (in one namespace or all), page by page.
#[derive(Debug)]
pub struct Paging<'a> {
    rt: &'a ResourceType,
    namespace: Option<&'a str>,
    label_selector: Option<&'a str>,
    page_size: u32,
    token: Option<String>,
    restarts: u32,
    max_restarts: u32,
}

impl<'a> Paging<'a> {
    /// A list of `rt` in `namespace` (`None`: all), `page_size` objects a page, narrowed by
    /// `label_selector` where given, started again at most `max_restarts` times.
    pub fn new(
        rt: &'a ResourceType,
        namespace: Option<&'a str>,
        label_selector: Option<&'a str>,
        page_size: u32,
        max_restarts: u32,
    ) -> Self {
        Self {
            rt,
            namespace,
            label_selector,
            page_size,
            token: None,
            restarts: 0,
            max_restarts,
        }
    }

    /// The path of the next page.
    pub fn path(&self) -> String {
        self.rt.list_page_path(
            self.namespace,
            self.page_size,
            self.label_selector,
            self.token.as_deref(),
        )
    }

    /// After a page was read, with the continue token it carried: whether there is another.
    pub fn advance(&mut self, continue_token: Option<String>) -> bool {
        self.token = continue_token.filter(|t| !t.is_empty());
        self.token.is_some()
    }

    /// After a page failed with `e`: whether the list starts again from its first page (its
    /// token expired, and it has restarts left). The caller then forgets what the list gave
    /// so far; otherwise `e` is the list's failure.
    pub fn restart(&mut self, e: &ApiError) -> bool {
        if !e.is_expired() || self.token.is_none() || self.restarts >= self.max_restarts {
            return false;
        }
        self.restarts += 1;
        self.page_size = self.page_size.saturating_mul(4).min(MAX_RESTART_PAGE_SIZE);
        self.token = None;
        tracing::info!(
            resource = %self.rt.qualified_name(),
            page_size = self.page_size,
            restarts = self.restarts,
            "continue token expired; restarting the list"
        );
        true
    }

    /// How often the list started again.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> ApiError {
        ApiError::Status {
            code,
            reason: "Expired".to_string(),
            message: "too old".to_string(),
            continue_token: Some("fresh".to_string()),
        }
    }

    #[test]
    fn an_expired_token_starts_the_list_again_with_bigger_pages_a_bounded_number_of_times() {
        let rt = ResourceType {
            group: "apps".to_string(),
            version: "v1".to_string(),
            kind: "Deployment".to_string(),
            resource: "deployments".to_string(),
            namespaced: true,
        };
        let mut paging = Paging::new(&rt, Some("prod"), Some("tier=web"), 500, 2);
        assert_eq!(
            paging.path(),
            "/apis/apps/v1/namespaces/prod/deployments?limit=500&labelSelector=tier%3Dweb"
        );
        // The first page failing is not a token expiring: nothing to start again.
        assert!(!paging.restart(&status(410)));

        assert!(paging.advance(Some("t1".to_string())));
        assert!(paging.path().ends_with("&continue=t1"), "{}", paging.path());
        // Any failure but an expired token is the list's.
        assert!(!paging.restart(&status(500)));
        assert!(!paging.restart(&ApiError::Transport("reset".to_string())));

        assert!(paging.restart(&status(410)));
        assert_eq!(paging.restarts(), 1);
        assert_eq!(
            paging.path(),
            "/apis/apps/v1/namespaces/prod/deployments?limit=2000&labelSelector=tier%3Dweb"
        );
        assert!(paging.advance(Some("t2".to_string())));
        assert!(paging.restart(&status(410)));
        assert!(paging.path().contains("?limit=8000&"), "{}", paging.path());
        assert!(paging.advance(Some("t3".to_string())));
        // Out of restarts: the expiry is the list's failure.
        assert!(!paging.restart(&status(410)));
        assert_eq!(paging.restarts(), 2);

        // An empty token is the end of the list, as none.
        assert!(!paging.advance(Some(String::new())));
        assert!(!paging.advance(None));
    }

    #[test]
    fn pages_grow_no_bigger_than_the_cap() {
        let rt = ResourceType {
            group: String::new(),
            version: "v1".to_string(),
            kind: "ConfigMap".to_string(),
            resource: "configmaps".to_string(),
            namespaced: true,
        };
        let mut paging = Paging::new(&rt, None, None, 5_000, 5);
        paging.advance(Some("t".to_string()));
        assert!(paging.restart(&status(410)));
        assert_eq!(paging.path(), "/api/v1/configmaps?limit=10000");
    }
}
