//! Operation routing: method, target and a few headers decide which Blob operation a request is.
//! Unknown query parameters are ignored; an unknown `comp` or `restype` is an error, since the
//! client asked for something specific.

use http::{HeaderMap, Method};

use crate::addr::Target;
use crate::error_code::ErrorCode;

/// Declares the operations once: the enum, every one in order, and each one's name (Azure's).
macro_rules! operations {
    ($($op:ident),* $(,)?) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Operation {
            $($op),*
        }

        impl Operation {
            /// Every operation, in declaration order: `ALL[op.index()] == op` (metrics keep a
            /// slot for each, so their series are fixed whatever clients send).
            pub const ALL: [Operation; [$(Operation::$op),*].len()] = [$(Operation::$op),*];

            pub fn name(self) -> &'static str {
                match self {
                    $(Operation::$op => stringify!($op)),*
                }
            }
        }
    };
}

operations!(
    ListContainers,
    GetAccountInfo,
    CreateContainer,
    DeleteContainer,
    GetContainerProperties,
    SetContainerMetadata,
    GetContainerAcl,
    SetContainerAcl,
    ListBlobs,
    PutBlob,
    PutBlobFromUrl,
    CopyBlob,
    AbortCopyBlob,
    PutBlock,
    PutBlockFromUrl,
    PutBlockList,
    GetBlockList,
    GetBlob,
    GetBlobProperties,
    DeleteBlob,
    SetBlobMetadata,
    SetBlobProperties,
    SetBlobTier,
    BlobBatch,
    GetUserDelegationKey,
    GetBlobServiceProperties,
    SetBlobServiceProperties,
);

impl Operation {
    /// Its place in [`Operation::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the operation only reads (for SAS permissions and anonymous access).
    pub fn is_read(self) -> bool {
        use Operation::*;
        matches!(
            self,
            ListContainers
                | GetAccountInfo
                | GetContainerProperties
                | ListBlobs
                | GetBlockList
                | GetBlob
                | GetBlobProperties
        )
    }
}

