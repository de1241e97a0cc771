//! `node-agent-webhook explain`: for the live node-agent config, each `loadAffinity` entry and
//! `perNodeConfig` selector with the nodes it selects, which of them run node-agent, the taints
//! data-mover pods do not tolerate and the allocatable headroom, then the validating webhook's
//! findings there (the placement warnings among them).
//! Pure: the report is built from `config::placement`'s selections; plain text or JSON.

use serde::Serialize;

use crate::config::model::NodeAgentConfig;
use crate::config::placement::{self, ClusterView, Selection};
use crate::config::release::VeleroVersion;

/// One node a selection selects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeRow {
    pub node: String,
    pub ready: bool,
    /// `None`: node-agent's DaemonSet was not found.
    pub runs_node_agent: Option<bool>,
    pub untolerated_taints: Vec<String>,
    /// Allocatable cpu, memory and ephemeral-storage, as the node reports them.
    pub allocatable: Vec<String>,
    /// The requests that do not fit, as `cpu 8 > 4`; empty: they fit.
    pub requests_over_allocatable: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub path: String,
    pub storage_class: Option<String>,
    pub nodes: Vec<NodeRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub configmap: String,
    pub nodes_in_cluster: usize,
    pub entries: Vec<Entry>,
    pub warnings: Vec<String>,
}

fn entry(selection: &Selection) -> Entry {
    let nodes = selection
        .selected
        .iter()
        .map(|fit| NodeRow {
            node: fit.node.name.to_string(),
            ready: fit.node.ready,
            runs_node_agent: fit.runs_node_agent,
            untolerated_taints: fit.untolerated.iter().map(placement::taint_text).collect(),
            allocatable: fit.node.allocatable.iter().map(|(r, q)| format!("{r} {}", q.canonical())).collect(),
            requests_over_allocatable: fit.short.clone(),
        })
        .collect();
    Entry { path: selection.path.clone(), storage_class: selection.storage_class.map(str::to_string), nodes }
}

/// The report of the ConfigMap `configmap`'s config against the cluster, with the findings the
/// validating webhook gives it there (`findings`, placement warnings included).
pub fn report(
    configmap: &str,
    config: &NodeAgentConfig,
    findings: Vec<String>,
    view: &ClusterView,
    version: Option<VeleroVersion>,
) -> Report {
    let entries = placement::selections(config, view, version).iter().map(entry).collect();
    Report { configmap: configmap.to_string(), nodes_in_cluster: view.nodes.len(), entries, warnings: findings }
}

fn yes_no(value: Option<bool>) -> &'static str {
    match value {
        Some(true) => "yes",
        Some(false) => "no",
        None => "?",
    }
}

fn or_dash(items: &[String], sep: &str) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items.join(sep)
    }
}

/// The report as aligned plain text: one table per entry, then the warnings.
pub fn render_text(report: &Report) -> String {
    let mut out = format!("ConfigMap {}: {} nodes in the cluster\n", report.configmap, report.nodes_in_cluster);
    if report.entries.is_empty() {
        out.push_str("\nno loadAffinity entry or perNodeConfig selector\n");
    }
    for entry in &report.entries {
        let class = entry.storage_class.as_deref().map(|c| format!(" (storageClass {c})")).unwrap_or_default();
        out.push_str(&format!("\n{}{class}: {} node(s)\n", entry.path, entry.nodes.len()));
        let header =
            ["NODE", "READY", "NODE-AGENT", "UNTOLERATED TAINTS", "ALLOCATABLE", "REQUESTS OVER"].map(String::from);
        let rows: Vec<[String; 6]> = entry
            .nodes
            .iter()
            .map(|n| {
                [
                    n.node.clone(),
                    yes_no(Some(n.ready)).to_string(),
                    yes_no(n.runs_node_agent).to_string(),
                    or_dash(&n.untolerated_taints, ","),
                    or_dash(&n.allocatable, ", "),
                    or_dash(&n.requests_over_allocatable, ", "),
                ]
            })
            .collect();
        let widths: Vec<usize> =
            (0..6).map(|i| rows.iter().map(|r| r[i].len()).chain([header[i].len()]).max().unwrap_or(0)).collect();
        for row in std::iter::once(&header).chain(&rows) {
            let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
    }
    out.push_str(&format!("\nfindings: {}\n", report.warnings.len()));
    for warning in &report.warnings {
        out.push_str(&format!("  {warning}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::decode::decode;
    use crate::config::json::parse;
    use crate::config::placement::{Allocatable, NodeFacts};
    use crate::k8s::toleration::Taint;
    use std::sync::Arc;

    #[test]
    fn a_table_per_entry_then_the_warnings() {
        let node = |name: &str, zone: &str, taint: bool| NodeFacts {
            name: name.into(),
            labels: [(Arc::from("zone"), Arc::from(zone))].into_iter().collect(),
            taints: taint
                .then(|| Taint { key: "dedicated".into(), value: "backup".into(), effect: "NoSchedule".into() })
                .into_iter()
                .collect(),
            allocatable: Allocatable::of(|r| (r == "cpu").then_some("4")),
            unschedulable: false,
            ready: true,
        };
        let nodes = [node("a1", "a", false), node("a2", "a", true), node("b1", "b", false)].map(Arc::new);
        let config = r#"{"loadAffinity": [{"nodeSelector": {"matchLabels": {"zone": "a"}}, "storageClass": "gp3"},
            {"nodeSelector": {"matchLabels": {"zone": "z"}}}]}"#;
        let decoded = decode(&parse(config).expect("JSON"), None);
        let view = ClusterView { nodes: &nodes, node_agent: None, reclaim_policies: None };
        let findings = placement::placement_warnings(&decoded, &view, None).iter().map(|d| d.render()).collect();
        let report = report("velero/node-agent-config", &decoded.config, findings, &view, None);
        assert_eq!(
            render_text(&report),
            "ConfigMap velero/node-agent-config: 3 nodes in the cluster

loadAffinity[0].nodeSelector (storageClass gp3): 2 node(s)
NODE  READY  NODE-AGENT  UNTOLERATED TAINTS           ALLOCATABLE  REQUESTS OVER
a1    yes    ?           -                            cpu 4        -
a2    yes    ?           dedicated=backup:NoSchedule  cpu 4        -

loadAffinity[1].nodeSelector: 0 node(s)
NODE  READY  NODE-AGENT  UNTOLERATED TAINTS  ALLOCATABLE  REQUESTS OVER

findings: 1
  loadAffinity[1].nodeSelector: selects none of the 3 nodes (zone is a,b on nodes): its pods stay Pending (line 2, column 30)
"
        );
        let json = serde_json::to_value(&report).expect("serializable");
        assert_eq!(json["entries"][0]["nodes"][1]["untolerated_taints"][0], "dedicated=backup:NoSchedule");
    }
}
