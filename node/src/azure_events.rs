//! Azure's scheduled events (the instance metadata service): a Redeploy, a Preempt or a
//! Terminate of this VM erases its local NVMe. On such a notice the node stops taking writes
//! and reports not ready (so clients and load balancers go elsewhere), uploads everything to the
//! tier and writes a restore point when it has one, and then tells Azure it may go ahead (a
//! StartRequests for the event). A notice withdrawn ends the drain. A metadata service that does
//! not answer changes nothing: it is not a notice.

use std::sync::{mpsc, Arc};
use std::time::Duration;

use edgeblob_engine::Node;
use edgeblob_hw::imds::request;
use serde_json::Value;

use crate::config::AzureConfig;
use crate::lifecycle::Lifecycle;

/// The events that erase local disks.
const ERASING: &[&str] = &["Redeploy", "Preempt", "Terminate"];
const API: &str = "api-version=2020-07-01";
const CAUSE: &str = "azure-scheduled-event";

/// One event of this VM that erases its disks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub id: String,
    pub kind: String,
    pub not_before: String,
}

/// The erasing events in a scheduled-events document that concern `vm` (all of them when the
/// VM's name is not known, or an event names no resource).
pub fn notices(doc: &Value, vm: Option<&str>) -> Vec<Notice> {
    let events = doc.get("Events").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    events
        .iter()
        .filter(|e| e.get("EventType").and_then(Value::as_str).is_some_and(|t| ERASING.contains(&t)))
        .filter(|e| e.get("EventStatus").and_then(Value::as_str) != Some("Completed"))
        .filter(|e| {
            let resources: Vec<&str> = e
                .get("Resources")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match vm {
                Some(vm) if !resources.is_empty() => resources.iter().any(|r| r.eq_ignore_ascii_case(vm)),
                _ => true,
            }
        })
        .map(|e| {
            let field = |k: &str| {
                e.get(k).and_then(Value::as_str).unwrap_or("").chars().filter(|c| !c.is_control()).take(128).collect()
            };
            Notice { id: field("EventId"), kind: field("EventType"), not_before: field("NotBefore") }
        })
        .collect()
}

/// The watcher's thread; stopped with [`EventWatcher::stop`].
pub struct EventWatcher {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl EventWatcher {
    pub fn start(
        node: Arc<Node>,
        lifecycle: Arc<Lifecycle>,
        cfg: &AzureConfig,
        tiered: bool,
    ) -> std::io::Result<EventWatcher> {
        let (stop, stopped) = mpsc::channel::<()>();
        let endpoint = cfg.metadata_endpoint.clone();
        let every = Duration::from_secs(cfg.poll_secs.max(1));
        let thread = std::thread::Builder::new().name("azure-events".into()).spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            let mut vm: Option<String> = None;
            let mut drained: Vec<String> = Vec::new();
            let mut failing = false;
            loop {
                if vm.is_none() {
                    vm = request(&endpoint, "GET", "/metadata/instance/compute/name?api-version=2021-02-01&format=text", None)
                        .ok()
                        .filter(|(status, name)| *status == 200 && !name.trim().is_empty())
                        .map(|(_, name)| name.trim().to_owned());
                }
                match request(&endpoint, "GET", &format!("/metadata/scheduledevents?{API}"), None)
                    .and_then(|(status, body)| match status {
                        200 => serde_json::from_str::<Value>(&body).map_err(|e| e.to_string()),
                        s => Err(format!("answered {s}")),
                    }) {
                    Ok(doc) => {
                        failing = false;
                        let found = notices(&doc, vm.as_deref());
                        match found.first() {
                            None => lifecycle.end(CAUSE),
                            Some(n) => {
                                lifecycle.begin(
                                    CAUSE,
                                    format!("Azure scheduled {} ({}, not before {}): the local disks will be erased", n.kind, n.id, n.not_before),
                                );
                                if tiered && !drained.contains(&n.id) {
                                    match rt.block_on(drain(&node)) {
                                        Ok(()) => {
                                            drained.push(n.id.clone());
                                            let body = serde_json::json!({ "StartRequests": [{ "EventId": n.id }] }).to_string();
                                            match request(&endpoint, "POST", &format!("/metadata/scheduledevents?{API}"), Some(&body)) {
                                                Ok((200, _)) => tracing::warn!(event = %n.id, "drained to the tier; Azure may go ahead"),
                                                other => tracing::warn!(event = %n.id, ?other, "drained to the tier; approving the event failed (Azure waits for its time)"),
                                            }
                                        }
                                        Err(e) => tracing::error!(event = %n.id, %e, "the drain to the tier failed; trying again"),
                                    }
                                }
                            }
                        }
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(%endpoint, %e, "Azure's scheduled events cannot be read (retrying quietly)");
                        }
                        failing = true;
                    }
                }
                match stopped.recv_timeout(every) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            }
        })?;
        Ok(EventWatcher { stop, thread })
    }

    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// What `edgeblob-admin tier drain` does: everything up, and a restore point of it.
async fn drain(node: &Node) -> Result<(), String> {
    node.tier_flush().await.map_err(|e| e.to_string())?;
    node.tier_epoch().await.map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_erasing_events_of_this_vm_are_notices() {
        let doc: Value = serde_json::from_str(
            r#"{"DocumentIncarnation":3,"Events":[
              {"EventId":"a","EventType":"Reboot","Resources":["vm1"],"EventStatus":"Scheduled","NotBefore":"x"},
              {"EventId":"b","EventType":"Redeploy","Resources":["vm2"],"EventStatus":"Scheduled","NotBefore":"x"},
              {"EventId":"c","EventType":"Preempt","Resources":["VM1"],"EventStatus":"Scheduled","NotBefore":"Mon, 19 Sep 2016 18:29:47 GMT"},
              {"EventId":"d","EventType":"Terminate","Resources":["vm1"],"EventStatus":"Completed","NotBefore":""}]}"#,
        )
        .unwrap();
        let n = notices(&doc, Some("vm1"));
        assert_eq!(
            n,
            vec![Notice { id: "c".into(), kind: "Preempt".into(), not_before: "Mon, 19 Sep 2016 18:29:47 GMT".into() }]
        );
        assert_eq!(notices(&doc, None).len(), 2, "the VM's name unknown: every erasing event counts");
        assert!(notices(&serde_json::json!({"Events": []}), Some("vm1")).is_empty());
    }
}
