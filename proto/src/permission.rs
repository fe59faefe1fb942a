//! The one table of what each credential needs for each operation: a row an operation, a column
//! a kind of credential. The account key may do everything and has no column; anonymous access
//! is read from the SAS column (what a read-only SAS would reach of what a container opens).
//!
//! SAS column, from Azure's "Create an account SAS" and "Create a service SAS": the level the
//! operation acts on, and the permission letters of which any one suffices. `None`: no SAS may
//! run it (a container's ACL decides who else may read it, so only the account key may read or
//! change it). `c` (create) writes a new blob but never replaces one (the caller adds
//! `If-None-Match: *`, see [`crate::sas::create_only`]); it does not stage or commit blocks,
//! which take `w`. `a` (add) is for append blobs and grants nothing here.
//!
//! Role column, from the "Permissions" section of each operation's page in Azure's REST
//! reference: the RBAC action an Entra principal's role must hold (see [`crate::rbac`]).

use crate::op::Operation;
use crate::rbac::Action;
use crate::sas::Level;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    pub sas: Option<(Level, &'static str)>,
    /// `None`: nothing to hold beyond a valid token (a batch: each sub-request is authorised
    /// on its own).
    pub role: Option<Action>,
}

pub fn needs(op: Operation) -> Needs {
    use Action::*;
    use Operation::*;
    let (sas, role) = match op {
        // Any valid SAS of the account may ask what the account is; each sub-request of a batch
        // is authorised on its own.
        GetAccountInfo => (Some((Level::Any, "")), Some(ContainersRead)),
        BlobBatch => (Some((Level::Any, "")), None),
        // Entra ID only: no SAS, and the account key is turned away by the handler.
        GetUserDelegationKey => (None, Some(UserDelegationKey)),
        GetBlobServiceProperties => (Some((Level::Service, "r")), Some(ServiceProperties)),
        SetBlobServiceProperties => (Some((Level::Service, "w")), Some(ServiceProperties)),
        ListContainers => (Some((Level::Service, "l")), Some(ContainersRead)),
        CreateContainer => (Some((Level::Container, "cw")), Some(ContainersWrite)),
        DeleteContainer => (Some((Level::Container, "d")), Some(ContainersDelete)),
        GetContainerProperties => (Some((Level::Container, "r")), Some(ContainersRead)),
        SetContainerMetadata => (Some((Level::Container, "w")), Some(ContainersWrite)),
        GetContainerAcl => (None, Some(ContainersGetAcl)),
        SetContainerAcl => (None, Some(ContainersSetAcl)),
        ListBlobs => (Some((Level::Container, "l")), Some(BlobsRead)),
        GetBlob | GetBlobProperties | GetBlockList => (Some((Level::Object, "r")), Some(BlobsRead)),
        SetBlobMetadata | SetBlobProperties | SetBlobTier | AbortCopyBlob => {
            (Some((Level::Object, "w")), Some(BlobsWrite))
        }
        DeleteBlob => (Some((Level::Object, "d")), Some(BlobsDelete)),
        PutBlob | PutBlobFromUrl | CopyBlob => (Some((Level::Object, "cw")), Some(BlobsWrite)),
        PutBlock | PutBlockFromUrl | PutBlockList => (Some((Level::Object, "w")), Some(BlobsWrite)),
    };
    Needs { sas, role }
}
