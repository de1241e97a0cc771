#!/usr/bin/env python3
"""Cluster objects for the benchmarks that grow a cluster (bench/nodes.sh, bench/growth.sh), as
one `kind: List` for `kubectl create -f`:

    objects.py nodes N [FIRST]            Nodes as a cloud kubelet registers them
    objects.py storageclasses N [FIRST]   StorageClasses as a CSI driver's install ships them
    objects.py priorityclasses N [FIRST]  PriorityClasses as a platform team writes them

Names are numbered from FIRST (0): bench-node-00000, bench-sc-00000, bench-pc-00000, so that a
second call with FIRST adds to a first one.
"""
import json
import sys

NOW = "2026-01-01T00:00:00Z"


def node(i):
    """Labels as a cloud kubelet sets them, a taint on every third node, capacity/allocatable,
    a Ready condition and nodeInfo."""
    name = f"bench-node-{i:05d}"
    res = {"cpu": "16", "memory": "64Gi", "ephemeral-storage": "200Gi", "pods": "110"}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "topology.kubernetes.io/zone": f"zone-{i % 3}", "topology.kubernetes.io/region": "region-1",
            "node.kubernetes.io/instance-type": "m5.4xlarge", "pool": ["general", "backup", "spot"][i % 3]}},
        "spec": {"taints": [{"key": "pool", "value": "spot", "effect": "NoSchedule"}] if i % 3 == 2 else []},
        "status": {"capacity": res, "allocatable": res,
                   "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                   "message": "kubelet is posting ready status", "lastHeartbeatTime": NOW,
                                   "lastTransitionTime": NOW}],
                   "nodeInfo": {"kubeletVersion": "v1.37.2", "osImage": "Ubuntu 24.04", "kernelVersion": "6.8.0",
                                "containerRuntimeVersion": "containerd://2.0.0", "architecture": "amd64",
                                "operatingSystem": "linux", "machineID": "", "systemUUID": "", "bootID": "",
                                "kubeProxyVersion": ""}}}


def storage_class(i):
    """A CSI class with parameters, a reclaim policy (Retain on every fourth) and topology."""
    return {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": f"bench-sc-{i:05d}", "labels": {"app.kubernetes.io/managed-by": "bench"},
                     "annotations": {"storageclass.kubernetes.io/is-default-class": "false"}},
        "provisioner": "ebs.csi.aws.com",
        "parameters": {"type": "gp3", "iops": "3000", "throughput": "125", "encrypted": "true",
                       "csi.storage.k8s.io/fstype": "ext4"},
        "reclaimPolicy": "Retain" if i % 4 == 3 else "Delete",
        "allowVolumeExpansion": True,
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowedTopologies": [{"matchLabelExpressions": [
            {"key": "topology.kubernetes.io/zone", "values": [f"zone-{i % 3}"]}]}]}


def priority_class(i):
    return {
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": f"bench-pc-{i:05d}", "labels": {"app.kubernetes.io/managed-by": "bench"}},
        "value": 1000 + i, "preemptionPolicy": "PreemptLowerPriority", "globalDefault": False,
        "description": f"bench tier {i}: workloads of one team"}


KINDS = {"nodes": node, "storageclasses": storage_class, "priorityclasses": priority_class}


def main():
    if len(sys.argv) not in (3, 4) or sys.argv[1] not in KINDS:
        sys.exit(__doc__)
    make, n = KINDS[sys.argv[1]], int(sys.argv[2])
    first = int(sys.argv[3]) if len(sys.argv) == 4 else 0
    json.dump({"apiVersion": "v1", "kind": "List", "items": [make(i) for i in range(first, first + n)]}, sys.stdout)


if __name__ == "__main__":
    main()
