// The etcd server of one go.etcd.io/etcd/server/v3 release, built by scripts/testenv (which writes
// go.mod for the version it builds): the same entry point as etcd's own binary.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
