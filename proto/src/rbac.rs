//! Who may do what with an Entra token. Azure keeps role assignments in its resource manager,
//! not in the token (the `roles` claim holds the resource application's app roles), so a node
//! keeps its own bindings: principal → built-in role → scope (an account, or one container of
//! it). The roles are Azure's, with the actions each grants.

use crate::bearer::Principal;

/// The RBAC actions the Blob operations need (Azure's `Microsoft.Storage/storageAccounts/
/// blobServices/...` actions and data actions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `containers/read`: list containers, read a container's properties.
    ContainersRead,
    /// `containers/write`: create a container, set its metadata.
    ContainersWrite,
    /// `containers/delete`.
    ContainersDelete,
    /// `containers/getAcl/action`, `containers/setAcl/action`: Owner only.
    ContainersGetAcl,
    ContainersSetAcl,
    /// `containers/blobs/read` (data): read blobs and list them.
    BlobsRead,
    /// `containers/blobs/write` and `add/action` (data): write blobs, stage and commit blocks.
    BlobsWrite,
    /// `containers/blobs/delete` (data).
    BlobsDelete,
    /// `generateUserDelegationKey/action`: Get User Delegation Key (at the account only).
    UserDelegationKey,
    /// `blobServices/read`, `blobServices/write`: Get/Set Blob Service Properties. Management
    /// actions that no data role holds (Azure grants them with the account's Contributor role,
    /// which the node does not model): the account key and account SAS only.
    ServiceProperties,
}

impl Action {
    /// Whether the action is on the account as a whole, so that a container-scoped binding
    /// never grants it (listing every container, a user delegation key).
    fn account_wide(self, container: Option<&str>) -> bool {
        matches!(self, Action::UserDelegationKey | Action::ServiceProperties)
            || (self == Action::ContainersRead && container.is_none())
    }
}

/// Azure's built-in data roles for blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Reader,
    Contributor,
    Owner,
    Delegator,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Reader, Role::Contributor, Role::Owner, Role::Delegator];

    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "Storage Blob Data Reader",
            Role::Contributor => "Storage Blob Data Contributor",
            Role::Owner => "Storage Blob Data Owner",
            Role::Delegator => "Storage Blob Delegator",
        }
    }

    /// The role definition id Azure gives the built-in role.
    pub fn id(self) -> &'static str {
        match self {
            Role::Reader => "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
            Role::Contributor => "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
            Role::Owner => "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
            Role::Delegator => "db58b8e5-c6ad-4a2a-8342-4190687cbf4a",
        }
    }

    /// A role by its name or its id (either case).
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name().eq_ignore_ascii_case(s) || r.id().eq_ignore_ascii_case(s))
    }

    pub fn grants(self, action: Action) -> bool {
        use Action::*;
        match self {
            Role::Reader => matches!(action, ContainersRead | BlobsRead | UserDelegationKey),
            Role::Contributor => !matches!(action, ContainersGetAcl | ContainersSetAcl | ServiceProperties),
            Role::Owner => action != ServiceProperties,
            Role::Delegator => action == UserDelegationKey,
        }
    }
}

/// Whom a binding names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// `oid:<object id>`: a user, a service principal, a managed identity.
    Object(String),
    /// `group:<object id>`: members of a group (the token's `groups` claim).
    Group(String),
    /// `app:<application id>`: tokens issued to an application (`appid`/`azp`).
    App(String),
    /// `approle:<value>`: holders of an app role of the node's application (`roles`).
    AppRole(String),
}

impl Subject {
    pub fn parse(s: &str) -> Option<Subject> {
        let (kind, value) = s.split_once(':')?;
        if value.is_empty() {
            return None;
        }
        let value = value.to_owned();
        Some(match kind {
            "oid" => Subject::Object(value),
            "group" => Subject::Group(value),
            "app" => Subject::App(value),
            "approle" => Subject::AppRole(value),
            _ => return None,
        })
    }

    fn names(&self, p: &Principal) -> bool {
        // Object, group and application ids are GUIDs, compared without regard to case.
        match self {
            Subject::Object(id) => p.object_id.eq_ignore_ascii_case(id),
            Subject::Group(id) => p.groups.iter().any(|g| g.eq_ignore_ascii_case(id)),
            Subject::App(id) => p.app_id.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(id)),
            Subject::AppRole(r) => p.roles.iter().any(|x| x == r),
        }
    }
}

/// One role assignment: `subject` holds `role` over `account` (every container) or one
/// container of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub subject: Subject,
    pub role: Role,
    pub account: String,
    pub container: Option<String>,
}

