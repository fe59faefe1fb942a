"""The real Python SDK against a node, authenticated by azure-identity's ManagedIdentityCredential
(its IMDS pointed at a stand-in that mints tokens with the test's key): argv is the account URL,
the CA bundle, the audience, and the client id and object id of a user-assigned identity bound
as a Reader. Prints the user delegation SAS it made, then OK."""
import datetime
import sys

from azure.core.exceptions import HttpResponseError
from azure.identity import ManagedIdentityCredential
from azure.storage.blob import BlobClient, BlobSasPermissions, BlobServiceClient, generate_blob_sas

url, ca, audience, reader_id, reader_oid = sys.argv[1:6]
data = bytes(range(256)) * 4096 + b"tail"

# The system-assigned identity, a Contributor: upload, list, download, delete.
svc = BlobServiceClient(url, credential=ManagedIdentityCredential(), connection_verify=ca, audience=audience)
ctr = svc.create_container("mid")
ctr.upload_blob("dir/a.bin", data)
ctr.upload_blob("gone.bin", b"x")
assert sorted(b.name for b in ctr.list_blobs()) == ["dir/a.bin", "gone.bin"], list(ctr.list_blobs())
assert ctr.download_blob("dir/a.bin").readall() == data
ctr.delete_blob("gone.bin")
assert [b.name for b in ctr.list_blobs()] == ["dir/a.bin"]

# A user-assigned identity bound as a Reader: reads, may not write.
reader = BlobServiceClient(
    url, credential=ManagedIdentityCredential(client_id=reader_id), connection_verify=ca, audience=audience
)
assert reader.get_container_client("mid").download_blob("dir/a.bin").readall() == data
try:
    reader.get_container_client("mid").upload_blob("nope.bin", b"x")
    raise AssertionError("a Reader wrote")
except HttpResponseError as e:
    assert e.status_code == 403 and e.error_code == "AuthorizationPermissionMismatch", (e.status_code, e.error_code)

# A user delegation SAS, as azcopy and the SDK use after an Entra login.
now = datetime.datetime.now(datetime.timezone.utc)
hour = datetime.timedelta(hours=1)
key = svc.get_user_delegation_key(now - datetime.timedelta(minutes=5), now + hour)
assert key.signed_oid and key.signed_service == "b", vars(key)
sas = generate_blob_sas("devstoreaccount1", "mid", "dir/a.bin", user_delegation_key=key,
                        permission=BlobSasPermissions(read=True), expiry=now + hour)
assert BlobClient.from_blob_url(f"{url}/mid/dir/a.bin?{sas}", connection_verify=ca).download_blob().readall() == data


def refused(token, code):
    try:
        BlobClient.from_blob_url(f"{url}/mid/dir/a.bin?{token}", connection_verify=ca).download_blob().readall()
        raise AssertionError(f"{token} was accepted")
    except HttpResponseError as e:
        assert e.status_code == 403 and e.error_code == code, (e.status_code, e.error_code)


i = sas.index("sig=") + 4
refused(sas[:i] + ("A" if sas[i] != "A" else "B") + sas[i + 1:], "AuthenticationFailed")
expired = generate_blob_sas("devstoreaccount1", "mid", "dir/a.bin", user_delegation_key=key,
                            permission=BlobSasPermissions(read=True), start=now - hour, expiry=now - datetime.timedelta(minutes=1))
refused(expired, "AuthenticationFailed")
write_sas = generate_blob_sas("devstoreaccount1", "mid", "dir/a.bin", user_delegation_key=key,
                              permission=BlobSasPermissions(read=True), expiry=now + hour)
try:
    BlobClient.from_blob_url(f"{url}/mid/dir/w.bin?{write_sas}", connection_verify=ca).upload_blob(b"x")
    raise AssertionError("a read SAS for one blob wrote another")
except HttpResponseError as e:
    assert e.status_code == 403, e.status_code
# A SAS bound to a delegated user (sduoid): it holds only with that user's own token beside it.
bound = generate_blob_sas("devstoreaccount1", "mid", "dir/a.bin", user_delegation_key=key,
                          permission=BlobSasPermissions(read=True), expiry=now + hour, user_delegation_oid=reader_oid)
assert "sduoid=" in bound, bound
refused(bound, "AuthenticationFailed")
as_reader = BlobClient.from_blob_url(f"{url}/mid/dir/a.bin?{bound}", credential=ManagedIdentityCredential(client_id=reader_id),
                                     connection_verify=ca, audience=audience)
assert as_reader.download_blob().readall() == data
as_other = BlobClient.from_blob_url(f"{url}/mid/dir/a.bin?{bound}", credential=ManagedIdentityCredential(),
                                    connection_verify=ca, audience=audience)
try:
    as_other.download_blob().readall()
    raise AssertionError("another principal's token used a SAS bound to the reader")
except HttpResponseError as e:
    assert e.status_code == 403 and e.error_code == "AuthenticationFailed", (e.status_code, e.error_code)
print("SAS " + sas)
print("OK")
