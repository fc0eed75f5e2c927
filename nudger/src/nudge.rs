//! What a change of a Secret's or ConfigMap's data does: annotate (merge-patch) each
//! running pod that mounts it as a volume with its resourceVersion, leave the pods that
//! have it already alone, report the pods it cannot help with their owner and the cure,
//! and with `--restart-unreloadable` restart their Deployment, StatefulSet or DaemonSet as
//! `kubectl rollout restart` does. One log line per action.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::json;

use crate::client::{ApiError, Client};
use crate::clock;
use crate::config::{Mode, Unreloadable};
use crate::metrics::{Metrics, NudgeResult};
use crate::objects::{ObjKind, Workload};
use crate::pods::{annotation_key, classify, owner_of, Owner, Verdict, VolumeUse};
use crate::store::Store;

/// Pods of one change patched at a time: measured against the fake API server (Python,
/// one lock), 8 pods took 8–9 ms one after the other and 6.5–7 ms four at a time; against
/// a real API server each patch is also an etcd write, which parallel patches overlap.
const PATCH_WORKERS: usize = 4;

/// The annotation `kubectl rollout restart` sets on the pod template.
const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// Acts on changes; shared by the Secret and ConfigMap informers.
pub(crate) struct Nudger {
    pub(crate) client: Client,
    pub(crate) store: Arc<Store>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) mode: Mode,
    pub(crate) unreloadable: Unreloadable,
    /// (namespace, ReplicaSet) → its Deployment, if it has one (a ReplicaSet's owner does
    /// not change).
    deployments: Mutex<HashMap<(String, String), Option<String>>>,
}

/// What a change means for the pods of its namespace.
#[derive(Default)]
struct Plan {
    /// (pod, its mounts as nudge.sh lists them).
    nudge: Vec<(String, String)>,
    up_to_date: Vec<String>,
    /// Pods it cannot help: (owner as the pod names it, pod, why).
    helpless: Vec<(crate::objects::PodInfo, Vec<String>)>,
    skipped: usize,
}

impl Nudger {
    pub(crate) fn new(
        client: Client,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        mode: Mode,
        unreloadable: Unreloadable,
    ) -> Nudger {
        Nudger {
            client,
            store,
            metrics,
            mode,
            unreloadable,
            deployments: Mutex::new(HashMap::new()),
        }
    }

    /// The data of `kind` `namespace/name` changed; its resourceVersion is now `rv`; `at`:
    /// when the event was read.
    pub(crate) fn on_change(
        &self,
        kind: ObjKind,
        namespace: &str,
        name: &str,
        rv: &str,
        at: Instant,
    ) {
        let key = annotation_key(kind, name);
        let plan = self.store.with_pods(namespace, |pods| {
            let mut plan = Plan::default();
            for pod in pods {
                match classify(pod, kind, name, &key, rv) {
                    Verdict::NotConsumer => {}
                    Verdict::Skipped(why) => {
                        log::debug!(target: "hello-path-nudger", "skipped pod/{} in namespace {namespace}: {why}", pod.name);
                        plan.skipped += 1;
                    }
                    Verdict::Consumer { volume, cannot } => {
                        match volume {
                            VolumeUse::Nudge(uses) => plan.nudge.push((pod.name.clone(), uses.join(", "))),
                            VolumeUse::UpToDate => plan.up_to_date.push(pod.name.clone()),
                            VolumeUse::None => {}
                        }
                        if !cannot.is_empty() {
                            plan.helpless.push((pod.clone(), cannot));
                        }
                    }
                }
            }
            plan
        });
        let what = format!("{} {namespace}/{name}", kind.title());
        if plan.nudge.is_empty()
            && plan.up_to_date.is_empty()
            && plan.helpless.is_empty()
            && plan.skipped == 0
        {
            log::debug!(target: "hello-path-nudger", "{what} changed (resourceVersion {rv}): no pod uses it");
            return;
        }
        let patched = self.patch_pods(kind, namespace, &key, rv, &plan.nudge);
        let elapsed = at.elapsed();
        if patched > 0 {
            self.metrics.event_to_patch(elapsed);
        }
        for pod in &plan.up_to_date {
            self.metrics.nudge(kind.label(), NudgeResult::Unchanged);
            log::debug!(target: "hello-path-nudger", "unchanged pod/{pod} in namespace {namespace}: already has {key}={rv}");
        }
        let helpless = plan.helpless.len();
        self.report_helpless(kind, namespace, name, &key, rv, plan.helpless);
        let mut said = vec![if self.mode == Mode::DryRun {
            format!("would nudge {} pod(s)", plan.nudge.len())
        } else {
            format!(
                "nudged {patched} pod(s) in {:.1} ms",
                elapsed.as_secs_f64() * 1000.0
            )
        }];
        if !plan.up_to_date.is_empty() {
            said.push(format!("{} already up to date", plan.up_to_date.len()));
        }
        if helpless > 0 {
            said.push(format!("{helpless} cannot be helped"));
        }
        if plan.skipped > 0 {
            said.push(format!("{} skipped", plan.skipped));
        }
        log::info!(target: "hello-path-nudger", "{what} changed (resourceVersion {rv}): {}", said.join(", "));
    }

