"""Blob Batch and Set Blob Tier with the real Python SDK: batch deletes (with a missing blob, with
per-blob conditions, under a container SAS), batch tier changes, a single Set Blob Tier, a tier
named at upload, and what Get Blob Properties and List Blobs report. argv: the connection
string."""
import sys

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import (BlobServiceClient, ContainerClient, ContainerSasPermissions, PartialBatchErrorException,
                                StandardBlobTier, generate_container_sas)

conn = sys.argv[1]
svc = BlobServiceClient.from_connection_string(conn)
ctr = svc.create_container("batches")
names = ["a.txt", "dir/b.txt", "c d.txt"]
for n in names:
    ctr.upload_blob(n, n.encode())


def listed():
    return sorted(b.name for b in ctr.list_blobs())


# Tiers: a batch of Set Blob Tier, then what each blob reports.
etag_before = ctr.get_blob_client("a.txt").get_blob_properties().etag
parts = list(ctr.set_standard_blob_tier_blobs(StandardBlobTier.COOL, *names))
assert [p.status_code for p in parts] == [200, 200, 200], [p.status_code for p in parts]
for n in names:
    p = ctr.get_blob_client(n).get_blob_properties()
    assert (p.blob_tier, bool(p.blob_tier_inferred)) == ("Cool", False), (n, p.blob_tier, p.blob_tier_inferred)
    assert p.blob_tier_change_time is not None, n
a = ctr.get_blob_client("a.txt")
assert a.get_blob_properties().etag == etag_before, "Set Blob Tier changed the ETag"
a.set_standard_blob_tier(StandardBlobTier.COLD)
a.set_blob_metadata({"Kept": "yes"})
p = a.get_blob_properties()
assert (p.blob_tier, p.metadata) == ("Cold", {"Kept": "yes"}), (p.blob_tier, p.metadata)
tiers = {b.name: (b.blob_tier, b.blob_tier_inferred) for b in ctr.list_blobs(include=["metadata"])}
assert tiers["a.txt"][0] == "Cold" and tiers["dir/b.txt"][0] == "Cool", tiers
listed_md = [b.metadata for b in ctr.list_blobs(include=["metadata"])]
assert all(m in ({}, None, {"Kept": "yes"}) for m in listed_md), listed_md
fresh = ctr.upload_blob("fresh.txt", b"x", standard_blob_tier=StandardBlobTier.COOL)
p = ctr.get_blob_client("fresh.txt").get_blob_properties()
assert (p.blob_tier, bool(p.blob_tier_inferred)) == ("Cool", False), (p.blob_tier, p.blob_tier_inferred)
p = ctr.upload_blob("plain.txt", b"x") and ctr.get_blob_client("plain.txt").get_blob_properties()
assert (p.blob_tier, p.blob_tier_inferred) == ("Hot", True), (p.blob_tier, p.blob_tier_inferred)
try:
    a.set_standard_blob_tier("Archive")
    raise AssertionError("Archive accepted")
except HttpResponseError as e:
    assert (e.status_code, e.error_code) == (400, "InvalidHeaderValue"), (e.status_code, e.error_code)

# Deletes: a missing blob fails its own sub-request only, with Azure's status and code.
ctr.upload_blob("gone.txt", b"x")
try:
    ctr.delete_blobs("gone.txt", "missing.txt")
    raise AssertionError("a partial failure was not reported")
except PartialBatchErrorException as e:
    statuses = sorted(p.status_code for p in e.parts)
    assert statuses == [202, 404], statuses
    missing = [p for p in e.parts if p.status_code == 404][0]
    assert missing.headers["x-ms-error-code"] == "BlobNotFound", dict(missing.headers)
    assert missing.reason == "The specified blob does not exist.", missing.reason
assert "gone.txt" not in listed()
parts = list(ctr.delete_blobs("missing.txt", raise_on_any_failure=False))
assert [p.status_code for p in parts] == [404]

# Per-blob conditions: a stale ETag keeps its blob.
stale = ctr.get_blob_client("c d.txt").get_blob_properties().etag
ctr.upload_blob("c d.txt", b"changed", overwrite=True)
current = ctr.get_blob_client("dir/b.txt").get_blob_properties().etag
parts = list(ctr.delete_blobs(
    {"name": "c d.txt", "etag": stale, "match_condition": MatchConditions.IfNotModified},
    {"name": "dir/b.txt", "etag": current, "match_condition": MatchConditions.IfNotModified},
    raise_on_any_failure=False))
assert sorted(p.status_code for p in parts) == [202, 412], [p.status_code for p in parts]
assert listed() == ["a.txt", "c d.txt", "fresh.txt", "plain.txt"], listed()

# Under a container SAS with delete: the batch and its sub-requests carry the SAS.
key = conn.split("AccountKey=")[1].split(";")[0]
url = conn.split("BlobEndpoint=")[1].split(";")[0]
sas = generate_container_sas("devstoreaccount1", "batches", account_key=key,
                             permission=ContainerSasPermissions(delete=True, list=True, write=True),
                             expiry="2099-01-01T00:00:00Z")
c = ContainerClient.from_container_url(f"{url}/batches?{sas}")
parts = list(c.set_standard_blob_tier_blobs(StandardBlobTier.HOT, "fresh.txt"))
assert [p.status_code for p in parts] == [200]
parts = list(c.delete_blobs("fresh.txt", "plain.txt"))
assert [p.status_code for p in parts] == [202, 202], [p.status_code for p in parts]
read_only = generate_container_sas("devstoreaccount1", "batches", account_key=key,
                                   permission=ContainerSasPermissions(read=True, list=True), expiry="2099-01-01T00:00:00Z")
r = ContainerClient.from_container_url(f"{url}/batches?{read_only}")
parts = list(r.delete_blobs("a.txt", raise_on_any_failure=False))
assert [(p.status_code, p.headers["x-ms-error-code"]) for p in parts] == [(403, "AuthorizationPermissionMismatch")], \
    [(p.status_code, dict(p.headers)) for p in parts]
assert listed() == ["a.txt", "c d.txt"], listed()
print("OK")
