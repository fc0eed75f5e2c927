//! The API objects as the nudger keeps them: decoded from JSON as they stream in, and
//! reduced at once to what it needs. A Secret or ConfigMap becomes its metadata and a
//! digest of its data (its values are never kept); a Pod becomes the references it makes
//! to Secrets and ConfigMaps (volumes, mounts, env, envFrom) and our annotations.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// Our annotation on a pod that opts it out.
pub(crate) const IGNORE_ANNOTATION: &str = "nudge.hello-path-rs/ignore";

/// The two kinds of object whose changes are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum ObjKind {
    Secret,
    ConfigMap,
}

impl ObjKind {
    /// The API resource: `secrets`, `configmaps`.
    pub(crate) fn plural(self) -> &'static str {
        match self {
            ObjKind::Secret => "secrets",
            ObjKind::ConfigMap => "configmaps",
        }
    }

    /// The kind as written in messages: `Secret`, `ConfigMap`.
    pub(crate) fn title(self) -> &'static str {
        match self {
            ObjKind::Secret => "Secret",
            ObjKind::ConfigMap => "ConfigMap",
        }
    }

    /// The metric label: `secret`, `configmap`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            ObjKind::Secret => "secret",
            ObjKind::ConfigMap => "configmap",
        }
    }

    /// The prefix of our annotation keys: `secret.nudge.hello-path-rs`.
    pub(crate) fn key_prefix(self) -> &'static str {
        match self {
            ObjKind::Secret => "secret.nudge.hello-path-rs",
            ObjKind::ConfigMap => "configmap.nudge.hello-path-rs",
        }
    }
}

/// `null` or absent as the type's default (the API omits empty fields, but a `null` is
/// valid JSON for any of them).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An owner reference.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub(crate) struct OwnerRef {
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) kind: String,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) controller: bool,
}

/// The metadata the nudger reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Meta {
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) namespace: String,
    #[serde(default, rename = "resourceVersion", deserialize_with = "nullable")]
    pub(crate) resource_version: String,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) annotations: BTreeMap<String, String>,
    #[serde(default, rename = "deletionTimestamp")]
    pub(crate) deletion_timestamp: Option<String>,
    #[serde(default, rename = "ownerReferences", deserialize_with = "nullable")]
    pub(crate) owner_references: Vec<OwnerRef>,
}

impl Meta {
    /// The controller among the owners, else the first owner (as nudge.sh reads them).
    pub(crate) fn owner(&self) -> Option<&OwnerRef> {
        self.owner_references
            .iter()
            .find(|o| o.controller)
            .or_else(|| self.owner_references.first())
    }
}

/// A list's metadata: the resourceVersion to watch from, and the next page's token.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ListMeta {
    #[serde(default, rename = "resourceVersion", deserialize_with = "nullable")]
    pub(crate) resource_version: String,
    #[serde(default, rename = "continue", deserialize_with = "nullable")]
    pub(crate) continue_token: String,
}

/// A page of a list.
#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub(crate) struct List<T> {
    #[serde(default)]
    pub(crate) metadata: ListMeta,
    #[serde(default = "Vec::new", deserialize_with = "nullable_vec")]
    pub(crate) items: Vec<T>,
}

fn nullable_vec<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// The SHA-256 of an object's data, to tell a change of data from a change of metadata.
pub(crate) type Digest = [u8; 32];

/// A Secret or a ConfigMap: its metadata and the digest of its data; the values are
/// dropped as soon as they are hashed.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "DataObjectJson")]
pub(crate) struct DataObject {
    pub(crate) meta: Meta,
    pub(crate) digest: Digest,
}

#[derive(Deserialize)]
struct DataObjectJson {
    #[serde(default)]
    metadata: Meta,
    #[serde(default, deserialize_with = "nullable")]
    data: BTreeMap<String, String>,
    #[serde(default, rename = "binaryData", deserialize_with = "nullable")]
    binary_data: BTreeMap<String, String>,
}

impl From<DataObjectJson> for DataObject {
    fn from(o: DataObjectJson) -> DataObject {
        DataObject {
            digest: digest(&o.data, &o.binary_data),
            meta: o.metadata,
        }
    }
}

/// The digest of `data` and `binaryData`: every key and value, length-prefixed, in key
/// order, so that no two different contents hash alike by framing.
pub(crate) fn digest(data: &BTreeMap<String, String>, binary: &BTreeMap<String, String>) -> Digest {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for (tag, map) in [(b'd', data), (b'b', binary)] {
        ctx.update(&[tag]);
        ctx.update(&(map.len() as u64).to_le_bytes());
        for (k, v) in map {
            ctx.update(&(k.len() as u64).to_le_bytes());
            ctx.update(k.as_bytes());
            ctx.update(&(v.len() as u64).to_le_bytes());
            ctx.update(v.as_bytes());
        }
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Where in a pod a container runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContainerKind {
    Init,
    Regular,
    Ephemeral,
}

/// A volume of a pod that holds a Secret or ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VolumeRef {
    pub(crate) volume: String,
    pub(crate) kind: ObjKind,
    pub(crate) name: String,
    /// Through a projected volume (`projected.sources[]`).
    pub(crate) projected: bool,
}

/// A mount of one of those volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountRef {
    pub(crate) volume: String,
    /// `subPath` or `subPathExpr`: a copy the kubelet never updates.
    pub(crate) sub_path: bool,
}

