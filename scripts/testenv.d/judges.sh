# scripts/testenv.d/judges.sh — sourced by scripts/testenv: build the programs that judge what vz
# writes, from their Go modules, pinned and cached like the control plane (build.sh's go_env and
# caches).
#
#   judges/istioctl/<version>/istioctl         Istio's own validation and analysis
#   judges/pilot-discovery/<version>/...       Istio's control plane: the Gateway API controller
#   judges/netpolicy/<version>/netpolicy       np-guard's NetworkPolicy connectivity analyser
#
# A version's directory appears only once its build has finished.

# istio.io/istio tags no Go module versions: the proxy serves pseudo-versions of its main branch.
# This one says VERSION 1.31 (istioctl version prints it).
ISTIOCTL_VERSION=v0.0.0-20260827124520-eed52ebb66ad
NETPOLICY_VERSION=v1.4.2
# Gateway API's standard channel: the release the istio.io/istio above requires.
GATEWAY_API_VERSION=v1.6.0

# build_go_tool NAME VERSION MODULE PACKAGE CHECK...: $CACHE_ROOT/judges/NAME/VERSION/NAME, built in
# a module of its own that requires MODULE at VERSION (go install refuses modules with replace
# directives or retracted versions; a module of our own takes them as they are).
build_go_tool() {
  local name=$1 version=$2 module=$3 package=$4
  shift 4
  local out="$CACHE_ROOT/judges/$name/$version"
  [ -x "$out/$name" ] && return 0
  # Tests asking for a judge at once (cargo test runs them side by side) wait for one build.
  mkdir -p "$CACHE_ROOT/judges/$name"
  local lock
  exec {lock}>"$CACHE_ROOT/judges/$name/.lock"
  flock "$lock"
  if [ -x "$out/$name" ]; then exec {lock}>&-; return 0; fi
  local go; go=$(find_go) || die "building $name needs Go >= 1.26 (none found; set VZ_TESTENV_GO)"
  local work="$CACHE_ROOT/judges/$name/.build-$version"
  rm -rf "$work"; mkdir -p "$work/src" "$work/bin"
  log "building $name ($module $version) from its Go module; 5-10 minutes on 2 cores, once"
  printf 'module vz.invalid/judge-%s\n\ngo 1.26.0\n' "$name" >"$work/src/go.mod"
  (
    cd "$work/src"
    go_env "$go" get "$package@$version" >"$work/build.log" 2>&1 \
      && go_env "$go" build -trimpath -ldflags "-s -w" -o "$work/bin/$name" "$package" >>"$work/build.log" 2>&1
  ) || { tail -n 40 "$work/build.log" >&2; die "building $name $version failed (log: $work/build.log)"; }
  "$work/bin/$name" "$@" >/dev/null 2>&1 || die "the $name built for $version does not run: $work/bin/$name $*"
  cp "$work/src/go.mod" "$work/src/go.sum" "$work/bin/"
  rm -rf "$out"; mv "$work/bin" "$out"; rm -rf "$work"
  exec {lock}>&-
  log "$name $version cached in $out"
}

# gateway_api_crds: the directory of Gateway API's standard-channel CRDs, as its Go module ships
# them (downloaded once into the module cache).
gateway_api_crds() {
  local dir="$CACHE_ROOT/go/mod/sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION/config/crd/standard"
  if [ ! -d "$dir" ]; then
    local go; go=$(find_go) || die "downloading Gateway API's CRDs needs Go >= 1.26 (none found; set VZ_TESTENV_GO)"
    (cd "$CACHE_ROOT" && go_env "$go" mod download "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION") >/dev/null \
      || die "cannot download sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION from the Go module proxy"
  fi
  [ -d "$dir" ] || die "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION has no $dir"
  echo "$dir"
}

build_judges() {
  judge_path istioctl >/dev/null
  judge_path pilot-discovery >/dev/null
  judge_path netpolicy >/dev/null
  gateway_api_crds >/dev/null
}

# judge_path NAME: the cached binary of judge NAME, built first when missing.
judge_path() {
  case "$1" in
    istioctl) build_go_tool istioctl "$ISTIOCTL_VERSION" istio.io/istio istio.io/istio/istioctl/cmd/istioctl version --remote=false
      echo "$CACHE_ROOT/judges/istioctl/$ISTIOCTL_VERSION/istioctl" ;;
    pilot-discovery) build_go_tool pilot-discovery "$ISTIOCTL_VERSION" istio.io/istio istio.io/istio/pilot/cmd/pilot-discovery version
      echo "$CACHE_ROOT/judges/pilot-discovery/$ISTIOCTL_VERSION/pilot-discovery" ;;
    netpolicy) build_go_tool netpolicy "$NETPOLICY_VERSION" github.com/np-guard/netpol-analyzer \
        github.com/np-guard/netpol-analyzer/cmd/netpolicy --help
      echo "$CACHE_ROOT/judges/netpolicy/$NETPOLICY_VERSION/netpolicy" ;;
    *) die "judge: no judge named '$1' (istioctl, pilot-discovery, netpolicy)" ;;
  esac
}
