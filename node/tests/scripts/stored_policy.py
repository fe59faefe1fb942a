"""Stored access policies with the real Python SDK: Set/Get Container ACL with signed
identifiers, a container SAS naming one (`si`) that obeys it, and its revocation. argv: the
connection string."""
import datetime
import sys

from azure.core.exceptions import HttpResponseError
from azure.storage.blob import (AccessPolicy, BlobServiceClient, ContainerClient, ContainerSasPermissions,
                                generate_container_sas)

conn = sys.argv[1]
svc = BlobServiceClient.from_connection_string(conn)
ctr = svc.create_container("policies")
ctr.upload_blob("a.txt", b"hello")
now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
hour = datetime.timedelta(hours=1)
readers = AccessPolicy(permission=ContainerSasPermissions(read=True, list=True), start=now - hour, expiry=now + hour)
later = AccessPolicy(permission=ContainerSasPermissions(read=True), start=now + hour, expiry=now + 2 * hour)
ctr.set_container_access_policy(signed_identifiers={"readers": readers, "later": later})
got = ctr.get_container_access_policy()
ids = sorted(s.id for s in got["signed_identifiers"])
assert ids == ["later", "readers"], got
r = [s for s in got["signed_identifiers"] if s.id == "readers"][0].access_policy
assert r.permission == "rl", r.permission

key = conn.split("AccountKey=")[1].split(";")[0]
url = conn.split("BlobEndpoint=")[1].split(";")[0]
sas = generate_container_sas("devstoreaccount1", "policies", account_key=key, policy_id="readers")
c = ContainerClient.from_container_url(f"{url}/policies?{sas}")
assert [b.name for b in c.list_blobs()] == ["a.txt"]
assert c.download_blob("a.txt").readall() == b"hello"


def refused(client, status, code, what):
    try:
        what(client)
        raise AssertionError("accepted")
    except HttpResponseError as e:
        assert (e.status_code, e.error_code) == (status, code), (e.status_code, e.error_code)


refused(c, 403, "AuthorizationPermissionMismatch", lambda c: c.upload_blob("b.txt", b"x"))
# A policy not yet started; a field both in the SAS and in its policy (400, as Azure).
not_yet = generate_container_sas("devstoreaccount1", "policies", account_key=key, policy_id="later")
refused(ContainerClient.from_container_url(f"{url}/policies?{not_yet}"), 403, "AuthenticationFailed",
        lambda c: c.download_blob("a.txt").readall())
both = generate_container_sas("devstoreaccount1", "policies", account_key=key, policy_id="readers",
                              permission=ContainerSasPermissions(read=True))
refused(ContainerClient.from_container_url(f"{url}/policies?{both}"), 400, "InvalidQueryParameterValue",
        lambda c: c.download_blob("a.txt").readall())
# Removing the policy revokes every SAS that names it.
ctr.set_container_access_policy(signed_identifiers={"later": later})
refused(c, 403, "AuthenticationFailed", lambda c: c.download_blob("a.txt").readall())
# Metadata set later keeps the policies; they never show as metadata.
ctr.set_container_metadata({"Team": "ml"})
assert dict(ctr.get_container_properties().metadata) == {"Team": "ml"}
listed = [x for x in svc.list_containers(include_metadata=True) if x.name == "policies"][0]
assert dict(listed.metadata) == {"Team": "ml"}, listed.metadata
assert [s.id for s in ctr.get_container_access_policy()["signed_identifiers"]] == ["later"]
print("OK")
