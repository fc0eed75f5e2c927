//! Pod matching, exactly as `scripts/nudge.sh` decides it: which pods a change of a Secret
//! or ConfigMap concerns, which of them a nudge helps (a volume mount, direct or projected,
//! in any container), which it cannot (env, envFrom, subPath) and the cure for those, and
//! the annotation key. Pure functions; `tests` checks them against nudge.sh's own expected
//! output over the same recorded pods.

use crate::objects::{ContainerKind, ObjKind, PodInfo};

/// The most characters of an annotation key's name part.
const NAME_MAX: usize = 63;
/// Hex digits of the sha256 in a shortened name.
const HASH_LEN: usize = 10;

/// Our annotation key for an object: `secret.nudge.hello-path-rs/NAME`; a name longer than
/// 63 characters becomes its first 52, `-` and 10 hex digits of its sha256 (a valid name
/// part: it starts with the name's first character and ends with a hex digit).
pub(crate) fn annotation_key(kind: ObjKind, name: &str) -> String {
    if name.len() <= NAME_MAX {
        return format!("{}/{name}", kind.key_prefix());
    }
    let hash = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    let hex: String = hash.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    // Object names are ASCII (DNS subdomains), so byte and character counts agree.
    let head: String = name.chars().take(NAME_MAX - HASH_LEN - 1).collect();
    format!("{}/{head}-{}", kind.key_prefix(), &hex[..HASH_LEN])
}

/// What a change of an object means for one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The pod does not use the object.
    NotConsumer,
    /// It uses it but is left alone: not running, terminating, opted out, or it has the
    /// volume but no container mounts it. The reason, as nudge.sh says it.
    Skipped(String),
    /// A consumer: what a nudge does for it, and what it cannot do.
    Consumer {
        volume: VolumeUse,
        /// Uses a nudge cannot help (`env X in container c`, ...); empty when none.
        cannot: Vec<String>,
    },
}

/// What a nudge does for a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VolumeUse {
    /// No volume mount (env, envFrom or subPath only).
    None,
    /// Annotate it: the mounts, as nudge.sh lists them (`projected volume v in container c`).
    Nudge(Vec<String>),
    /// It already has the object's resourceVersion.
    UpToDate,
}

/// `container app`, `init container setup`, `ephemeral container debug`.
fn in_container(kind: ContainerKind, name: &str) -> String {
    match kind {
        ContainerKind::Init => format!("init container {name}"),
        ContainerKind::Ephemeral => format!("ephemeral container {name}"),
        ContainerKind::Regular => format!("container {name}"),
    }
}

/// What a change of `kind`/`name` to resourceVersion `rv` means for `pod` (`key`: our
/// annotation key for the object, see `annotation_key`).
pub(crate) fn classify(pod: &PodInfo, kind: ObjKind, name: &str, key: &str, rv: &str) -> Verdict {
    // The pod's volumes that hold the object (a projected volume may hold it twice).
    let volumes: Vec<&crate::objects::VolumeRef> = pod
        .volumes
        .iter()
        .filter(|v| v.kind == kind && v.name == name)
        .collect();
    let holds = |vol: &str| volumes.iter().any(|v| v.volume == vol);
    let mut mounted: Vec<&str> = Vec::new();
    let mut uses = Vec::new();
    let mut cannot = Vec::new();
    for c in &pod.containers {
        let where_ = in_container(c.kind, &c.name);
        for m in c.mounts.iter().filter(|m| holds(&m.volume)) {
            if m.sub_path {
                cannot.push(format!("subPath mount of volume {} in {where_}", m.volume));
            } else {
                mounted.push(&m.volume);
                let projected = volumes.iter().any(|v| v.volume == m.volume && v.projected);
                let projected = if projected { "projected " } else { "" };
                uses.push(format!("{projected}volume {} in {where_}", m.volume));
            }
        }
        for (k, obj, var) in &c.env {
            if *k == kind && obj == name {
                cannot.push(format!("env {var} in {where_}"));
            }
        }
        for (k, obj) in &c.env_from {
            if *k == kind && obj == name {
                cannot.push(format!("envFrom in {where_}"));
            }
        }
    }
    if volumes.is_empty() && cannot.is_empty() {
        return Verdict::NotConsumer;
    }
    if pod.ignored {
        return Verdict::Skipped(format!(
            "opted out ({}: \"true\")",
            crate::objects::IGNORE_ANNOTATION
        ));
    }
    if pod.terminating {
        return Verdict::Skipped("terminating".into());
    }
    match pod.phase.as_str() {
        "Running" => {}
        "Pending" => {
            return Verdict::Skipped(format!(
                "Pending, not started: it reads the {} as it is when it starts",
                kind.title()
            ))
        }
        other => return Verdict::Skipped(format!("{other}, not running")),
    }
    if uses.is_empty() && cannot.is_empty() {
        let unmounted: Vec<&str> = volumes
            .iter()
            .map(|v| v.volume.as_str())
            .filter(|v| !mounted.contains(v))
            .collect();
        return Verdict::Skipped(format!(
            "no container mounts volume {}, which holds the {}",
            unmounted.join(", "),
            kind.title()
        ));
    }
    let volume = if uses.is_empty() {
        VolumeUse::None
    } else if pod.nudge_value(key) == Some(rv) {
        VolumeUse::UpToDate
    } else {
        VolumeUse::Nudge(uses)
    };
    Verdict::Consumer { volume, cannot }
}

