// tunables prints the kernel settings the kubelet of this release wants, one
// "path value" line each (path under /proc/sys), so that hack/node/node.sh can
// show the kubelet these values in the node's own mount namespace without the
// machine's changing. The set of keys is setupKernelTunables' desiredState
// (k8s.io/kubernetes v1.37.2 pkg/kubelet/cm/container_manager_linux.go:478-485);
// the values are the constants it uses, read from the module itself.
package main

import (
	"fmt"

	"k8s.io/component-helpers/node/util/sysctl"
)

func main() {
	for _, tunable := range []struct {
		path  string
		value int
	}{
		{sysctl.VMOvercommitMemory, sysctl.VMOvercommitMemoryAlways},
		{sysctl.VMPanicOnOOM, sysctl.VMPanicOnOOMInvokeOOMKiller},
		{sysctl.KernelPanic, sysctl.KernelPanicRebootTimeout},
		{sysctl.KernelPanicOnOops, sysctl.KernelPanicOnOopsAlways},
		{sysctl.RootMaxKeys, sysctl.RootMaxKeysSetting},
		{sysctl.RootMaxBytes, sysctl.RootMaxBytesSetting},
	} {
		fmt.Println(tunable.path, tunable.value)
	}
}
