"""Get/Set Blob Service Properties with the real Python SDK: CORS rules and delete retention set,
read back, kept when another section is set; bad values refused; nothing shows as a container.
argv: the connection string."""
import sys

from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient, CorsRule, RetentionPolicy, StaticWebsite

svc = BlobServiceClient.from_connection_string(sys.argv[1])
before = svc.get_service_properties()
assert before["cors"] == [] and not before["delete_retention_policy"].enabled, before
rule = CorsRule(["https://app.example"], ["GET", "PUT"], allowed_headers=["x-ms-meta-*", "content-type"],
                exposed_headers=["x-ms-meta-*"], max_age_in_seconds=300)
svc.set_service_properties(cors=[rule], delete_retention_policy=RetentionPolicy(enabled=True, days=7))
got = svc.get_service_properties()
assert len(got["cors"]) == 1, got
c = got["cors"][0]
assert (c.allowed_origins, c.allowed_methods, c.max_age_in_seconds) == ("https://app.example", "GET,PUT", 300), vars(c)
assert got["delete_retention_policy"].enabled and got["delete_retention_policy"].days == 7
svc.set_service_properties(static_website=StaticWebsite(enabled=True, index_document="index.html"))
got = svc.get_service_properties()
assert len(got["cors"]) == 1 and got["static_website"].enabled and got["static_website"].index_document == "index.html", got
try:
    svc.set_service_properties(delete_retention_policy=RetentionPolicy(enabled=True, days=400))
    raise AssertionError("400 days accepted")
except HttpResponseError as e:
    assert e.status_code == 400, e.status_code
assert svc.get_service_properties()["delete_retention_policy"].days == 7, "a refused set changed something"
assert [x.name for x in svc.list_containers()] == [], "the properties show as a container"
print("OK")
