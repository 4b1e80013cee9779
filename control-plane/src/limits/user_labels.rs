//! The `user` label of per-user metrics: the user's id for the few users the operator opted in
//! (`metrics.labelled_users`), `other` for everyone else, so the number of series stays bounded
//! however many users there are.

use std::collections::HashSet;
use std::sync::Arc;

/// The label every user not opted in shares.
pub const OTHER_USERS: &str = "other";

/// Which users' metrics carry their own id.
#[derive(Debug, Clone, Default)]
pub struct UserLabels(Arc<HashSet<String>>);

impl UserLabels {
    pub fn new(labelled: &[String]) -> Self {
        Self(Arc::new(labelled.iter().cloned().collect()))
    }

    /// The `user` label for `user_id`.
    pub fn label(&self, user_id: &str) -> String {
        if self.0.contains(user_id) {
            user_id.to_string()
        } else {
            OTHER_USERS.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_opted_in_users_are_named() {
        let labels = UserLabels::new(&["u_a".to_string()]);
        assert_eq!(labels.label("u_a"), "u_a");
        assert_eq!(labels.label("u_b"), OTHER_USERS);
    }
}
