//! What the informers feed: the pod cache, and the Secret and ConfigMap digests whose
//! changes of data (not of metadata alone, not on the first list) call the nudger.

use std::sync::Arc;
use std::time::Instant;

use crate::informer::{EventType, Handler};
use crate::metrics::Metrics;
use crate::nudge::Nudger;
use crate::objects::{DataObject, ObjKind, PodInfo, PodJson};
use crate::store::{Change, Scope, Store};

/// Pods: kept reduced, for the nudger to read.
pub(crate) struct PodHandler {
    pub(crate) scope: Scope,
    pub(crate) store: Arc<Store>,
    pub(crate) metrics: Arc<Metrics>,
}

impl Handler for PodHandler {
    type Json = PodJson;
    type Kept = PodInfo;

    fn resource(&self) -> &'static str {
        "pods"
    }

    fn keep(&self, json: PodJson) -> PodInfo {
        PodInfo::from(json)
    }

    fn resource_version(pod: &PodInfo) -> &str {
        &pod.resource_version
    }

    fn listed(&mut self, items: Vec<PodInfo>, _: Instant) {
        let n = self.store.replace_pods(&self.scope, items);
        self.metrics.objects("pods", n as u64);
    }

    fn event(&mut self, event: EventType, pod: PodInfo, _: Instant) {
        let n = match event {
            EventType::Added | EventType::Modified => self.store.put_pod(pod),
            EventType::Deleted => self.store.delete_pod(&pod.namespace, &pod.name),
        };
        self.metrics.objects("pods", n as u64);
    }
}

/// Secrets or ConfigMaps: a digest each; a change of data is nudged at once.
pub(crate) struct DataHandler {
    pub(crate) kind: ObjKind,
    pub(crate) scope: Scope,
    pub(crate) store: Arc<Store>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) nudger: Arc<Nudger>,
}

impl Handler for DataHandler {
    type Json = DataObject;
    type Kept = DataObject;

    fn resource(&self) -> &'static str {
        self.kind.plural()
    }

    fn keep(&self, json: DataObject) -> DataObject {
        json
    }

    fn resource_version(kept: &DataObject) -> &str {
        &kept.meta.resource_version
    }

    fn listed(&mut self, items: Vec<DataObject>, at: Instant) {
        let items = items
            .into_iter()
            .map(|o| {
                (
                    o.meta.namespace,
                    o.meta.name,
                    o.digest,
                    o.meta.resource_version,
                )
            })
            .collect();
        let (changed, n) = self.store.replace_objects(self.kind, &self.scope, items);
        self.metrics.objects(self.kind.plural(), n as u64);
        for (ns, name, rv) in changed {
            log::info!(target: "hello-path-nudger", "{} {ns}/{name} changed while the watch was down (resourceVersion {rv})", self.kind.title());
            self.nudger.on_change(self.kind, &ns, &name, &rv, at);
        }
    }

    fn event(&mut self, event: EventType, obj: DataObject, at: Instant) {
        let key = (self.kind, obj.meta.namespace, obj.meta.name);
        if event == EventType::Deleted {
            let n = self.store.delete_object(&key);
            self.metrics.objects(self.kind.plural(), n as u64);
            return;
        }
        let (change, n) =
            self.store
                .put_object(key.clone(), obj.digest, &obj.meta.resource_version);
        self.metrics.objects(self.kind.plural(), n as u64);
        match change {
            Change::Data => {
                self.nudger
                    .on_change(self.kind, &key.1, &key.2, &obj.meta.resource_version, at)
            }
            Change::Metadata => log::debug!(
                target: "hello-path-nudger",
                "{} {}/{}: metadata changed (resourceVersion {}), data did not: nothing to deliver",
                self.kind.title(), key.1, key.2, obj.meta.resource_version
            ),
            Change::Same => {}
        }
    }
}
