//! The informers' caches: pods (reduced to their references) by namespace and name, and
//! the digest and resourceVersion of every Secret and ConfigMap, from which a change of
//! data is told apart from a change of metadata alone. One lock; a condition variable for
//! the handlers that wait for the pods of a namespace to be listed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::objects::{Digest, ObjKind, PodInfo};

/// What an informer watches: one namespace, or all of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    Namespace(String),
    All,
}

impl Scope {
    /// Whether `namespace` is in the scope.
    fn covers(&self, namespace: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Namespace(ns) => ns == namespace,
        }
    }

    /// `in namespace shop`, `in all namespaces`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Scope::All => "in all namespaces".into(),
            Scope::Namespace(ns) => format!("in namespace {ns}"),
        }
    }
}

/// What an event or a list says about one Secret or ConfigMap, against the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Its data changed, or it is new since the first list: nudge.
    Data,
    /// Metadata only (labels, annotations, a no-op update): nothing to do.
    Metadata,
    /// Known already with this resourceVersion (a watch replaying it).
    Same,
}

/// The object `(kind, namespace, name)` of an event.
pub(crate) type ObjectKey = (ObjKind, String, String);

#[derive(Default)]
struct Inner {
    pods: BTreeMap<String, BTreeMap<String, PodInfo>>,
    pods_listed: HashSet<Scope>,
    objects: HashMap<ObjectKey, (Digest, String)>,
    objects_listed: HashSet<(ObjKind, Scope)>,
}

/// The caches, shared by every thread.
#[derive(Default)]
pub(crate) struct Store {
    inner: Mutex<Inner>,
    pods_listed: Condvar,
}

