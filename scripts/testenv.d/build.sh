# scripts/testenv.d/build.sh — sourced by scripts/testenv: build a Kubernetes control plane and etcd
# from their Go modules (the Go module proxy is all it needs), cached by version.
#
# Layout of the cache ($CACHE_ROOT, default ~/.cache/vz-testenv):
#   k8s/v1.36.5/kube-cp       kube-apiserver, kube-controller-manager, kube-scheduler in one binary
#   k8s/v1.36.5/kube-apiserver -> kube-cp   (likewise the other two)
#   etcd/v3.6.17/etcd
#   go/mod, go/build          the Go module and build caches these builds share
# A version's directory appears only once its build has finished (built in a temporary directory
# beside it, then renamed), so an interrupted build leaves nothing that looks finished.

GO_BIN=${VZ_TESTENV_GO:-}

find_go() { # the Go toolchain: >= 1.26 (what etcd 3.6.17 and Kubernetes 1.35+ need)
  local g
  for g in "$GO_BIN" "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go /usr/lib/go/bin/go; do
    [ -n "$g" ] && [ -x "$g" ] || continue
    local v; v=$("$g" env GOVERSION 2>/dev/null | sed 's/^go//')
    local major=${v%%.*} rest=${v#*.}; local minor=${rest%%.*}
    if [ "${major:-0}" -gt 1 ] || { [ "${major:-0}" -eq 1 ] && [ "${minor:-0}" -ge 26 ]; }; then
      echo "$g"; return 0
    fi
  done
  return 1
}

go_env() { # run Go with the testenv's own caches, no cgo, no toolchain download
  GOMODCACHE="$CACHE_ROOT/go/mod" GOCACHE="$CACHE_ROOT/go/build" CGO_ENABLED=0 \
    GOFLAGS="-buildvcs=false -modcacherw" GOTOOLCHAIN=local "$@"
}

# build_k8s VERSION (e.g. v1.36.5): $CACHE_ROOT/k8s/VERSION/kube-cp and its three names.
build_k8s() {
  local kv=$1 out="$CACHE_ROOT/k8s/$1"
  [ -x "$out/kube-cp" ] && return 0
  local go; go=$(find_go) || die "building Kubernetes $kv needs Go >= 1.26 (none found; set VZ_TESTENV_GO)"
  local minor; minor=$(echo "$kv" | cut -d. -f2)
  local staging="v0.${kv#v1.}"
  local work="$CACHE_ROOT/k8s/.build-$kv"
  rm -rf "$work"; mkdir -p "$work/src" "$work/bin"
  log "building Kubernetes $kv (kube-apiserver, kube-controller-manager, kube-scheduler) from Go modules; about 10 minutes on 2 cores, once"
  local kdir
  kdir=$(cd "$work/src" && go_env "$go" mod download -json "k8s.io/kubernetes@$kv" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  [ -n "$kdir" ] || die "the Go module proxy did not serve k8s.io/kubernetes@$kv"
  # k8s.io/kubernetes replaces each of its staging modules with ./staging/src/...: outside its tree
  # the same modules come from the proxy at the matching v0.x version.
  {
    printf 'module vz.invalid/kube-cp\n\ngo 1.25.0\n\ngodebug default=go1.24\n\n'
    printf 'require k8s.io/kubernetes %s\n\nreplace (\n' "$kv"
    sed -n '/^replace (/,/^)/p' "$kdir/go.mod" \
      | awk -v sv="$staging" '$2=="=>" && $3 ~ /^\.\/staging/ {print "\t" $1 " => " $1 " " sv}'
    printf ')\n'
  } >"$work/src/go.mod"
  cp "$TESTENV_D/k8s/main.go" "$work/src/main.go"
  local bd; bd=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local ld="-s -w" p
  for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ld="$ld -X $p.gitVersion=$kv -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=archive -X $p.buildDate=$bd"
  done
  (
    cd "$work/src"
    go_env "$go" mod tidy >"$work/build.log" 2>&1 \
      && go_env "$go" build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ld" -o "$work/bin/kube-cp" . >>"$work/build.log" 2>&1
  ) || { tail -n 40 "$work/build.log" >&2; die "building Kubernetes $kv failed (log: $work/build.log)"; }
  for p in kube-apiserver kube-controller-manager kube-scheduler; do ln -sf kube-cp "$work/bin/$p"; done
  # Captured first: `grep -q` leaves at the first match, and under pipefail the writer's SIGPIPE
  # would fail the check.
  local says; says=$("$work/bin/kube-apiserver" --version)
  [ "$says" = "Kubernetes $kv" ] || die "the binary built for $kv says: $says"
  cp "$work/src/go.mod" "$work/src/go.sum" "$work/bin/"
  rm -rf "$out"; mv "$work/bin" "$out"; rm -rf "$work"
  log "Kubernetes $kv cached in $out"
}

# build_etcd VERSION (e.g. v3.6.17): $CACHE_ROOT/etcd/VERSION/etcd.
build_etcd() {
  local ev=$1 out="$CACHE_ROOT/etcd/$1"
  [ -x "$out/etcd" ] && return 0
  local go; go=$(find_go) || die "building etcd $ev needs Go >= 1.26 (none found; set VZ_TESTENV_GO)"
  local work="$CACHE_ROOT/etcd/.build-$ev"
  rm -rf "$work"; mkdir -p "$work/src" "$work/bin"
  log "building etcd $ev from its Go module (about 2 minutes, once)"
  printf 'module vz.invalid/etcd\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ev" >"$work/src/go.mod"
  cp "$TESTENV_D/etcd/main.go" "$work/src/main.go"
  (
    cd "$work/src"
    go_env "$go" mod tidy >"$work/build.log" 2>&1 \
      && go_env "$go" build -trimpath -ldflags "-s -w" -o "$work/bin/etcd" . >>"$work/build.log" 2>&1
  ) || { tail -n 40 "$work/build.log" >&2; die "building etcd $ev failed (log: $work/build.log)"; }
  local says; says=$("$work/bin/etcd" --version)
  case "$says" in
    *"etcd Version: ${ev#v}"*) ;;
    *) die "the etcd built for $ev says: $(printf '%s\n' "$says" | sed -n 1p)" ;;
  esac
  rm -rf "$out"; mv "$work/bin" "$out"; rm -rf "$work"
  log "etcd $ev cached in $out"
}