/// What one container reads from Secrets and ConfigMaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerRefs {
    pub(crate) kind: ContainerKind,
    pub(crate) name: String,
    pub(crate) mounts: Vec<MountRef>,
    /// `env[].valueFrom.secretKeyRef`/`configMapKeyRef`: (kind, object, variable).
    pub(crate) env: Vec<(ObjKind, String, String)>,
    /// `envFrom[].secretRef`/`configMapRef`: (kind, object).
    pub(crate) env_from: Vec<(ObjKind, String)>,
}

/// A pod as the nudger keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodInfo {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) resource_version: String,
    /// `status.phase`, `Unknown` when absent.
    pub(crate) phase: String,
    /// It has a deletionTimestamp.
    pub(crate) terminating: bool,
    /// `nudge.hello-path-rs/ignore: "true"`.
    pub(crate) ignored: bool,
    /// Our annotations (`secret.nudge...`, `configmap.nudge...`) and their values.
    pub(crate) nudges: Vec<(String, String)>,
    /// The controller, else the first owner: (kind, name).
    pub(crate) owner: Option<(String, String)>,
    pub(crate) volumes: Vec<VolumeRef>,
    /// Only containers that read a Secret or ConfigMap, in the pod's order: init
    /// containers, containers, ephemeral containers.
    pub(crate) containers: Vec<ContainerRefs>,
}

impl PodInfo {
    /// The value of our annotation `key`, if set.
    pub(crate) fn nudge_value(&self, key: &str) -> Option<&str> {
        self.nudges
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default, Deserialize)]
struct NameRef {
    #[serde(default, deserialize_with = "nullable")]
    name: String,
}

#[derive(Debug, Default, Deserialize)]
struct SecretVolumeJson {
    #[serde(default, rename = "secretName", deserialize_with = "nullable")]
    secret_name: String,
}

#[derive(Debug, Default, Deserialize)]
struct ProjectionJson {
    secret: Option<NameRef>,
    #[serde(rename = "configMap")]
    config_map: Option<NameRef>,
}

#[derive(Debug, Default, Deserialize)]
struct ProjectedJson {
    #[serde(default, deserialize_with = "nullable")]
    sources: Vec<ProjectionJson>,
}

#[derive(Debug, Default, Deserialize)]
struct VolumeJson {
    #[serde(default, deserialize_with = "nullable")]
    name: String,
    secret: Option<SecretVolumeJson>,
    #[serde(rename = "configMap")]
    config_map: Option<NameRef>,
    projected: Option<ProjectedJson>,
}

#[derive(Debug, Default, Deserialize)]
struct MountJson {
    #[serde(default, deserialize_with = "nullable")]
    name: String,
    #[serde(default, rename = "subPath", deserialize_with = "nullable")]
    sub_path: String,
    #[serde(default, rename = "subPathExpr", deserialize_with = "nullable")]
    sub_path_expr: String,
}

#[derive(Debug, Default, Deserialize)]
struct EnvSourceJson {
    #[serde(rename = "secretKeyRef")]
    secret_key_ref: Option<NameRef>,
    #[serde(rename = "configMapKeyRef")]
    config_map_key_ref: Option<NameRef>,
}

#[derive(Debug, Default, Deserialize)]
struct EnvJson {
    #[serde(default, deserialize_with = "nullable")]
    name: String,
    #[serde(rename = "valueFrom")]
    value_from: Option<EnvSourceJson>,
}

#[derive(Debug, Default, Deserialize)]
struct EnvFromJson {
    #[serde(rename = "secretRef")]
    secret_ref: Option<NameRef>,
    #[serde(rename = "configMapRef")]
    config_map_ref: Option<NameRef>,
}

#[derive(Debug, Default, Deserialize)]
struct ContainerJson {
    #[serde(default, deserialize_with = "nullable")]
    name: String,
    #[serde(default, rename = "volumeMounts", deserialize_with = "nullable")]
    volume_mounts: Vec<MountJson>,
    #[serde(default, deserialize_with = "nullable")]
    env: Vec<EnvJson>,
    #[serde(default, rename = "envFrom", deserialize_with = "nullable")]
    env_from: Vec<EnvFromJson>,
}