pub fn route(method: &Method, t: &Target, headers: &HeaderMap) -> Result<Operation, ErrorCode> {
    use Operation::*;
    let comp = t.param("comp");
    let restype = t.param("restype");
    let bad_verb = Err(ErrorCode::UnsupportedHttpVerb);
    let bad_query = Err(ErrorCode::InvalidQueryParameterValue);
    // Get Account Information answers on the service, a container or a blob URL alike.
    if restype == Some("account") && comp == Some("properties") {
        return if matches!(*method, Method::GET | Method::HEAD) { Ok(GetAccountInfo) } else { bad_verb };
    }
    let copy_source = headers.contains_key("x-ms-copy-source");
    match (&t.container, &t.blob) {
        (None, _) => match (method, comp) {
            (&Method::GET, Some("list")) => Ok(ListContainers),
            (&Method::POST, Some("batch")) => Ok(BlobBatch),
            (&Method::POST, Some("userdelegationkey")) if restype == Some("service") => Ok(GetUserDelegationKey),
            (&Method::GET, Some("properties")) if restype == Some("service") => Ok(GetBlobServiceProperties),
            (&Method::PUT, Some("properties")) if restype == Some("service") => Ok(SetBlobServiceProperties),
            (_, Some("list")) => bad_verb,
            (_, Some("userdelegationkey") | Some("properties")) if restype == Some("service") => bad_verb,
            _ => bad_query,
        },
        (Some(_), None) => {
            if restype != Some("container") {
                return bad_query;
            }
            match (method, comp) {
                (&Method::PUT, None) => Ok(CreateContainer),
                (&Method::DELETE, None) => Ok(DeleteContainer),
                (&Method::GET | &Method::HEAD, None | Some("metadata")) => Ok(GetContainerProperties),
                (&Method::PUT, Some("metadata")) => Ok(SetContainerMetadata),
                (&Method::GET | &Method::HEAD, Some("acl")) => Ok(GetContainerAcl),
                (&Method::PUT, Some("acl")) => Ok(SetContainerAcl),
                (&Method::GET, Some("list")) => Ok(ListBlobs),
                (&Method::POST, Some("batch")) => Ok(BlobBatch),
                (_, None | Some("metadata") | Some("list") | Some("batch") | Some("acl")) => bad_verb,
                _ => bad_query,
            }
        }
        (Some(_), Some(_)) => match (method, comp) {
            (&Method::PUT, None) if copy_source && headers.contains_key("x-ms-blob-type") => Ok(PutBlobFromUrl),
            (&Method::PUT, None) if copy_source => Ok(CopyBlob),
            (&Method::PUT, None) => Ok(PutBlob),
            (&Method::PUT, Some("block")) if copy_source => Ok(PutBlockFromUrl),
            (&Method::PUT, Some("block")) => Ok(PutBlock),
            (&Method::PUT, Some("blocklist")) => Ok(PutBlockList),
            (&Method::PUT, Some("metadata")) => Ok(SetBlobMetadata),
            (&Method::PUT, Some("properties")) => Ok(SetBlobProperties),
            (&Method::PUT, Some("tier")) => Ok(SetBlobTier),
            (&Method::PUT, Some("copy")) => Ok(AbortCopyBlob),
            (&Method::GET, Some("blocklist")) => Ok(GetBlockList),
            (&Method::GET, None) => Ok(GetBlob),
            (&Method::HEAD, None | Some("metadata")) | (&Method::GET, Some("metadata")) => Ok(GetBlobProperties),
            (&Method::DELETE, None) => Ok(DeleteBlob),
            (
                _,
                None | Some("block") | Some("blocklist") | Some("metadata") | Some("properties") | Some("tier")
                | Some("copy"),
            ) => bad_verb,
            _ => bad_query,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::parse;

    fn r(method: Method, target: &str, headers: &[(&'static str, &'static str)]) -> Result<Operation, ErrorCode> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, v.parse().unwrap());
        }
        route(&method, &parse(target, Some("127.0.0.1")).unwrap(), &h)
    }

    #[test]
    fn every_operation_has_its_slot_and_a_distinct_name() {
        let mut names = std::collections::HashSet::new();
        for (i, op) in Operation::ALL.iter().enumerate() {
            assert_eq!(op.index(), i);
            assert!(names.insert(op.name()), "{} twice", op.name());
        }
    }

    #[test]
    fn every_operation_routes() {
        use Operation::*;
        let cases = [
            (Method::GET, "/a?comp=list", vec![], ListContainers),
            (Method::GET, "/a/?comp=list&include=", vec![], ListContainers),
            (Method::GET, "/a/ctr/b?restype=account&comp=properties", vec![], GetAccountInfo),
            (Method::PUT, "/a/ctr?restype=container", vec![], CreateContainer),
            (Method::DELETE, "/a/ctr?restype=container", vec![], DeleteContainer),
            (Method::HEAD, "/a/ctr?restype=container", vec![], GetContainerProperties),
            (Method::GET, "/a/ctr?restype=container&comp=metadata", vec![], GetContainerProperties),
            (Method::PUT, "/a/ctr?restype=container&comp=metadata", vec![], SetContainerMetadata),
            (Method::GET, "/a/ctr?restype=container&comp=list&delimiter=", vec![], ListBlobs),
            (Method::GET, "/a/ctr?restype=container&comp=acl", vec![], GetContainerAcl),
            (Method::PUT, "/a/ctr?restype=container&comp=acl", vec![], SetContainerAcl),
            (Method::PUT, "/a/ctr/b", vec![], PutBlob),
            (
                Method::PUT,
                "/a/ctr/b",
                vec![("x-ms-copy-source", "http://x/a/c/b"), ("x-ms-blob-type", "BlockBlob")],
                PutBlobFromUrl,
            ),
            (Method::PUT, "/a/ctr/b", vec![("x-ms-copy-source", "http://x/a/c/b")], CopyBlob),
            (Method::PUT, "/a/ctr/b?comp=block&blockid=YQ%3D%3D&timeout=30", vec![], PutBlock),
            (
                Method::PUT,
                "/a/ctr/b?comp=block&blockid=YQ%3D%3D",
                vec![("x-ms-copy-source", "http://x/a/c/b")],
                PutBlockFromUrl,
            ),
            (Method::PUT, "/a/ctr/b?comp=blocklist", vec![], PutBlockList),
            (Method::GET, "/a/ctr/b?comp=blocklist&blocklisttype=all", vec![], GetBlockList),
            (Method::GET, "/a/ctr/b", vec![], GetBlob),
            (Method::HEAD, "/a/ctr/dir/", vec![], GetBlobProperties),
            (Method::DELETE, "/a/ctr/b", vec![], DeleteBlob),
            (Method::PUT, "/a/ctr/b?comp=metadata", vec![], SetBlobMetadata),
            (Method::PUT, "/a/ctr/b?comp=properties", vec![], SetBlobProperties),
            (Method::PUT, "/a/ctr/b?comp=tier", vec![], SetBlobTier),
            (Method::PUT, "/a/ctr/b?comp=copy&copyid=x", vec![("x-ms-copy-action", "abort")], AbortCopyBlob),
            (Method::POST, "/a/ctr?restype=container&comp=batch", vec![], BlobBatch),
            (Method::POST, "/a?comp=batch", vec![], BlobBatch),
            (Method::POST, "/a/?restype=service&comp=userdelegationkey", vec![], GetUserDelegationKey),
            (Method::GET, "/a/?restype=service&comp=properties", vec![], GetBlobServiceProperties),
            (Method::PUT, "/a/?restype=service&comp=properties", vec![], SetBlobServiceProperties),
        ];
        for (m, target, h, want) in cases {
            assert_eq!(r(m.clone(), target, &h), Ok(want), "{m} {target}");
        }
    }

    #[test]
    fn wrong_verbs_and_unknown_comps_are_errors() {
        assert_eq!(r(Method::POST, "/a/ctr/b", &[]), Err(ErrorCode::UnsupportedHttpVerb));
        assert_eq!(r(Method::PUT, "/a/ctr/b?comp=tier2", &[]), Err(ErrorCode::InvalidQueryParameterValue));
        assert_eq!(
            r(Method::GET, "/a/ctr", &[]),
            Err(ErrorCode::InvalidQueryParameterValue),
            "a container URL needs restype"
        );
        assert_eq!(r(Method::GET, "/a", &[]), Err(ErrorCode::InvalidQueryParameterValue));
    }
}
