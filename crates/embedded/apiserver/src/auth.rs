//! Who is asking: the authenticated user of a request (pure types; the authenticators that
//! produce them are in `authn`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// The group every authenticated user is in.
pub const AUTHENTICATED: &str = "system:authenticated";
/// The group of cluster administrators (what the admin certificate carries).
pub const MASTERS: &str = "system:masters";

/// An authenticated user, as `userInfo` describes one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    /// A user with `groups` and `system:authenticated`.
    pub fn new(name: &str, groups: &[&str]) -> User {
        let mut g: Vec<String> = groups.iter().map(|s| s.to_string()).collect();
        if !g.iter().any(|x| x == AUTHENTICATED) {
            g.push(AUTHENTICATED.to_string());
        }
        User {
            name: name.to_string(),
            groups: g,
            ..Default::default()
        }
    }

    /// The identity the server's own controllers act as.
    pub fn loopback() -> User {
        User::new("system:apiserver", &[MASTERS])
    }

    pub fn in_group(&self, g: &str) -> bool {
        self.groups.iter().any(|x| x == g)
    }

    /// `authentication.k8s.io/v1` UserInfo.
    pub fn to_user_info(&self) -> Value {
        let mut u = json!({"username": self.name});
        if !self.uid.is_empty() {
            u["uid"] = json!(self.uid);
        }
        if !self.groups.is_empty() {
            u["groups"] = json!(self.groups);
        }
        if !self.extra.is_empty() {
            u["extra"] = json!(self.extra);
        }
        u
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info() {
        let u = User::new("alice", &["dev"]);
        assert_eq!(
            u.to_user_info(),
            json!({"username": "alice", "groups": ["dev", "system:authenticated"]})
        );
        assert!(User::loopback().in_group(MASTERS));
    }
}