    /// Annotates the pods, up to `PATCH_WORKERS` at a time (this thread and up to three
    /// more, each on a kept-alive connection of its own); then one line for each, in pod
    /// order. The number annotated.
    fn patch_pods(
        &self,
        kind: ObjKind,
        namespace: &str,
        key: &str,
        rv: &str,
        pods: &[(String, String)],
    ) -> usize {
        if self.mode == Mode::DryRun {
            for (pod, uses) in pods {
                log::info!(target: "hello-path-nudger", "would-nudge pod/{pod} in namespace {namespace}: {key}={rv} ({uses})");
            }
            return 0;
        }
        let body = json!({"metadata": {"annotations": {key: rv}}}).to_string();
        let next = AtomicUsize::new(0);
        let work = || {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((pod, _)) = pods.get(i) else {
                    return done;
                };
                let path = format!("/api/v1/namespaces/{namespace}/pods/{pod}");
                done.push((i, self.client.merge_patch(&path, &body)));
            }
        };
        let mut results: Vec<(usize, Result<(), ApiError>)> = std::thread::scope(|s| {
            // A thread that cannot be started (a pids limit) leaves its share to the others.
            let helpers: Vec<_> = (1..PATCH_WORKERS.min(pods.len()))
                .filter_map(|_| std::thread::Builder::new().spawn_scoped(s, work).ok())
                .collect();
            let mut all = work();
            for h in helpers {
                // A panic ends the process (main's hook): a helper always returns.
                all.extend(h.join().unwrap_or_default());
            }
            all
        });
        results.sort_by_key(|(i, _)| *i);
        let mut patched = 0;
        for (i, result) in results {
            let (pod, uses) = &pods[i];
            match result {
                Ok(()) => {
                    patched += 1;
                    self.metrics.nudge(kind.label(), NudgeResult::Patched);
                    log::info!(target: "hello-path-nudger", "nudged pod/{pod} in namespace {namespace}: {key}={rv} ({uses})");
                }
                Err(e) if e.code() == Some(404) => {
                    self.metrics.nudge(kind.label(), NudgeResult::Gone);
                    log::info!(target: "hello-path-nudger", "gone pod/{pod} in namespace {namespace}: deleted since it was listed");
                }
                Err(e) => {
                    self.metrics.api_error(e.code_label());
                    self.metrics.nudge(kind.label(), NudgeResult::Failed);
                    log::warn!(target: "hello-path-nudger", "cannot nudge pod/{pod}: {}", e.explain("patch", "pods", Some(pod), Some(namespace)));
                }
            }
        }
        patched
    }

    /// One line per owner of pods the change cannot reach, with the cure; a restart of
    /// the owner with `--restart-unreloadable`.
    fn report_helpless(
        &self,
        kind: ObjKind,
        namespace: &str,
        name: &str,
        key: &str,
        rv: &str,
        helpless: Vec<(crate::objects::PodInfo, Vec<String>)>,
    ) {
        if helpless.is_empty() {
            return;
        }
        self.metrics
            .cannot_help(kind.label(), helpless.len() as u64);
        let mut by_owner: BTreeMap<Owner, (Vec<String>, Vec<String>)> = BTreeMap::new();
        for (pod, why) in helpless {
            let owner = owner_of(&pod, |rs| self.deployment_of(namespace, rs));
            let entry = by_owner.entry(owner).or_default();
            entry.0.push(pod.name.clone());
            for w in why {
                if !entry.1.contains(&w) {
                    entry.1.push(w);
                }
            }
        }
        for (owner, (pods, why)) in by_owner {
            // `deployment/web (pods web-1, web-2)`; a pod without owner is named once.
            let who = match (&owner, pods.len()) {
                (Owner::Pod(_), _) => owner.display(),
                (_, 1) => format!("{} (pod {})", owner.display(), pods[0]),
                _ => format!("{} (pods {})", owner.display(), pods.join(", ")),
            };
            log::info!(
                target: "hello-path-nudger",
                "cannot-help {} {namespace}/{name} (resourceVersion {rv}): {who}: {}; cure: {}",
                kind.title(),
                why.join(", "),
                owner.cure(namespace)
            );
            if self.unreloadable == Unreloadable::Restart {
                if let Owner::Restartable {
                    kind: workload,
                    name: workload_name,
                } = &owner
                {
                    self.restart(namespace, workload, workload_name, kind, name, key, rv);
                }
            }
        }
    }

    /// The Deployment of a ReplicaSet: `Ok(None)` when it has none, `Err` when it cannot be
    /// read (gone, or refused: said once in the log).
    fn deployment_of(&self, namespace: &str, rs: &str) -> Result<Option<String>, ()> {
        let cache_key = (namespace.to_string(), rs.to_string());
        if let Some(d) = self
            .deployments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&cache_key)
        {
            return Ok(d.clone());
        }
        let path = format!("/apis/apps/v1/namespaces/{namespace}/replicasets/{rs}");
        match self.client.get::<Workload>(&path) {
            Ok(w) => {
                let d = w
                    .metadata
                    .owner_references
                    .iter()
                    .find(|o| o.controller && o.kind == "Deployment")
                    .map(|o| o.name.clone());
                self.deployments
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(cache_key, d.clone());
                Ok(d)
            }
            Err(e) => {
                self.metrics.api_error(e.code_label());
                if e.code() != Some(404) {
                    log::warn!(target: "hello-path-nudger", "cannot name the Deployment of replicaset/{rs}: {}", e.explain("get", "replicasets.apps", Some(rs), Some(namespace)));
                }
                Err(())
            }
        }
    }

    /// Restarts a workload as `kubectl rollout restart` does (the pod template's
    /// `restartedAt`), and records the object's resourceVersion beside it: a replica that
    /// finds it there does nothing, and the workload's own resourceVersion in the patch
    /// makes a concurrent restart fail with 409 (one replica wins).
    #[allow(clippy::too_many_arguments)]
    fn restart(
        &self,
        namespace: &str,
        workload: &str,
        name: &str,
        kind: ObjKind,
        obj: &str,
        key: &str,
        rv: &str,
    ) {
        let plural = match workload {
            "Deployment" => "deployments",
            "StatefulSet" => "statefulsets",
            _ => "daemonsets",
        };
        let target = format!(
            "{}/{name} in namespace {namespace}",
            workload.to_lowercase()
        );
        let path = format!("/apis/apps/v1/namespaces/{namespace}/{plural}/{name}");
        for attempt in 0..2 {
            let current: Workload = match self.client.get(&path) {
                Ok(w) => w,
                Err(e) => return self.restart_failed(workload, &e, "get", plural, name, namespace),
            };
            if current.template_annotation(key) == Some(rv) {
                self.metrics.restart(workload, "unchanged");
                log::info!(target: "hello-path-nudger", "unchanged {target}: already restarted for {key}={rv}");
                return;
            }
            if self.mode == Mode::DryRun {
                log::info!(target: "hello-path-nudger", "would restart {target}: its pods read {} {obj} through env, envFrom or subPath", kind.title());
                return;
            }
            let now = clock::rfc3339(clock::unix_now().as_secs() as i64);
            let body = json!({
                "metadata": {"resourceVersion": current.metadata.resource_version},
                "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now, key: rv}}}}
            })
            .to_string();
            match self.client.merge_patch(&path, &body) {
                Ok(()) => {
                    self.metrics.restart(workload, "restarted");
                    log::info!(
                        target: "hello-path-nudger",
                        "restarted {target} ({RESTARTED_AT}={now}, {key}={rv}): its pods read {} {obj} through env, envFrom or subPath",
                        kind.title()
                    );
                    return;
                }
                // Changed since it was read (another replica of the nudger, a scale): read
                // it again, once.
                Err(e) if e.code() == Some(409) && attempt == 0 => continue,
                Err(e) => {
                    return self.restart_failed(workload, &e, "patch", plural, name, namespace)
                }
            }
        }
    }

    fn restart_failed(
        &self,
        workload: &str,
        e: &ApiError,
        verb: &str,
        plural: &str,
        name: &str,
        namespace: &str,
    ) {
        self.metrics.api_error(e.code_label());
        self.metrics.restart(workload, "failed");
        log::warn!(
            target: "hello-path-nudger",
            "cannot restart {}/{name}: {}",
            workload.to_lowercase(),
            e.explain(verb, &format!("{plural}.apps"), Some(name), Some(namespace))
        );
    }
}