/// Who can replace a pod, for the cure of what a nudge cannot help.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Owner {
    /// No owner reference: the pod itself must be re-created.
    Pod(String),
    /// A Deployment, StatefulSet or DaemonSet: `kubectl rollout restart` (or
    /// `--restart-unreloadable`) replaces its pods.
    Restartable { kind: String, name: String },
    /// A ReplicaSet without a Deployment (`deployment_unreadable`: its Deployment, if any,
    /// could not be read).
    ReplicaSet { name: String, unreadable: bool },
    /// Anything else (a Job, a custom controller).
    Other { kind: String, name: String },
}

impl Owner {
    /// `deployment/web`, `pod/debug`, ...
    pub(crate) fn display(&self) -> String {
        match self {
            Owner::Pod(name) => format!("pod/{name}"),
            Owner::Restartable { kind, name } | Owner::Other { kind, name } => {
                format!("{}/{name}", kind.to_lowercase())
            }
            Owner::ReplicaSet { name, .. } => format!("replicaset/{name}"),
        }
    }

    /// The cure, as nudge.sh words it.
    pub(crate) fn cure(&self, namespace: &str) -> String {
        match self {
            Owner::Pod(name) => format!("delete and re-create pod/{name} (it has no owner)"),
            Owner::Restartable { kind, name } => {
                format!(
                    "kubectl rollout restart {}/{name} -n {namespace}",
                    kind.to_lowercase()
                )
            }
            Owner::ReplicaSet { name, unreadable } => {
                let how = if *unreadable {
                    "its Deployment, if any, could not be read"
                } else {
                    "it belongs to no Deployment"
                };
                format!(
                    "re-create the pods of replicaset/{name} one at a time ({how}; kubectl rollout restart takes no ReplicaSet)"
                )
            }
            Owner::Other { kind, name } => {
                format!("restart its owner {}/{name}", kind.to_lowercase())
            }
        }
    }
}