impl Binding {
    /// A scope as written in configuration: `account` or `account/container`.
    pub fn scope(scope: &str) -> Option<(String, Option<String>)> {
        match scope.split_once('/') {
            None if !scope.is_empty() => Some((scope.to_owned(), None)),
            Some((a, c)) if !a.is_empty() && !c.is_empty() && !c.contains('/') => {
                Some((a.to_owned(), Some(c.to_owned())))
            }
            _ => None,
        }
    }
}

/// Whether a binding lets principal `p` take `action` on `account` (and `container`, where the
/// operation is on one).
pub fn allows(bindings: &[Binding], p: &Principal, account: &str, container: Option<&str>, action: Action) -> bool {
    bindings.iter().any(|b| {
        b.account == account
            && b.subject.names(p)
            && b.role.grants(action)
            && match &b.container {
                None => true,
                Some(c) => !action.account_wide(container) && container == Some(c.as_str()),
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal() -> Principal {
        Principal {
            tenant: "t".into(),
            object_id: "AAAA-1".into(),
            app_id: Some("app-1".into()),
            groups: vec!["g-1".into()],
            roles: vec!["Blob.Write".into()],
            ..Principal::default()
        }
    }

    fn bind(subject: &str, role: Role, scope: &str) -> Binding {
        let (account, container) = Binding::scope(scope).unwrap();
        Binding { subject: Subject::parse(subject).unwrap(), role, account, container }
    }

    #[test]
    fn roles_grant_what_azure_built_in_roles_grant() {
        use Action::*;
        let all = [
            ContainersRead,
            ContainersWrite,
            ContainersDelete,
            ContainersGetAcl,
            ContainersSetAcl,
            BlobsRead,
            BlobsWrite,
            BlobsDelete,
            UserDelegationKey,
            ServiceProperties,
        ];
        let granted = |r: Role| all.iter().filter(|a| r.grants(**a)).count();
        assert_eq!(
            Role::ALL.map(granted),
            [3, 7, 9, 1],
            "Reader, Contributor, Owner and Delegator grant 3, 7, 9 and one action; none the service's properties"
        );
        assert!(Role::Reader.grants(BlobsRead) && !Role::Reader.grants(BlobsWrite));
        assert!(!Role::Contributor.grants(ContainersSetAcl) && Role::Owner.grants(ContainersSetAcl));
        assert_eq!(Role::parse("storage blob data reader"), Some(Role::Reader));
        assert_eq!(Role::parse("BA92F5B4-2D11-453D-A403-E96B0029C9FE"), Some(Role::Contributor));
        assert_eq!(Role::parse("Storage Blob Data Writer"), None);
    }

    #[test]
    fn a_binding_names_its_subject_and_holds_within_its_scope() {
        let p = principal();
        let reader = [bind("oid:aaaa-1", Role::Reader, "acct")];
        assert!(allows(&reader, &p, "acct", Some("c"), Action::BlobsRead), "object ids ignore case");
        assert!(!allows(&reader, &p, "acct", Some("c"), Action::BlobsWrite));
        assert!(!allows(&reader, &p, "other", Some("c"), Action::BlobsRead), "another account");
        for subject in ["group:g-1", "app:APP-1", "approle:Blob.Write"] {
            assert!(allows(&[bind(subject, Role::Contributor, "acct")], &p, "acct", Some("c"), Action::BlobsWrite));
        }
        assert!(!allows(&[bind("approle:blob.write", Role::Owner, "acct")], &p, "acct", None, Action::BlobsRead));
        assert!(!allows(&[bind("oid:someone", Role::Owner, "acct")], &p, "acct", None, Action::BlobsRead));
        // A container's binding reaches that container, never the account's listing or keys.
        let one = [bind("oid:AAAA-1", Role::Owner, "acct/c")];
        assert!(allows(&one, &p, "acct", Some("c"), Action::BlobsDelete));
        assert!(allows(&one, &p, "acct", Some("c"), Action::ContainersRead));
        assert!(!allows(&one, &p, "acct", Some("d"), Action::BlobsRead));
        assert!(!allows(&one, &p, "acct", None, Action::ContainersRead), "list containers needs the account");
        assert!(!allows(&one, &p, "acct", Some("c"), Action::UserDelegationKey));
        assert!(allows(&[bind("oid:AAAA-1", Role::Delegator, "acct")], &p, "acct", None, Action::UserDelegationKey));
        for bad in ["", "a/", "/c", "a/b/c"] {
            assert_eq!(Binding::scope(bad), None, "{bad}");
        }
        for bad in ["oid", "oid:", "user:x"] {
            assert_eq!(Subject::parse(bad), None, "{bad}");
        }
    }
}
