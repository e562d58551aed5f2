#!/usr/bin/env bash
# Builds the real peers that strata's tests and benchmarks run beside it (Thanos, Prometheus and
# promtool 3.x, helm; VictoriaMetrics single-node from the module in victoriametrics/) from the
# Go module proxy into interop/bin/, at the versions the go.mod files pin,
# and our own Go programs that call into them (ringref: Thanos's receive hashring; seriesbench: a
# StoreAPI client on Thanos's client code, for scripts/bench-storeapi.sh).
# A binary is rebuilt only when it is missing or older than go.mod, go.sum, this script or (ours)
# its sources; Go's build cache makes a rebuild after a version bump cost only what changed.
# Prints each peer's version.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
mkdir -p bin

# name → main package [build tags]; the module version comes from go.mod's require and tool
# lines. Thanos's releases are built with `slicelabels` (its .promu.yml): its gRPC code casts
# wire label slices to Prometheus's labels.Labels, which only holds with that layout; without
# it the querier panics on the first Info answer that carries label sets.
peers=(
    "thanos github.com/thanos-io/thanos/cmd/thanos slicelabels"
    "prometheus github.com/prometheus/prometheus/cmd/prometheus"
    "promtool github.com/prometheus/prometheus/cmd/promtool"
    "helm helm.sh/helm/v3/cmd/helm"
)

if ! command -v go >/dev/null; then
    echo "interop/build.sh: no Go toolchain on PATH; the peers need Go 1.26 or newer" >&2
    exit 1
fi

for peer in "${peers[@]}"; do
    read -r name pkg tags <<<"$peer"
    out=bin/$name
    module=$(go list -m -f '{{.Path}} {{.Version}}' "$(go list -f '{{.Module.Path}}' "$pkg")")
    if [ -x "$out" ] && [ "$out" -nt go.mod ] && [ "$out" -nt go.sum ] && [ "$out" -nt build.sh ]; then
        echo "$name: up to date ($module)"
        continue
    fi
    version=${module#* v}
    # Prometheus publishes release 3.Y.Z as module version v0.3YY.Z.
    if [ "${module%% *}" = github.com/prometheus/prometheus ]; then
        minor=${version#0.}
        patch=${minor#*.}
        minor=$((10#${minor%%.*} - 300))
        version=3.$minor.$patch
    fi
    echo "$name: building $pkg from $module"
    start=$SECONDS
    # -trimpath keeps this machine's paths out of the binaries and -buildvcs=false keeps our
    # checkout's git state out of them (a copy without .git builds too); the version stamp is
    # what a release build would carry, so `--version` and the build-info metrics name the
    # release.
    go build -trimpath -buildvcs=false -tags "${tags:-}" \
        -ldflags "-X github.com/prometheus/common/version.Version=$version -X github.com/prometheus/common/version.Branch=module -X github.com/prometheus/common/version.Revision=${module%% *}@v${module#* v}" \
        -o "$out.tmp" "$pkg"
    mv "$out.tmp" "$out"
    echo "$name: built in $((SECONDS - start)) s"
done

# VictoriaMetrics single-node, from a module of its own (victoriametrics/go.mod) so that its
# dependency versions and Thanos's do not move each other. Stamped as its release builds are.
vm_module=$(cd victoriametrics && go list -m -f '{{.Version}}' github.com/VictoriaMetrics/VictoriaMetrics)
if [ -x bin/victoria-metrics ] && [ -z "$(find victoriametrics/go.mod victoriametrics/go.sum build.sh -newer bin/victoria-metrics -print -quit)" ]; then
    echo "victoria-metrics: up to date ($vm_module)"
else
    echo "victoria-metrics: building app/victoria-metrics from $vm_module"
    start=$SECONDS
    (cd victoriametrics && go build -trimpath -buildvcs=false \
        -ldflags "-X github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version=victoria-metrics-$vm_module" \
        -o ../bin/victoria-metrics.tmp github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics)
    mv bin/victoria-metrics.tmp bin/victoria-metrics
    echo "victoria-metrics: built in $((SECONDS - start)) s"
fi

# Our programs, in this module: name = directory. They import the peers' packages at the
# versions go.mod pins.
for name in ringref seriesbench; do
    out=bin/$name
    if [ -x "$out" ] && [ -z "$(find go.mod go.sum build.sh "$name" -newer "$out" -print -quit)" ]; then
        echo "$name: up to date"
        continue
    fi
    echo "$name: building ./$name"
    go build -trimpath -buildvcs=false -o "$out.tmp" "./$name"
    mv "$out.tmp" "$out"
done

for peer in "${peers[@]}"; do
    name=${peer%% *}
    case $name in
        helm) printf '%-10s %s\n' "$name" "$(bin/helm version --short 2>&1)" ;;
        *) printf '%-10s %s\n' "$name" "$(bin/$name --version 2>&1 | sed -n 1p)" ;;
    esac
done
printf '%-10s %s\n' victoria-metrics "$(bin/victoria-metrics --version 2>&1 | sed -n 1p)"