/// The owner of a pod from its owner reference (the controller, else the first), with a
/// ReplicaSet's Deployment looked up by `deployment_of` (`Ok(None)`: it has none; `Err`:
/// it could not be read).
pub(crate) fn owner_of(
    pod: &PodInfo,
    deployment_of: impl FnOnce(&str) -> Result<Option<String>, ()>,
) -> Owner {
    match &pod.owner {
        None => Owner::Pod(pod.name.clone()),
        Some((kind, name)) => match kind.as_str() {
            "Deployment" | "StatefulSet" | "DaemonSet" => Owner::Restartable {
                kind: kind.clone(),
                name: name.clone(),
            },
            "ReplicaSet" => match deployment_of(name) {
                Ok(Some(d)) => Owner::Restartable {
                    kind: "Deployment".into(),
                    name: d,
                },
                Ok(None) => Owner::ReplicaSet {
                    name: name.clone(),
                    unreadable: false,
                },
                Err(()) => Owner::ReplicaSet {
                    name: name.clone(),
                    unreadable: true,
                },
            },
            _ => Owner::Other {
                kind: kind.clone(),
                name: name.clone(),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::{List, PodJson, Workload};
    use std::collections::BTreeMap;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../tests/fixtures/nudge/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The pods of `pods.json` in namespace `ns`, in the order the API lists them (by name).
    fn pods(ns: &str) -> Vec<PodInfo> {
        let list: List<PodJson> = serde_json::from_str(&fixture("pods.json")).unwrap();
        let mut pods: Vec<PodInfo> = list
            .items
            .into_iter()
            .map(PodInfo::from)
            .filter(|p| p.namespace == ns)
            .collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        pods
    }

    /// nudge.sh's report for a change of `secret` in `ns` (its resourceVersion `rv`), from
    /// `classify` and `owner_of` over the recorded pods and ReplicaSets: the same lines,
    /// in the same order, as the script prints (a ReplicaSet missing from the recording
    /// answers 404, so its Deployment "could not be read", as with the script).
    fn nudge_sh_report(ns: &str, secret: &str, rv: &str) -> String {
        let replicasets: List<Workload> =
            serde_json::from_str(&fixture("replicasets.json")).unwrap();
        let rs: BTreeMap<String, Option<String>> = replicasets
            .items
            .iter()
            .filter(|r| r.metadata.namespace == ns)
            .map(|r| {
                let deployment = r
                    .metadata
                    .owner_references
                    .iter()
                    .find(|o| o.controller && o.kind == "Deployment")
                    .map(|o| o.name.clone());
                (r.metadata.name.clone(), deployment)
            })
            .collect();
        let key = annotation_key(ObjKind::Secret, secret);
        let (mut nudged, mut unchanged, mut helpless, mut skipped) =
            (vec![], vec![], vec![], vec![]);
        for pod in pods(ns) {
            match classify(&pod, ObjKind::Secret, secret, &key, rv) {
                Verdict::NotConsumer => {}
                Verdict::Skipped(why) => skipped.push(format!("skipped pod/{}: {why}", pod.name)),
                Verdict::Consumer { volume, cannot } => {
                    match volume {
                        VolumeUse::Nudge(uses) => nudged.push(format!(
                            "nudged pod/{} {key}={rv} ({})",
                            pod.name,
                            uses.join(", ")
                        )),
                        VolumeUse::UpToDate => unchanged.push(format!(
                            "unchanged pod/{}: already has {key}={rv}",
                            pod.name
                        )),
                        VolumeUse::None => {}
                    }
                    if !cannot.is_empty() {
                        let owner = owner_of(&pod, |r| rs.get(r).cloned().ok_or(()));
                        helpless.push(format!(
                            "cannot-help pod/{}: {}; cure: {}",
                            pod.name,
                            cannot.join(", "),
                            owner.cure(ns)
                        ));
                    }
                }
            }
        }
        let mut said = vec![format!(
            "nudged {} pod(s): the kubelet rewrites their copies of Secret {secret} now",
            nudged.len()
        )];
        if !unchanged.is_empty() {
            said.push(format!("{} already up to date", unchanged.len()));
        }
        if !helpless.is_empty() {
            said.push(format!(
                "{} pod(s) keep the old value until restarted (cannot-help above)",
                helpless.len()
            ));
        }
        let summary = format!(
            "NUDGE secret={secret} nudged={} unchanged={} cannot_help={} skipped={} namespace={ns} resource_version={rv} dry_run=false",
            nudged.len(),
            unchanged.len(),
            helpless.len(),
            skipped.len()
        );
        let mut lines = nudged;
        lines.extend(unchanged);
        lines.extend(helpless);
        lines.extend(skipped);
        lines.push(said.join("; "));
        lines.push(summary);
        lines.join("\n") + "\n"
    }

    #[test]
    fn agrees_with_nudge_sh_on_the_recorded_pods() {
        // tests/nudge.sh runs scripts/nudge.sh over the same pods and expects shop.out.
        let want = fixture("shop.out");
        let got = nudge_sh_report("shop", "app-secret", "48213");
        if got != want {
            let diff: Vec<String> = want
                .lines()
                .zip(got.lines())
                .filter(|(w, g)| w != g)
                .map(|(w, g)| format!("-{w}\n+{g}"))
                .collect();
            panic!(
                "differs from tests/fixtures/nudge/shop.out:\n{}\n--- got:\n{got}",
                diff.join("\n")
            );
        }
    }

    #[test]
    fn other_secret_in_the_recording() {
        let report = nudge_sh_report("shop", "other-secret", "48100");
        assert!(report.contains(
            "nudged pod/other-7c9d8f6b5-z9x8w secret.nudge.hello-path-rs/other-secret=48100"
        ));
        assert!(report.contains("cannot-help pod/billing-7f9c8d6b5-q4w8z: env OTHER_TOKEN in container billing; cure: kubectl rollout restart deployment/billing -n shop"));
    }

    #[test]
    fn keys_are_shortened_as_nudge_sh_does() {
        let long = "payment-gateway-credentials-for-the-checkout-service-eu-west-1.production";
        let exact = "checkout-credentials-for-the-eu-west-1-payment-gateway-prod-v20";
        assert_eq!(exact.len(), 63);
        assert_eq!(
            annotation_key(ObjKind::Secret, exact),
            format!("secret.nudge.hello-path-rs/{exact}")
        );
        let key = annotation_key(ObjKind::Secret, long);
        // sha256("payment-gateway-...production"), as `sha256sum | cut -c 1-10` prints it.
        let hash = ring::digest::digest(&ring::digest::SHA256, long.as_bytes());
        let hex: String = hash
            .as_ref()
            .iter()
            .take(5)
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            key,
            format!("secret.nudge.hello-path-rs/{}-{hex}", &long[..52])
        );
        assert_eq!(key.split('/').nth(1).unwrap().len(), 63);
        assert!(
            annotation_key(ObjKind::ConfigMap, "app").starts_with("configmap.nudge.hello-path-rs/")
        );
    }

    fn pod(json: &str) -> PodInfo {
        PodInfo::from(serde_json::from_str::<PodJson>(json).unwrap())
    }

    #[test]
    fn configmaps_and_opt_out() {
        let p = pod(
            r#"{"metadata":{"name":"p","namespace":"n"},"status":{"phase":"Running"},
               "spec":{"volumes":[{"name":"cfg","configMap":{"name":"app-config"}}],
                       "containers":[{"name":"app","volumeMounts":[{"name":"cfg"}],"envFrom":[{"configMapRef":{"name":"app-config"}}]}]}}"#,
        );
        let key = annotation_key(ObjKind::ConfigMap, "app-config");
        assert_eq!(
            classify(&p, ObjKind::ConfigMap, "app-config", &key, "5"),
            Verdict::Consumer {
                volume: VolumeUse::Nudge(vec!["volume cfg in container app".into()]),
                cannot: vec!["envFrom in container app".into()]
            }
        );
        assert_eq!(
            classify(&p, ObjKind::Secret, "app-config", "k", "5"),
            Verdict::NotConsumer
        );
        let mut ignored = p.clone();
        ignored.ignored = true;
        assert_eq!(
            classify(&ignored, ObjKind::ConfigMap, "app-config", &key, "5"),
            Verdict::Skipped("opted out (nudge.hello-path-rs/ignore: \"true\")".into())
        );
        let mut pending = p;
        pending.phase = "Pending".into();
        assert_eq!(
            classify(&pending, ObjKind::ConfigMap, "app-config", &key, "5"),
            Verdict::Skipped(
                "Pending, not started: it reads the ConfigMap as it is when it starts".into()
            )
        );
    }

    #[test]
    fn sub_path_expr_is_a_sub_path() {
        let p = pod(r#"{"metadata":{"name":"p"},"status":{"phase":"Running"},
               "spec":{"volumes":[{"name":"s","secret":{"secretName":"x"}}],
                       "initContainers":[{"name":"i","volumeMounts":[{"name":"s","subPathExpr":"$(POD)"}]}]}}"#);
        assert_eq!(
            classify(&p, ObjKind::Secret, "x", "k", "1"),
            Verdict::Consumer {
                volume: VolumeUse::None,
                cannot: vec!["subPath mount of volume s in init container i".into()]
            }
        );
    }

    #[test]
    fn cures() {
        let ns = "shop";
        assert_eq!(
            Owner::Restartable {
                kind: "StatefulSet".into(),
                name: "db".into()
            }
            .cure(ns),
            "kubectl rollout restart statefulset/db -n shop"
        );
        assert_eq!(
            Owner::Other {
                kind: "Job".into(),
                name: "j".into()
            }
            .cure(ns),
            "restart its owner job/j"
        );
        assert_eq!(Owner::Pod("p".into()).display(), "pod/p");
    }
}
