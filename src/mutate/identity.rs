//! Which pods are data-mover pods (Velero's `pkg/exposer/csi_snapshot.go` `createBackupPod`,
//! `generic_restore.go` and `pod_volume.go` at v1.18.3, with the labels of
//! `pkg/apis/velero/v1/labels_annotations.go`): created in the Velero namespace by
//! node-agent's ServiceAccount, labelled and owned by the Velero resource they serve.

use std::borrow::Borrow;

use serde_json::Value;

use super::patch::at;

/// The four kinds of data-mover pod, by the Velero resource that owns them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MoverKind {
    DataUpload,
    DataDownload,
    PodVolumeBackup,
    PodVolumeRestore,
}

impl MoverKind {
    pub const ALL: [MoverKind; 4] =
        [MoverKind::DataUpload, MoverKind::DataDownload, MoverKind::PodVolumeBackup, MoverKind::PodVolumeRestore];

    /// The label node-agent puts on the pod, whose value is the owner's (and pod's) name.
    pub fn label(self) -> &'static str {
        match self {
            MoverKind::DataUpload => "velero.io/data-upload",
            MoverKind::DataDownload => "velero.io/data-download",
            MoverKind::PodVolumeBackup => "velero.io/pod-volume-backup",
            MoverKind::PodVolumeRestore => "velero.io/pod-volume-restore",
        }
    }

    pub fn owner_kind(self) -> &'static str {
        match self {
            MoverKind::DataUpload => "DataUpload",
            MoverKind::DataDownload => "DataDownload",
            MoverKind::PodVolumeBackup => "PodVolumeBackup",
            MoverKind::PodVolumeRestore => "PodVolumeRestore",
        }
    }

    fn owner_api_version(self) -> &'static str {
        match self {
            MoverKind::DataUpload | MoverKind::DataDownload => "velero.io/v2alpha1",
            MoverKind::PodVolumeBackup | MoverKind::PodVolumeRestore => "velero.io/v1",
        }
    }

    /// Only DataUpload and DataDownload pods are placed by the scheduler; PodVolumeBackup
    /// and PodVolumeRestore pods are bound to the client pod's node.
    pub fn takes_load_affinity(self) -> bool {
        matches!(self, MoverKind::DataUpload | MoverKind::DataDownload)
    }
}

/// A pod identified as a data-mover pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataMover {
    pub kind: MoverKind,
    /// The pod's name, which is also its owner's.
    pub name: String,
    /// The owner's UID, which is also the data-mover container's name.
    pub owner_uid: String,
}

/// Why a pod was left alone; bounded values, used as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    NotAPodCreate,
    OtherNamespace,
    OtherUser,
    NotNodeAgent,
    NoDataMoverLabel,
    LabelMismatch,
    OwnerMismatch,
    NoObject,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NotAPodCreate => "not_a_pod_create",
            SkipReason::OtherNamespace => "other_namespace",
            SkipReason::OtherUser => "other_user",
            SkipReason::NotNodeAgent => "not_node_agent",
            SkipReason::NoDataMoverLabel => "no_data_mover_label",
            SkipReason::LabelMismatch => "label_mismatch",
            SkipReason::OwnerMismatch => "owner_mismatch",
            SkipReason::NoObject => "no_object",
        }
    }
}

/// Who node-agent is: its namespace and the ServiceAccounts it may run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAgentIdentity {
    pub namespace: String,
    pub service_accounts: Vec<String>,
}

/// What the mutating webhook knows of one submission to the API server, as plain values: who
/// sent what, where. The wire format maps a review to this (`mutating::submission`). `P` is the
/// pod: borrowed, or owned by a caller that wants it back from [`NodeAgentIdentity::identify_owning`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Submission<'a, P = &'a Value> {
    /// A CREATE of a core/v1 Pod; anything else is left alone.
    pub creates_a_pod: bool,
    pub namespace: &'a str,
    /// The object's name as the request gives it; the pod's own `metadata.name` wins.
    pub name: &'a str,
    pub username: &'a str,
    /// The pod a bound ServiceAccount token belongs to (`authentication.kubernetes.io/pod-name`).
    pub token_pod_name: Option<&'a str>,
    pub pod: Option<P>,
}

impl NodeAgentIdentity {
    fn is_node_agent_user(&self, username: &str, token_pod_name: Option<&str>) -> Result<(), SkipReason> {
        let prefix = format!("system:serviceaccount:{}:", self.namespace);
        let account = username.strip_prefix(&prefix).ok_or(SkipReason::OtherUser)?;
        if !self.service_accounts.iter().any(|sa| sa == account) {
            return Err(SkipReason::OtherUser);
        }
        // The Velero server shares the account and creates restored workload pods.
        match token_pod_name {
            Some(pod) if !pod.starts_with("node-agent-") => Err(SkipReason::NotNodeAgent),
            _ => Ok(()),
        }
    }

    /// Decides whether `submission` creates a data-mover pod, and which.
    pub fn identify(&self, submission: &Submission) -> Result<DataMover, SkipReason> {
        self.identify_owning(*submission).map(|(mover, _)| mover)
    }