impl Store {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic ends the process (main's hook), so a poisoned lock is never seen.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A complete list of pods in `scope`: replaces the cache there; wakes the waiters.
    pub(crate) fn replace_pods(&self, scope: &Scope, pods: Vec<PodInfo>) -> usize {
        let mut inner = self.lock();
        inner.pods.retain(|ns, _| !scope.covers(ns));
        for pod in pods {
            inner
                .pods
                .entry(pod.namespace.clone())
                .or_default()
                .insert(pod.name.clone(), pod);
        }
        inner.pods_listed.insert(scope.clone());
        let count = inner.pods.values().map(BTreeMap::len).sum();
        drop(inner);
        self.pods_listed.notify_all();
        count
    }

    /// A pod added or modified.
    pub(crate) fn put_pod(&self, pod: PodInfo) -> usize {
        let mut inner = self.lock();
        inner
            .pods
            .entry(pod.namespace.clone())
            .or_default()
            .insert(pod.name.clone(), pod);
        inner.pods.values().map(BTreeMap::len).sum()
    }

    /// A pod deleted.
    pub(crate) fn delete_pod(&self, namespace: &str, name: &str) -> usize {
        let mut inner = self.lock();
        if let Some(pods) = inner.pods.get_mut(namespace) {
            pods.remove(name);
            if pods.is_empty() {
                inner.pods.remove(namespace);
            }
        }
        inner.pods.values().map(BTreeMap::len).sum()
    }

    /// Blocks until the pods of `namespace` have been listed once (no timeout: nothing can
    /// be nudged before, and the pods' informer says on /readyz why it cannot list).
    /// Then calls `f` with them, in name order, under the lock.
    pub(crate) fn with_pods<R>(
        &self,
        namespace: &str,
        f: impl FnOnce(&mut dyn Iterator<Item = &PodInfo>) -> R,
    ) -> R {
        let mut inner = self.lock();
        while !inner.pods_listed.iter().any(|s| s.covers(namespace)) {
            inner = self
                .pods_listed
                .wait(inner)
                .unwrap_or_else(|p| p.into_inner());
        }
        let mut pods = inner
            .pods
            .get(namespace)
            .into_iter()
            .flat_map(BTreeMap::values);
        f(&mut pods)
    }

    /// A complete list of `kind` in `scope`: replaces the cache there and returns the
    /// objects whose data changed (or that are new) since the previous list or events;
    /// none on the first list.
    pub(crate) fn replace_objects(
        &self,
        kind: ObjKind,
        scope: &Scope,
        objects: Vec<(String, String, Digest, String)>,
    ) -> (Vec<(String, String, String)>, usize) {
        let mut inner = self.lock();
        let first = inner.objects_listed.insert((kind, scope.clone()));
        let mut old: HashMap<ObjectKey, (Digest, String)> = HashMap::new();
        let keys: Vec<ObjectKey> = inner
            .objects
            .keys()
            .filter(|(k, ns, _)| *k == kind && scope.covers(ns))
            .cloned()
            .collect();
        for key in keys {
            if let Some(v) = inner.objects.remove(&key) {
                old.insert(key, v);
            }
        }
        let mut changed = Vec::new();
        for (ns, name, digest, rv) in objects {
            let key = (kind, ns, name);
            if !first && old.get(&key).is_none_or(|(d, _)| *d != digest) {
                changed.push((key.1.clone(), key.2.clone(), rv.clone()));
            }
            inner.objects.insert(key, (digest, rv));
        }
        let count = inner.objects.keys().filter(|(k, _, _)| *k == kind).count();
        (changed, count)
    }

    /// An object added or modified by a watch event (after a list): what changed.
    pub(crate) fn put_object(&self, key: ObjectKey, digest: Digest, rv: &str) -> (Change, usize) {
        let mut inner = self.lock();
        let kind = key.0;
        let change = match inner.objects.get(&key) {
            None => Change::Data,
            Some((_, old_rv)) if old_rv == rv => Change::Same,
            Some((d, _)) if *d == digest => Change::Metadata,
            Some(_) => Change::Data,
        };
        inner.objects.insert(key, (digest, rv.to_string()));
        let count = inner.objects.keys().filter(|(k, _, _)| *k == kind).count();
        (change, count)
    }

    /// An object deleted.
    pub(crate) fn delete_object(&self, key: &ObjectKey) -> usize {
        let mut inner = self.lock();
        inner.objects.remove(key);
        inner.objects.keys().filter(|(k, _, _)| *k == key.0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, name: &str) -> PodInfo {
        PodInfo {
            namespace: ns.into(),
            name: name.into(),
            resource_version: "1".into(),
            phase: "Running".into(),
            terminating: false,
            ignored: false,
            nudges: vec![],
            owner: None,
            volumes: vec![],
            containers: vec![],
        }
    }

    #[test]
    fn data_changes_are_told_from_metadata_changes() {
        let s = Store::default();
        let shop = Scope::Namespace("shop".into());
        let (changed, n) = s.replace_objects(
            ObjKind::Secret,
            &shop,
            vec![("shop".into(), "a".into(), [1; 32], "10".into())],
        );
        assert!(changed.is_empty(), "nothing on the first list");
        assert_eq!(n, 1);
        let key = (ObjKind::Secret, "shop".to_string(), "a".to_string());
        assert_eq!(s.put_object(key.clone(), [1; 32], "10").0, Change::Same);
        assert_eq!(s.put_object(key.clone(), [1; 32], "11").0, Change::Metadata);
        assert_eq!(s.put_object(key.clone(), [2; 32], "12").0, Change::Data);
        let new = (ObjKind::Secret, "shop".to_string(), "b".to_string());
        assert_eq!(
            s.put_object(new, [3; 32], "13").0,
            Change::Data,
            "added after the list"
        );
        // A relist: a changed, b unchanged, c new; ConfigMaps are apart.
        let (changed, n) = s.replace_objects(
            ObjKind::Secret,
            &shop,
            vec![
                ("shop".into(), "a".into(), [4; 32], "14".into()),
                ("shop".into(), "b".into(), [3; 32], "13".into()),
                ("shop".into(), "c".into(), [5; 32], "15".into()),
            ],
        );
        assert_eq!(
            changed,
            vec![
                ("shop".into(), "a".into(), "14".into()),
                ("shop".into(), "c".into(), "15".into())
            ]
        );
        assert_eq!(n, 3);
        assert_eq!(s.delete_object(&key), 2);
        let (changed, _) = s.replace_objects(ObjKind::ConfigMap, &shop, vec![]);
        assert!(changed.is_empty());
    }

    #[test]
    fn pods_by_scope_in_name_order() {
        let s = Store::default();
        s.replace_pods(
            &Scope::All,
            vec![pod("b", "2"), pod("a", "1"), pod("b", "1")],
        );
        let names = s.with_pods("b", |pods| pods.map(|p| p.name.clone()).collect::<Vec<_>>());
        assert_eq!(names, ["1", "2"]);
        assert_eq!(s.put_pod(pod("c", "9")), 4);
        assert_eq!(s.delete_pod("b", "1"), 3);
        assert_eq!(s.replace_pods(&Scope::Namespace("b".into()), vec![]), 2);
        assert_eq!(s.with_pods("b", |pods| pods.count()), 0);
    }

    #[test]
    fn waits_for_the_pods_of_a_namespace() {
        let s = std::sync::Arc::new(Store::default());
        let waiter = {
            let s = s.clone();
            std::thread::spawn(move || s.with_pods("shop", |pods| pods.count()))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !waiter.is_finished(),
            "returned before the pods were listed"
        );
        s.replace_pods(&Scope::Namespace("other".into()), vec![pod("other", "x")]);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !waiter.is_finished(),
            "another namespace's list is not enough"
        );
        s.replace_pods(&Scope::Namespace("shop".into()), vec![pod("shop", "x")]);
        assert_eq!(waiter.join().unwrap(), 1);
    }
}