#[derive(Debug, Default, Deserialize)]
struct PodSpecJson {
    #[serde(default, deserialize_with = "nullable")]
    volumes: Vec<VolumeJson>,
    #[serde(default, rename = "initContainers", deserialize_with = "nullable")]
    init_containers: Vec<ContainerJson>,
    #[serde(default, deserialize_with = "nullable")]
    containers: Vec<ContainerJson>,
    #[serde(default, rename = "ephemeralContainers", deserialize_with = "nullable")]
    ephemeral_containers: Vec<ContainerJson>,
}

#[derive(Debug, Default, Deserialize)]
struct PodStatusJson {
    #[serde(default, deserialize_with = "nullable")]
    phase: String,
}

/// A pod as decoded, before it is reduced to a `PodInfo`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PodJson {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: PodSpecJson,
    #[serde(default)]
    status: PodStatusJson,
}

/// `Some(name)` for a reference with a name (an empty or absent one names nothing).
fn named(r: &Option<NameRef>) -> Option<&str> {
    r.as_ref()
        .map(|r| r.name.as_str())
        .filter(|n| !n.is_empty())
}

impl From<PodJson> for PodInfo {
    fn from(p: PodJson) -> PodInfo {
        let mut volumes = Vec::new();
        for v in &p.spec.volumes {
            if let Some(s) = &v.secret {
                if !s.secret_name.is_empty() {
                    volumes.push(VolumeRef {
                        volume: v.name.clone(),
                        kind: ObjKind::Secret,
                        name: s.secret_name.clone(),
                        projected: false,
                    });
                }
            }
            if let Some(name) = named(&v.config_map) {
                volumes.push(VolumeRef {
                    volume: v.name.clone(),
                    kind: ObjKind::ConfigMap,
                    name: name.to_string(),
                    projected: false,
                });
            }
            if let Some(projected) = &v.projected {
                for source in &projected.sources {
                    for (kind, r) in [
                        (ObjKind::Secret, &source.secret),
                        (ObjKind::ConfigMap, &source.config_map),
                    ] {
                        if let Some(name) = named(r) {
                            volumes.push(VolumeRef {
                                volume: v.name.clone(),
                                kind,
                                name: name.to_string(),
                                projected: true,
                            });
                        }
                    }
                }
            }
        }
        let mut containers = Vec::new();
        for (kind, list) in [
            (ContainerKind::Init, &p.spec.init_containers),
            (ContainerKind::Regular, &p.spec.containers),
            (ContainerKind::Ephemeral, &p.spec.ephemeral_containers),
        ] {
            for c in list {
                let mounts: Vec<MountRef> = c
                    .volume_mounts
                    .iter()
                    .filter(|m| volumes.iter().any(|v| v.volume == m.name))
                    .map(|m| MountRef {
                        volume: m.name.clone(),
                        sub_path: !m.sub_path.is_empty() || !m.sub_path_expr.is_empty(),
                    })
                    .collect();
                let mut env = Vec::new();
                for e in &c.env {
                    if let Some(from) = &e.value_from {
                        if let Some(n) = named(&from.secret_key_ref) {
                            env.push((ObjKind::Secret, n.to_string(), e.name.clone()));
                        }
                        if let Some(n) = named(&from.config_map_key_ref) {
                            env.push((ObjKind::ConfigMap, n.to_string(), e.name.clone()));
                        }
                    }
                }
                let mut env_from = Vec::new();
                for e in &c.env_from {
                    if let Some(n) = named(&e.secret_ref) {
                        env_from.push((ObjKind::Secret, n.to_string()));
                    }
                    if let Some(n) = named(&e.config_map_ref) {
                        env_from.push((ObjKind::ConfigMap, n.to_string()));
                    }
                }
                if !mounts.is_empty() || !env.is_empty() || !env_from.is_empty() {
                    containers.push(ContainerRefs {
                        kind,
                        name: c.name.clone(),
                        mounts,
                        env,
                        env_from,
                    });
                }
            }
        }
        let meta = p.metadata;
        let owner = meta.owner().map(|o| (o.kind.clone(), o.name.clone()));
        let ignored = meta
            .annotations
            .get(IGNORE_ANNOTATION)
            .is_some_and(|v| v == "true");
        let nudges = meta
            .annotations
            .into_iter()
            .filter(|(k, _)| {
                k.starts_with("secret.nudge.hello-path-rs/")
                    || k.starts_with("configmap.nudge.hello-path-rs/")
            })
            .collect();
        PodInfo {
            namespace: meta.namespace,
            name: meta.name,
            resource_version: meta.resource_version,
            phase: if p.status.phase.is_empty() {
                "Unknown".into()
            } else {
                p.status.phase
            },
            terminating: meta.deletion_timestamp.is_some_and(|t| !t.is_empty()),
            ignored,
            nudges,
            owner,
            volumes,
            containers,
        }
    }
}

