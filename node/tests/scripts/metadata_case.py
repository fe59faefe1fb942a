"""Metadata names keep the case the client wrote, as the Python SDK sees them: through Put Blob,
Set Blob Metadata, Get Blob, Get Blob Properties, and a container's metadata. argv: the account
URL and its connection string."""
import sys

from azure.storage.blob import BlobServiceClient

conn = sys.argv[1]
svc = BlobServiceClient.from_connection_string(conn)
ctr = svc.create_container("metacase")
ctr.upload_blob("b", b"data", metadata={"MixedCase": "1", "lower": "2", "UPPER_ONE": "3"})
want = {"MixedCase": "1", "lower": "2", "UPPER_ONE": "3"}
got = ctr.get_blob_client("b").get_blob_properties().metadata
assert dict(got) == want, got
got = ctr.download_blob("b").properties.metadata
assert dict(got) == want, got
ctr.get_blob_client("b").set_blob_metadata({"NewName": "x", "Second_Name": "y"})
got = ctr.get_blob_client("b").get_blob_properties().metadata
assert dict(got) == {"NewName": "x", "Second_Name": "y"}, got
listed = next(iter(ctr.list_blobs(include=["metadata"]))).metadata
assert dict(listed) == {"NewName": "x", "Second_Name": "y"}, listed
ctr.set_container_metadata({"ContainerKey": "v"})
got = ctr.get_container_properties().metadata
assert dict(got) == {"ContainerKey": "v"}, got
print("OK")