    /// [`Self::identify`], handing back the submission's pod with the data mover it is.
    pub fn identify_owning<P: Borrow<Value>>(
        &self,
        submission: Submission<'_, P>,
    ) -> Result<(DataMover, P), SkipReason> {
        if !submission.creates_a_pod {
            return Err(SkipReason::NotAPodCreate);
        }
        if submission.namespace != self.namespace {
            return Err(SkipReason::OtherNamespace);
        }
        self.is_node_agent_user(submission.username, submission.token_pod_name)?;
        let owned = submission.pod.ok_or(SkipReason::NoObject)?;
        let pod: &Value = owned.borrow();
        let name = at(pod, &["metadata", "name"]).and_then(Value::as_str).unwrap_or(submission.name);
        let labels = at(pod, &["metadata", "labels"]).and_then(Value::as_object);
        let kind = MoverKind::ALL
            .into_iter()
            .find(|kind| labels.is_some_and(|l| l.contains_key(kind.label())))
            .ok_or(SkipReason::NoDataMoverLabel)?;
        if name.is_empty() || labels.and_then(|l| l.get(kind.label())).and_then(Value::as_str) != Some(name) {
            return Err(SkipReason::LabelMismatch);
        }
        let owner = at(pod, &["metadata", "ownerReferences"])
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|owner| owner.get("controller").and_then(Value::as_bool) == Some(true))
            .ok_or(SkipReason::OwnerMismatch)?;
        let field = |key: &str| owner.get(key).and_then(Value::as_str).unwrap_or_default();
        if field("kind") != kind.owner_kind()
            || field("apiVersion") != kind.owner_api_version()
            || field("name") != name
            || field("uid").is_empty()
        {
            return Err(SkipReason::OwnerMismatch);
        }
        let mover = DataMover { kind, name: name.to_string(), owner_uid: field("uid").to_string() };
        Ok((mover, owned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn identity() -> NodeAgentIdentity {
        NodeAgentIdentity {
            namespace: "velero".into(),
            service_accounts: vec!["velero".into(), "velero-server".into()],
        }
    }

    fn pod(label: &str, owner_kind: &str, api_version: &str) -> Value {
        json!({"metadata": {"name": "du-1", "namespace": "velero", "labels": {label: "du-1"},
            "ownerReferences": [{"apiVersion": api_version, "kind": owner_kind, "name": "du-1", "uid": "u-1", "controller": true}]}})
    }

    /// An owned [`Submission`]: a pod CREATE in `velero` named `du-1`, unless changed.
    struct Request {
        creates_a_pod: bool,
        namespace: String,
        user: String,
        pod_name: Option<String>,
        object: Value,
    }

    impl Request {
        fn submission(&self) -> Submission<'_> {
            Submission {
                creates_a_pod: self.creates_a_pod,
                namespace: &self.namespace,
                name: "du-1",
                username: &self.user,
                token_pod_name: self.pod_name.as_deref(),
                pod: Some(&self.object),
            }
        }
    }

    fn request(object: Value, user: &str, pod_name: Option<&str>) -> Request {
        Request {
            creates_a_pod: true,
            namespace: "velero".into(),
            user: user.into(),
            pod_name: pod_name.map(str::to_owned),
            object,
        }
    }

    const SA: &str = "system:serviceaccount:velero:velero";

    #[test]
    fn identifies_each_kind() {
        let cases = [
            ("velero.io/data-upload", "DataUpload", "velero.io/v2alpha1", MoverKind::DataUpload),
            ("velero.io/data-download", "DataDownload", "velero.io/v2alpha1", MoverKind::DataDownload),
            ("velero.io/pod-volume-backup", "PodVolumeBackup", "velero.io/v1", MoverKind::PodVolumeBackup),
            ("velero.io/pod-volume-restore", "PodVolumeRestore", "velero.io/v1", MoverKind::PodVolumeRestore),
        ];
        for (label, kind, api, want) in cases {
            let mover = identity().identify(&request(pod(label, kind, api), SA, Some("node-agent-x7k2p")).submission());
            assert_eq!(mover, Ok(DataMover { kind: want, name: "du-1".into(), owner_uid: "u-1".into() }), "{label}");
        }
    }

    #[test]
    fn leaves_other_pods_alone() {
        let good = pod("velero.io/data-upload", "DataUpload", "velero.io/v2alpha1");
        let mut wrong_value = good.clone();
        wrong_value["metadata"]["labels"]["velero.io/data-upload"] = json!("other");
        let mut wrong_owner = good.clone();
        wrong_owner["metadata"]["ownerReferences"][0]["kind"] = json!("DataDownload");
        let mut not_controller = good.clone();
        not_controller["metadata"]["ownerReferences"][0]["controller"] = json!(false);
        let mut update = request(good.clone(), SA, None);
        update.creates_a_pod = false;
        let mut elsewhere = request(good.clone(), SA, None);
        elsewhere.namespace = "app".into();
        let cases = [
            (request(good.clone(), "system:serviceaccount:app:velero", None), SkipReason::OtherUser),
            (request(good.clone(), "alice", None), SkipReason::OtherUser),
            (request(good.clone(), "system:serviceaccount:velero:default", None), SkipReason::OtherUser),
            (request(good.clone(), SA, Some("velero-6d9f8-abcde")), SkipReason::NotNodeAgent),
            (request(json!({"metadata": {"name": "du-1"}}), SA, None), SkipReason::NoDataMoverLabel),
            (request(wrong_value, SA, None), SkipReason::LabelMismatch),
            (request(wrong_owner, SA, None), SkipReason::OwnerMismatch),
            (request(not_controller, SA, None), SkipReason::OwnerMismatch),
            (update, SkipReason::NotAPodCreate),
            (elsewhere, SkipReason::OtherNamespace),
        ];
        for (request, want) in cases {
            assert_eq!(identity().identify(&request.submission()), Err(want));
        }
        let helm = request(good, "system:serviceaccount:velero:velero-server", None);
        assert!(identity().identify(&helm.submission()).is_ok(), "the Helm chart's account");
    }
}