/// A ReplicaSet, Deployment, StatefulSet or DaemonSet: its metadata, and the annotations
/// of its pod template (for `--restart-unreloadable`).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Workload {
    #[serde(default)]
    pub(crate) metadata: Meta,
    #[serde(default)]
    spec: WorkloadSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct WorkloadSpec {
    #[serde(default)]
    template: WorkloadTemplate,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct WorkloadTemplate {
    #[serde(default)]
    metadata: Meta,
}

impl Workload {
    /// An annotation of the pod template.
    pub(crate) fn template_annotation(&self, key: &str) -> Option<&str> {
        self.spec
            .template
            .metadata
            .annotations
            .get(key)
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_tells_data_apart_and_ignores_metadata() {
        let a: DataObject = serde_json::from_str(
            r#"{"metadata":{"name":"s","resourceVersion":"1","labels":{"a":"b"}},"data":{"k":"dg=="}}"#,
        )
        .unwrap();
        let b: DataObject = serde_json::from_str(
            r#"{"metadata":{"name":"s","resourceVersion":"2","annotations":{"x":"y"}},"data":{"k":"dg=="}}"#,
        )
        .unwrap();
        let c: DataObject =
            serde_json::from_str(r#"{"metadata":{"name":"s"},"data":{"k":"dw=="}}"#).unwrap();
        let d: DataObject =
            serde_json::from_str(r#"{"metadata":{"name":"s"},"binaryData":{"k":"dg=="}}"#).unwrap();
        let e: DataObject =
            serde_json::from_str(r#"{"metadata":{"name":"s"},"data":null}"#).unwrap();
        let f: DataObject = serde_json::from_str(r#"{"metadata":{"name":"s"}}"#).unwrap();
        assert_eq!(a.digest, b.digest);
        assert_ne!(a.digest, c.digest);
        assert_ne!(a.digest, d.digest, "data and binaryData are told apart");
        assert_eq!(e.digest, f.digest);
        assert_eq!(b.meta.resource_version, "2");
        // Framing: {"ab": "c"} and {"a": "bc"} differ.
        let one = BTreeMap::from([("ab".to_string(), "c".to_string())]);
        let two = BTreeMap::from([("a".to_string(), "bc".to_string())]);
        assert_ne!(
            digest(&one, &BTreeMap::new()),
            digest(&two, &BTreeMap::new())
        );
    }

    #[test]
    fn pod_is_reduced_to_its_references() {
        let p: PodJson = serde_json::from_str(
            r#"{"metadata":{"name":"p","namespace":"ns","annotations":{"secret.nudge.hello-path-rs/s":"7","other":"x","nudge.hello-path-rs/ignore":"true"},
                "ownerReferences":[{"kind":"Job","name":"j"},{"kind":"ReplicaSet","name":"rs","controller":true}]},
               "spec":{"volumes":[{"name":"a","secret":{"secretName":"s"}},{"name":"b","emptyDir":{}},
                                  {"name":"c","projected":{"sources":[{"configMap":{"name":"cm"}},{"secret":{"name":"s"}},{"serviceAccountToken":{}}]}}],
                       "initContainers":null,
                       "containers":[{"name":"x","volumeMounts":[{"name":"a","subPath":"k"},{"name":"b"}],
                                      "env":[{"name":"V","valueFrom":{"configMapKeyRef":{"name":"cm","key":"k"}}},{"name":"W","value":"1"}]},
                                     {"name":"unrelated","volumeMounts":[{"name":"b"}]}],
                       "ephemeralContainers":[{"name":"dbg","envFrom":[{"secretRef":{"name":"s"}}]}]},
               "status":{}}"#,
        )
        .unwrap();
        let p = PodInfo::from(p);
        assert_eq!(p.phase, "Unknown");
        assert!(p.ignored);
        assert_eq!(p.owner, Some(("ReplicaSet".into(), "rs".into())));
        assert_eq!(p.nudge_value("secret.nudge.hello-path-rs/s"), Some("7"));
        assert_eq!(p.nudges.len(), 1);
        assert_eq!(p.volumes.len(), 3);
        assert!(p.volumes[1].projected && p.volumes[1].kind == ObjKind::ConfigMap);
        assert_eq!(p.containers.len(), 2, "the unrelated container is dropped");
        assert_eq!(
            p.containers[0].mounts,
            vec![MountRef {
                volume: "a".into(),
                sub_path: true
            }]
        );
        assert_eq!(
            p.containers[0].env,
            vec![(ObjKind::ConfigMap, "cm".into(), "V".into())]
        );
        assert_eq!(p.containers[1].kind, ContainerKind::Ephemeral);
        assert_eq!(
            p.containers[1].env_from,
            vec![(ObjKind::Secret, "s".into())]
        );
    }
}
