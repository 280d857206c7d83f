// kube-cp: kube-apiserver, kube-controller-manager and kube-scheduler of one Kubernetes release as
// one binary, built from the k8s.io/kubernetes Go module by scripts/testenv (which writes go.mod for
// the version it builds). The name it runs under picks the component: kube-apiserver,
// kube-controller-manager or kube-scheduler (scripts/testenv makes those links); or the first
// argument: apiserver, controller-manager or scheduler.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	_ "time/tzdata" // CronJob time zones, as in the release binaries

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"

	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func component(name string) func() *cobra.Command {
	switch strings.TrimPrefix(name, "kube-") {
	case "apiserver":
		return apiserver.NewAPIServerCommand
	case "controller-manager":
		return controllermanager.NewControllerManagerCommand
	case "scheduler":
		return func() *cobra.Command { return scheduler.NewSchedulerCommand() }
	}
	return nil
}

func main() {
	newCommand := component(filepath.Base(os.Args[0]))
	if newCommand == nil && len(os.Args) > 1 {
		if newCommand = component(os.Args[1]); newCommand != nil {
			os.Args = append([]string{os.Args[0] + " " + os.Args[1]}, os.Args[2:]...)
		}
	}
	if newCommand == nil {
		fmt.Fprintf(os.Stderr, "usage: %s apiserver|controller-manager|scheduler [flags]\n", filepath.Base(os.Args[0]))
		os.Exit(2)
	}
	os.Exit(cli.Run(newCommand()))
}
